"""Rotating the mesh CA's root with `trellis ca rotate` while two sidecars
carry traffic over STRICT mutual TLS: the new root is trusted everywhere
first, every certificate is re-issued from it, then the old root is dropped,
and not one request fails on the way."""

import json
import os
import subprocess

from harness import BIN_DIR, LOCALHOST, free_port, mesh_config, metric, sidecar_config, wait_until

TRELLIS = BIN_DIR / "cli" / "trellis"


def cli_env(control) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")}
    env.update(TRELLIS_SERVER=f"{LOCALHOST}:{control.http_port}", TRELLIS_TOKEN_FILE=str(control.admin_token_path),
               TRELLIS_CA_FILE=str(control.trust_bundle))
    return env


def test_root_rotation_under_load_fails_no_request(fleet, nginx):
    control = fleet.control_plane()
    assert control.apply(mesh_config(mode="STRICT"))[0] == 201
    inbound, outbound = free_port(), free_port()
    details = fleet.proxy(sidecar_config(control, "details",
                                         instance={"address": f"{LOCALHOST}:{inbound}", "app_address": nginx.address(0)}))
    productpage = fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound,
                                             upstream_services=["details"]))
    load_argv = [TRELLIS, "load", f"http://{LOCALHOST}:{outbound}/", "-H", "Host: details", "--connections", "4",
                 "--json"]
    assert subprocess.run([*load_argv, "--rate", "50", "--duration", "1s"], capture_output=True,
                          timeout=30).returncode == 0, "no traffic through the mesh before the rotation"
    before = control.request("GET", "/v1/ca")[1]
    assert len(before["roots"]) == 1

    # 400 req/s over four connections for the whole rotation (about 25 s: a
    # step waits 20 s after trellis-control starts); new connections
    # are made on the way (each worker reconnects as it needs).
    load = subprocess.Popen([*load_argv, "--rate", "400", "--duration", "45s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        rotate = subprocess.run([TRELLIS, "ca", "rotate", "--timeout", "60s"], env=cli_env(control),
                                capture_output=True, text=True, timeout=90)
        assert rotate.returncode == 0, rotate.stdout + rotate.stderr
        for step in ("begin: done", "switch: done", "finish: done"):
            assert step in rotate.stdout, rotate.stdout
        out, err = load.communicate(timeout=60)
    finally:
        load.kill()
    report = json.loads(out)
    # Every request sent was answered 200. (A send the generator made late,
    # on a busy machine, is its own lateness, not a failed request.)
    requests = report["requests"]
    assert set(report["status"]) == {"200"} and not any(report["errors"].values()), \
        f"requests failed during the rotation: {report['status']} {report['errors']} {requests}"
    assert requests["completed"] == requests["sent"] >= 17000, requests

    caught_up = {"connected": 2, "trustBundle": 2, "issuer": 2}
    assert wait_until(lambda: control.request("GET", "/v1/ca")[1]["proxies"] == caught_up, 10)
    after = control.request("GET", "/v1/ca")[1]
    assert after["phase"] == "idle"
    assert len(after["roots"]) == 1 and after["roots"][0]["sha256"] != before["roots"][0]["sha256"], after
    assert after["issuer"]["sha256"] == after["roots"][0]["sha256"]
    # Both sidecars got a certificate from the new root, beside their first one.
    for proxy in (details, productpage):
        assert metric(proxy.stats(), "trellis_certificate_renewals_total", result="ok") >= 2
    # The new bundle is what trellis-control's file says, and the CLI works with it.
    assert control.trust_bundle.read_text() == after["trustBundle"]
    status = subprocess.run([TRELLIS, "ca", "status"], env=cli_env(control), capture_output=True, text=True,
                            timeout=30)
    assert status.returncode == 0 and "rotation: idle" in status.stdout, status.stdout + status.stderr
    # Traffic keeps flowing on new connections after the old root is gone.
    assert wait_until(lambda: subprocess.run([*load_argv, "--rate", "50", "--duration", "1s"], capture_output=True,
                                             timeout=30).returncode == 0, 10)


def test_rotation_steps_wait_for_the_proxies_and_refuse_out_of_order(fleet, nginx):
    control = fleet.control_plane()
    status, body = control.request("POST", "/v1/ca/rotation", {"step": "switch"})
    assert status == 409 and "begin" in body["error"], body
    assert control.request("POST", "/v1/ca/rotation", {"step": "sideways"})[0] == 400
    reader = control.request("POST", "/v1/tokens", {"kind": "read-only"})[1]["secret"]
    assert control.request("POST", "/v1/ca/rotation", {"step": "begin"}, token=reader)[0] == 403
    assert control.request("GET", "/v1/ca", token=reader)[0] == 200
    assert control.request("POST", "/v1/ca/rotation", {"step": "begin"})[0] == 200
    # The control plane's own listener needs a few seconds to trust the new root.
    status, body = control.request("POST", "/v1/ca/rotation", {"step": "switch"})
    assert status == 409 and body["error"].startswith("not yet"), body


def test_a_rotation_goes_on_across_a_control_plane_restart(fleet, nginx):
    """The steps are stored: after a restart in the middle, the proxies that
    reconnect with their certificates are told the roots in force (and to
    renew, when theirs is not from the issuer in force), and the rotation
    finishes."""
    control = fleet.control_plane()
    assert control.apply(mesh_config(mode="STRICT"))[0] == 201
    inbound, outbound = free_port(), free_port()
    fleet.proxy(sidecar_config(control, "details",
                               instance={"address": f"{LOCALHOST}:{inbound}", "app_address": nginx.address(0)}))
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound, upstream_services=["details"]))
    rotate = [TRELLIS, "ca", "rotate", "--timeout", "60s"]
    begun = subprocess.run([*rotate, "--step", "begin"], env=cli_env(control), capture_output=True, text=True,
                           timeout=90)
    assert begun.returncode == 0, begun.stdout + begun.stderr
    control.restart()
    assert control.request("GET", "/v1/ca")[1]["phase"] == "new-root-trusted"
    again = subprocess.run([*rotate, "--step", "begin"], env=cli_env(control), capture_output=True, text=True,
                           timeout=90)
    assert again.returncode == 1 and "switch" in again.stderr, "begin again is refused, naming the next step"
    # The next steps wait for the proxies to come back with their
    # certificates; after a restart between switch and finish, the control
    # plane tells from the certificate each proxy shows that it already holds
    # one from the new root.
    for step in ("switch", "finish"):
        if step == "finish":
            control.restart()
        done = subprocess.run([*rotate, "--step", step], env=cli_env(control), capture_output=True, text=True,
                              timeout=90)
        assert done.returncode == 0, f"{step}: {done.stdout}{done.stderr}"
    # The proxies acknowledge the last bundle (the old root dropped) a moment after.
    caught_up = {"connected": 2, "trustBundle": 2, "issuer": 2}
    assert wait_until(lambda: control.request("GET", "/v1/ca")[1]["proxies"] == caught_up, 10), \
        control.request("GET", "/v1/ca")[1]
    assert control.request("GET", "/v1/ca")[1]["phase"] == "idle"
    assert wait_until(lambda: subprocess.run([TRELLIS, "load", f"http://{LOCALHOST}:{outbound}/", "-H", "Host: details",
                                              "--rate", "50", "--duration", "1s"], capture_output=True,
                                             timeout=30).returncode == 0, 10)
