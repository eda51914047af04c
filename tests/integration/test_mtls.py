"""mTLS between two real sidecars configured from files (no control plane):
client proxy -> mTLS -> server proxy -> application. The server refuses
plain text and certificates from another CA or expired ones; the client
refuses a server with another identity; the application learns the caller's
identity from x-forwarded-client-cert and AuthorizationPolicy matches it; a
renewed certificate is picked up from the files without dropping traffic;
sslscan sees TLS 1.3 only."""

import http.client
import os
import shutil
import socket
import ssl

import pytest

from harness import (LOCALHOST, Pki, cluster, http_listener, http_response, http_responder, metric,
                     proxy_config, route, run, validate_config, wait_until)

TD = "cluster.local"
PRODUCT = f"spiffe://{TD}/ns/default/sa/productpage"
DETAILS = f"spiffe://{TD}/ns/default/sa/details"


@pytest.fixture
def pki(fleet) -> Pki:
    return Pki(fleet.dir / "pki")


def server_config(upstream_address: str, mtls: dict, authorization: dict | None = None,
                  mode: str = "STRICT") -> dict:
    listener = http_listener("inbound", [route("app")])
    listener["tls"] = {"mode": mode}
    if authorization:
        listener["authorization"] = authorization
    cfg = proxy_config([listener], [cluster("app", upstream_address)])
    cfg["mtls"] = mtls
    return cfg


def client_config(server_port: int, mtls: dict, identity: str = DETAILS) -> dict:
    cfg = proxy_config([http_listener("outbound", [route("details")])],
                       [cluster("details", {"address": f"{LOCALHOST}:{server_port}", "identity": identity})])
    cfg["mtls"] = mtls
    return cfg


