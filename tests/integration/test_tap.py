"""`trellis tap` and `trellis top` as a user runs them: the requests to a
service, live, as its own sidecar sees them, through trellis-control with
an admin token; the sidecar's /tap serves no one but trellis-control."""

import json
import os
import subprocess
import time

import pytest

from harness import BIN_DIR, LOCALHOST, call, details_and_caller, http_response, http_responder

TRELLIS = BIN_DIR / "cli" / "trellis"


def details_app(req) -> bytes:
    return http_response(503 if "fail" in req.target else 200, b"details\n")


@pytest.fixture
def mesh(fleet):
    control = fleet.control_plane()
    details, _, outbound = details_and_caller(fleet, control, fleet.upstream(http_responder(details_app)).address)
    return control, outbound, details


def cli(control, *args, token_file=None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")}
    env.update(TRELLIS_TOKEN_FILE=str(token_file or control.admin_token_path),
               TRELLIS_CA_FILE=str(control.trust_bundle), XDG_CONFIG_HOME=str(control.dir / "cli-config"))
    return subprocess.Popen([TRELLIS, *args, "--server", f"{LOCALHOST}:{control.http_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def tapping(control) -> bool:
    """Whether trellis-control can read details' tap (its first ask turns
    it on and sees nothing yet)."""
    status, body = control.request("GET", "/v1/tap?service=details")
    return status == 200 and body["proxies"] == 1 and not body["errors"]


def test_tap_shows_each_request_to_the_service(mesh):
    control, outbound, _ = mesh
    tap = cli(control, "tap", "details", "--max", "4", "--path", "/tap/", "-o", "json")
    time.sleep(1.5)  # its first poll turns the sidecar's tap on
    assert call(outbound, "/other", host="details")[0] == 200  # not under --path
    assert call(outbound, "/tap/one?secret=s3cr3t", host="details")[0] == 200
    assert call(outbound, "/tap/two", host="details")[0] == 200
    assert call(outbound, "/tap/fail", host="details")[0] == 503
    assert call(outbound, "/tap/three", host="details")[0] == 200
    out, err = tap.communicate(timeout=30)
    assert tap.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["method"], e["path"], e["status"]) for e in events] == [
        ("GET", "/tap/one", 200), ("GET", "/tap/two", 200), ("GET", "/tap/fail", 503), ("GET", "/tap/three", 200)]
    first = events[0]
    # Who called, as the sidecar verified it; the query never leaves the proxy.
    assert (first["source_service"], first["destination_service"], first["direction"], first["tls"],
            first["node"]) == ("productpage", "details", "inbound", True, "details-1")
    assert "s3cr3t" not in out
    assert 0 < first["duration_us"] < 10_000_000 and abs(first["time_ms"] / 1000 - time.time()) < 60

    # The text form, one line per request.
    tap = cli(control, "tap", "details", "--max", "1", "--method", "POST")
    time.sleep(1.5)
    assert call(outbound, "/get-is-not-shown", host="details")[0] == 200
    assert call(outbound, "/posted", "POST", host="details")[0] == 200
    out, err = tap.communicate(timeout=30)
    assert tap.returncode == 0, err
    assert out.count("\n") == 1 and "default/productpage -> default/details  POST /posted  200" in out, out


def test_top_counts_the_busiest_paths(mesh):
    control, outbound, _ = mesh
    top = cli(control, "top", "details", "-w", "6", "-o", "json")
    time.sleep(1.5)
    for path, count in (("/a", 12), ("/b", 5), ("/fail", 3)):
        for _ in range(count):
            call(outbound, path, host="details")
    out, err = top.communicate(timeout=30)
    assert top.returncode == 0, err
    rows = [(r["source"], r["method"], r["path"], r["count"], r["success_rate"]) for r in json.loads(out)]
    assert rows == [("default/productpage", "GET", "/a", 12, 1.0), ("default/productpage", "GET", "/b", 5, 1.0),
                    ("default/productpage", "GET", "/fail", 3, 0.0)], out


def test_the_tap_is_for_admins_and_the_sidecar_serves_it_to_the_control_plane_only(mesh):
    control, outbound, details = mesh
    status, body = control.request("POST", "/v1/tokens", {"kind": "read-only", "description": "viewer"})
    assert status == 201, body
    assert control.request("GET", "/v1/tap?service=details", token=body["secret"])[0] == 403
    viewer = control.dir / "viewer-token"
    viewer.write_text(body["secret"])
    viewer.chmod(0o600)
    tap = cli(control, "tap", "details", "--max", "1", token_file=viewer)
    _, err = tap.communicate(timeout=30)
    assert tap.returncode == 1 and "admin token" in err, err
    assert control.request("GET", "/v1/tap")[0] == 400  # which service
    # Straight to the sidecar's admin endpoint: without its key, nothing.
    for headers in ({}, {"Authorization": "Bearer guess"}):
        status, _, body = details.admin("/tap", headers=headers)
        assert status == 403, body
    # trellis-control has the key: through it, the tap answers.
    assert tapping(control)
