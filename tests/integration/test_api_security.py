"""Who may use trellis-control's JSON API (bearer tokens: admin, read-only,
join), the admin token it writes at its first start, and what the API server
refuses before any handler runs: a Host that is not its own (DNS rebinding), a
write whose body is not JSON or that comes from another origin, and OPTIONS
(no CORS). The proxy's admin endpoint shares the server: its Host check is in
test_admin.py."""

import http.client
import json
import os
import ssl
import stat

import pytest

from harness import CONTROL_BIN, LOCALHOST, run, tail

INSTANCE = {"service": "reviews", "address": "10.0.0.7:9080"}


def raw(control, method: str, path: str, headers: dict | None = None,
        body: bytes | str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request to the API (over TLS, checking its certificate) with
    exactly these fields (Host too, when given)."""
    tls = ssl.create_default_context(cafile=str(control.trust_bundle))
    conn = http.client.HTTPSConnection(LOCALHOST, control.http_port, timeout=5, context=tls)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def issue(control, kind: str, **fields) -> str:
    status, body = control.request("POST", "/v1/tokens", {"kind": kind, **fields})
    assert status == 201, f"token {kind}: {status} {body}"
    return body["secret"]


def registered(control) -> list:
    status, body = control.request("GET", "/v1/registry/services")
    assert status == 200, body
    return body["services"]


@pytest.fixture
def control(fleet):
    return fleet.control_plane()


# ------------------------------------------------------------------ tokens


def test_the_api_needs_a_token(control):
    for path in ("/v1/status", "/v1/registry/services", "/v1/resources/httproutes", "/v1/tokens", "/v1/nope"):
        status, headers, body = raw(control, "GET", path)
        assert status == 401, f"GET {path} without a token: {status} {body!r}"
        assert headers.get("www-authenticate", "").startswith("Bearer"), headers
        assert "error" in json.loads(body), body
    status, headers, body = raw(control, "GET", "/v1/status",
                                bearer("trellis-tok-00000000-" + "A" * 43))
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"], (status, headers)
    assert json.loads(body)["error"] == "unauthorized: invalid token"
    status, _, _ = raw(control, "GET", "/v1/status", {"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert status == 401
    for path in ("/healthz", "/ready"):
        assert raw(control, "GET", path)[0] == 200, f"{path} must answer without a token"
    status, body = control.request("POST", "/v1/registry/instances", INSTANCE, token=None)
    assert status == 401, body
    assert registered(control) == []


def test_read_only_token_reads_and_cannot_write(control):
    reader = issue(control, "read-only", description="dashboards")
    for path in ("/v1/status", "/v1/registry/services", "/v1/resources/httproutes"):
        status, body = control.request("GET", path, token=reader)
        assert status == 200, f"GET {path} as read-only: {status} {body}"
    assert raw(control, "HEAD", "/v1/status", bearer(reader))[0] == 200
    for method, path, body in (("POST", "/v1/registry/instances", INSTANCE),
                               ("PUT", "/v1/resources", {"kind": "MeshConfig"}),
                               ("DELETE", "/v1/resources/meshconfigs/default", None),
                               ("POST", "/v1/tokens", {"kind": "admin"})):
        status, answer = control.request(method, path, body, token=reader)
        assert status == 403, f"{method} {path} as read-only: {status} {answer}"
        assert "read-only" in answer["error"], answer
    assert control.request("GET", "/v1/tokens", token=reader)[0] == 403, "tokens are for admins"
    assert registered(control) == []


def test_join_token_grants_nothing_on_the_api(control):
    join = issue(control, "join", namespace="bookinfo", serviceAccount="reviews", ttl="10m")
    for method, path, body in (("GET", "/v1/status", None), ("POST", "/v1/registry/instances", INSTANCE)):
        status, answer = control.request(method, path, body, token=join)
        assert status == 403 and "join token" in answer["error"], f"{method} {path}: {status} {answer}"
    assert registered(control) == []


def test_registration_and_token_management_with_the_admin_token(control):
    status, body = control.request("POST", "/v1/registry/instances", INSTANCE)
    assert status == 201, body
    assert [s["service"] for s in registered(control)] == ["reviews"]

    status, headers, raw_body = raw(control, "POST", "/v1/tokens",
                                    {**bearer(control.admin_token), "Content-Type": "application/json"},
                                    json.dumps({"kind": "read-only", "ttl": "1h"}))
    assert status == 201 and headers.get("cache-control") == "no-store", (status, headers)
    created = json.loads(raw_body)
    secret, token_id = created["secret"], created["token"]["id"]
    assert secret.startswith(f"trellis-{token_id}-") and created["token"]["state"] == "active"
    assert "expiresAt" in created["token"]

    status, listing = control.request("GET", "/v1/tokens")
    assert status == 200 and token_id in {t["id"] for t in listing["tokens"]}
    assert secret[21:] not in json.dumps(listing) and control.admin_token[21:] not in json.dumps(listing)
    assert all("secret" not in t for t in listing["tokens"])

    status, answer = control.request("POST", "/v1/tokens", {"kind": "join", "namespace": "Bad_NS", "ttl": 5,
                                                            "serviceAcount": "x"})
    assert status == 400, answer
    assert {d["path"] for d in answer["details"]} == {"serviceAcount", "ttl", "namespace", "serviceAccount"}, \
        answer
    status, answer = control.request("POST", "/v1/tokens", {"kind": "join", "namespace": "Bad_NS", "ttl": "1h"})
    assert status == 400 and {d["path"] for d in answer["details"]} == {"namespace", "serviceAccount"}, answer

    assert control.request("GET", "/v1/status", token=secret)[0] == 200
    assert control.request("DELETE", f"/v1/tokens/{token_id}")[0] == 200
    status, answer = control.request("GET", "/v1/status", token=secret)
    assert status == 401 and answer["error"] == f"unauthorized: token {token_id} was revoked", answer
    assert control.request("DELETE", "/v1/tokens/tok-00000000")[0] == 404
    log = control.service.stderr()
    assert secret[21:] not in log and control.admin_token[21:] not in log, "a secret reached the log"


def test_admin_token_file_is_private_never_logged_and_kept(control):
    path = control.admin_token_path
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, f"{path} has mode {oct(mode)}"
    assert stat.S_IMODE(os.stat(control.data_dir).st_mode) == 0o700
    token = control.admin_token
    assert token.startswith("trellis-tok-")
    log = control.service.stderr() + control.service.stdout()
    assert str(path) in log, f"the log should say where the token is:\n{tail(log)}"
    assert token[21:] not in log, "the admin token's secret reached the log"

    assert control.stop() == 0
    control.start()
    assert control.admin_token == token, "a later start must not replace the admin token"
    assert control.request("GET", "/v1/status")[0] == 200
    assert token[21:] not in control.service.stderr()


def test_new_admin_token_replaces_the_file_and_revokes_the_old_one(control):
    old = control.admin_token
    kept = issue(control, "admin", description="ci")
    # While the control plane runs, on the same data directory.
    result = run([CONTROL_BIN, "--data-dir", control.data_dir, "--new-admin-token"], timeout=30)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    new = control.admin_token
    assert new != old and new[21:] not in output and str(control.admin_token_path) in output, output
    assert stat.S_IMODE(os.stat(control.admin_token_path).st_mode) == 0o600
    assert control.request("GET", "/v1/status", token=new)[0] == 200
    status, answer = control.request("GET", "/v1/status", token=old)
    assert status == 401 and "was revoked" in answer["error"], answer
    assert control.request("GET", "/v1/status", token=kept)[0] == 200, "other admin tokens stay in force"


# ------------------------------------------------ what a browser could send


def test_foreign_host_is_refused_and_registers_nothing(control):
    token = control.admin_token
    for host in ("attacker.example", f"attacker.example:{control.http_port}", f"127.0.0.2:{control.http_port}"):
        status, headers, body = raw(control, "POST", "/v1/registry/instances",
                                    {"Host": host, **bearer(token), "Content-Type": "application/json"},
                                    json.dumps(INSTANCE))
        assert status == 421, f"Host {host}: {status} {body!r}"
        assert raw(control, "GET", "/v1/status", {"Host": host, **bearer(token)})[0] == 421
    assert registered(control) == []
    # The names the API is reached by.
    for host in (f"127.0.0.1:{control.http_port}", f"localhost:{control.http_port}"):
        assert raw(control, "GET", "/v1/status", {"Host": host, **bearer(token)})[0] == 200, host


def test_api_host_names_a_dns_name_in_front(fleet):
    control = fleet.control_plane(["--api-host", "mesh.example.com"])
    token = control.admin_token
    assert raw(control, "GET", "/v1/status", {"Host": "mesh.example.com", **bearer(token)})[0] == 200
    assert raw(control, "GET", "/v1/status", {"Host": "other.example.com", **bearer(token)})[0] == 421
    bad = run([CONTROL_BIN, "--data-dir", fleet.dir / "x", "--api-host", "http://mesh.example.com/"], timeout=10)
    assert bad.returncode == 2 and b"--api-host" in bad.stderr, bad.stderr


def test_non_json_write_is_415_and_registers_nothing(control):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**bearer(control.admin_token)}
        if content_type:
            headers["Content-Type"] = content_type
        status, _, body = raw(control, "POST", "/v1/registry/instances", headers, json.dumps(INSTANCE))
        assert status == 415, f"{content_type}: {status} {body!r}"
    assert registered(control) == []
    status, _, body = raw(control, "POST", "/v1/registry/instances",
                          {**bearer(control.admin_token), "Content-Type": "application/json; charset=utf-8"},
                          json.dumps(INSTANCE))
    assert status == 201, body


def test_foreign_origin_cannot_write(control):
    headers = {**bearer(control.admin_token), "Content-Type": "application/json"}
    for origin in ("http://attacker.example", "null", f"http://localhost:{control.http_port + 1}"):
        status, _, body = raw(control, "POST", "/v1/registry/instances", {**headers, "Origin": origin},
                              json.dumps(INSTANCE))
        assert status == 403, f"Origin {origin}: {status} {body!r}"
    assert registered(control) == []
    own = f"http://127.0.0.1:{control.http_port}"
    status, _, body = raw(control, "POST", "/v1/registry/instances", {**headers, "Origin": own},
                          json.dumps(INSTANCE))
    assert status == 201, body


def test_options_is_405_without_cors(control):
    status, headers, _ = raw(control, "OPTIONS", "/v1/registry/instances",
                             {"Origin": "http://attacker.example", "Access-Control-Request-Method": "POST",
                              "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 405, status
    assert not [h for h in headers if h.startswith("access-control-")], headers
    assert "OPTIONS" not in headers.get("allow", ""), headers
    # Nor on any other answer.
    for method, path in (("GET", "/v1/status"), ("GET", "/healthz")):
        _, headers, _ = raw(control, method, path,
                            {"Origin": "http://attacker.example", **bearer(control.admin_token)})
        assert not [h for h in headers if h.startswith("access-control-")], headers
