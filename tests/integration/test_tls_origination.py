"""TLS origination to a service outside the mesh: a cluster with `tls` calls
its endpoints over TLS, sending the server name (SNI) and accepting only a
certificate that names it and chains to the given roots; anything else is a
connect failure, never plain text."""

import http.server
import ssl
import threading

import pytest

from harness import LOCALHOST, cluster, get, http_listener, proxy_config, route, self_signed_certificate


class HttpsUpstream:
    """An HTTPS server on loopback that records the SNI of each handshake."""

    def __init__(self, cert: str, key: str):
        self.server_names: list[str | None] = []
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                body = b"secure hello\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: outer.server_names.append(name)
        self.httpd = http.server.ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def upstream(fleet):
    cert, key = self_signed_certificate(fleet.subdir("external"), "api.example.test")
    server = HttpsUpstream(cert, key)
    yield server, cert
    server.close()


def config(port: int, tls: dict) -> dict:
    return proxy_config([http_listener("web", [route("external")])],
                        [cluster("external", f"{LOCALHOST}:{port}", tls=tls)])


def test_requests_go_over_tls_to_the_named_server(fleet, upstream):
    server, cert = upstream
    proxy = fleet.proxy(config(server.port, {"server_name": "api.example.test", "trust_bundle": cert}))
    response = get(proxy.port("web"), "/")
    assert (response.status, response.body) == (200, b"secure hello\n")
    assert server.server_names and server.server_names[-1] == "api.example.test"


def test_a_certificate_for_another_name_or_from_other_roots_gets_no_request(fleet, upstream):
    server, cert = upstream
    other_cert, _ = self_signed_certificate(fleet.subdir("other"), "api.example.test")
    for tls in ({"server_name": "other.example.test", "trust_bundle": cert},
                {"server_name": "api.example.test", "trust_bundle": other_cert},
                {"server_name": "api.example.test"}):  # the system's roots do not know this one
        proxy = fleet.proxy(config(server.port, tls))
        response = get(proxy.port("web"), "/")
        assert response.status == 503, (tls, str(response))
        proxy.stop()
    assert server.requests == 0, "no request reached a server that was not verified"