def call(port: int, path: str = "/", method: str = "GET", headers: dict | None = None) -> tuple[int, bytes]:
    try:
        conn = http.client.HTTPConnection(LOCALHOST, port, timeout=5)
        conn.request(method, path, headers={"Host": "details", **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, body
    except OSError:
        return 0, b""


def echo_xfcc(req) -> bytes:
    return http_response(200, ("xfcc=" + (req.header("x-forwarded-client-cert") or "")).encode())


@pytest.fixture
def pair(fleet, pki):
    """client sidecar (productpage) -> mTLS -> server sidecar (details) -> app."""
    app = fleet.upstream(http_responder(echo_xfcc))
    server = fleet.proxy(server_config(app.address, pki.issue("details", DETAILS)))
    client = fleet.proxy(client_config(server.port("inbound"), pki.issue("productpage", PRODUCT)))
    return client, server


def test_traffic_goes_over_mtls_and_the_application_learns_the_caller(pair):
    client, server = pair
    status, body = call(client.port("outbound"), headers={"X-Forwarded-Client-Cert": "By=forged;URI=forged"})
    assert status == 200, body
    assert body == f"xfcc=By={DETAILS};URI={PRODUCT}".encode(), "the client's header must be replaced"
    stats = server.stats()
    assert metric(stats, "trellis_certificate_expiry_seconds") > 3600


def test_plain_text_to_a_strict_listener_is_refused(pair):
    _, server = pair
    status, _ = call(server.port("inbound"))
    assert status == 0, "a plain-text request must not get an answer"


def test_a_permissive_listener_serves_mtls_and_plain_text_on_one_port(fleet, pki):
    app = fleet.upstream(http_responder(echo_xfcc))
    server = fleet.proxy(server_config(app.address, pki.issue("details", DETAILS), mode="PERMISSIVE"))
    client = fleet.proxy(client_config(server.port("inbound"), pki.issue("productpage", PRODUCT)))
    assert call(client.port("outbound")) == (200, f"xfcc=By={DETAILS};URI={PRODUCT}".encode())
    assert call(server.port("inbound"), headers={"X-Forwarded-Client-Cert": "URI=forged"}) == (200, b"xfcc="), \
        "plain text is served, without an identity"


def expect_refused(server, creds: dict) -> None:
    """A TLS client with `creds` gets no answer from the server sidecar: the
    handshake fails, or the connection is closed before any byte."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(creds["certificate_chain"], creds["private_key"])
    with socket.create_connection((LOCALHOST, server.port("inbound")), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: details\r\n\r\n")
                assert tls.recv(100) == b"", "a refused certificate must not get an answer"
                raise ConnectionError("closed")


def test_a_certificate_from_another_ca_is_refused(fleet, pair):
    _, server = pair
    other = Pki(fleet.dir / "other", "other-root")
    creds = other.issue("intruder", PRODUCT)
    expect_refused(server, creds)


def test_an_expired_certificate_is_refused(fleet, pki, pair):
    _, server = pair
    creds = pki.issue("expired", PRODUCT, start="20200101000000Z", end="20200102000000Z")
    expect_refused(server, creds)


def test_the_client_refuses_a_server_with_another_identity(fleet, pki, pair):
    _, server = pair
    # A client expecting ratings at the details sidecar's address: a valid mesh
    # certificate, but not the identity the destination runs as.
    wrong = fleet.proxy(client_config(server.port("inbound"), pki.issue("pp2", PRODUCT),
                                      identity=f"spiffe://{TD}/ns/default/sa/ratings"))
    status, _ = call(wrong.port("outbound"))
    assert status in (502, 503), status


def test_authorization_matches_the_verified_identity(fleet, pki):
    app = fleet.upstream(http_responder(echo_xfcc))
    authz = {"policies": [{"name": "default/details-readers",
                           "rules": [{"from": [{"identities": [PRODUCT]}], "to": [{"methods": ["GET"]}]}]}]}
    server = fleet.proxy(server_config(app.address, pki.issue("details", DETAILS), authz))
    allowed = fleet.proxy(client_config(server.port("inbound"), pki.issue("productpage", PRODUCT)))
    other = fleet.proxy(client_config(server.port("inbound"),
                                      pki.issue("reviews", f"spiffe://{TD}/ns/default/sa/reviews")))
    assert call(allowed.port("outbound"))[0] == 200
    assert call(allowed.port("outbound"), method="POST")[0] == 403
    status, body = call(other.port("outbound"))
    assert (status, body) == (403, b"access denied by AuthorizationPolicy default/details-readers\n")


def test_a_renewed_certificate_is_used_for_new_handshakes_without_dropping_traffic(fleet, pki, pair):
    client, server = pair
    before = metric(server.stats(), "trellis_certificate_renewals_total", result="ok")
    conn = http.client.HTTPConnection(LOCALHOST, client.port("outbound"), timeout=5)
    conn.request("GET", "/", headers={"Host": "details"})
    assert conn.getresponse().read().startswith(b"xfcc=")
    # New files in place (written aside, then renamed over the old ones).
    fresh = pki.issue("details-2", DETAILS)
    paths = server.config["mtls"]
    for key in ("certificate_chain", "private_key"):
        shutil.copy(fresh[key], paths[key] + ".new")
        os.chmod(paths[key] + ".new", 0o600)
        os.replace(paths[key] + ".new", paths[key])
    assert wait_until(lambda: metric(server.stats(), "trellis_certificate_renewals_total", result="ok") > before,
                      15), "the new files were not picked up"
    conn.request("GET", "/", headers={"Host": "details"})
    assert conn.getresponse().status == 200, "the open connection keeps working"
    assert call(client.port("outbound"))[0] == 200


def test_sslscan_sees_tls13_only(pair):
    _, server = pair
    if shutil.which("sslscan") is None:
        pytest.fail("sslscan is not installed: run scripts/setup.sh")
    out = run(["sslscan", "--no-colour", f"{LOCALHOST}:{server.port('inbound')}"], timeout=120).stdout
    out = out.decode() if isinstance(out, bytes) else out
    enabled = {line.split()[0] for line in out.splitlines() if "enabled" in line and line.startswith(("SSL", "TLS"))}
    assert enabled == {"TLSv1.3"}, out
    accepted = [line for line in out.splitlines() if line.startswith(("Preferred", "Accepted"))]
    assert accepted and all("TLSv1.3" in line for line in accepted), out


@pytest.mark.parametrize("mesh_protocol, mesh_connections", [(None, 1), ("downstream", 2)])
def test_between_sidecars_http2_by_default_or_each_request_in_its_clients_protocol(fleet, pki, mesh_protocol,
                                                                                   mesh_connections):
    """An HTTP/1.1 client and an HTTP/2 client of one sidecar: by default
    both ride one HTTP/2 connection to the other sidecar; with
    mesh_protocol downstream the HTTP/1.1 client's requests take an
    HTTP/1.1 connection of their own over the same mTLS."""
    app = fleet.upstream(http_responder(echo_xfcc))
    server = fleet.proxy(server_config(app.address, pki.issue("details", DETAILS)))
    client_cfg = client_config(server.port("inbound"), pki.issue("productpage", PRODUCT))
    if mesh_protocol:
        client_cfg["mesh_protocol"] = mesh_protocol
    client = fleet.proxy(client_cfg, workers=1)
    for _ in range(3):
        status, body = call(client.port("outbound"))
        assert status == 200 and body == f"xfcc=By={DETAILS};URI={PRODUCT}".encode(), body
        h2 = run(["curl", "-sS", "--http2-prior-knowledge", "-H", "Host: details",
                  f"http://{LOCALHOST}:{client.port('outbound')}/h2"])
        assert h2.stdout.startswith(b"xfcc=By="), h2
    assert metric(server.stats(), "trellis_downstream_connections_total", listener="inbound") == mesh_connections
    # The application is spoken to in HTTP/1.1 either way (its cluster's protocol).
    assert len(app.requests()) == 6


def test_mesh_protocol_is_checked(fleet, pki):
    cfg = client_config(1, pki.issue("productpage", PRODUCT))
    cfg["mesh_protocol"] = "http1"
    cfg["admin"]["address"] = f"{LOCALHOST}:2"
    cfg["listeners"][0]["address"] = f"{LOCALHOST}:3"
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0 and b"mesh_protocol" in result.stdout + result.stderr, result
