"""HTTP/2 to upstreams (cluster `protocol: http2`): requests from HTTP/1.1 and
HTTP/2 clients alike are streams on a few connections that every client of a
worker shares, balanced per request; bodies and trailers go both ways with
flow control per stream; an upstream's GOAWAY moves new requests to a new
connection without failing any."""

import hashlib
import os
import socket
import time

from harness import (LOCALHOST, call, cluster, curl, http_listener, http_responder, metric, proxy_config, route,
                     run, self_signed_certificate, simple_config, validate_config, wait_until)

H2C = "--http2-prior-knowledge"


def h2_cluster(name: str, *endpoints, **fields) -> dict:
    return cluster(name, *endpoints, protocol="http2", **fields)


def h2_config(*upstreams, **kwargs) -> dict:
    return proxy_config([http_listener("web", [route("web")])], [h2_cluster("web", *upstreams)], **kwargs)


def test_http1_and_http2_clients_reach_an_http2_upstream_with_bodies_and_trailers(fleet):
    nginx = fleet.nginx(http2=True)
    log = fleet.dir / "access.log"
    proxy = fleet.proxy(h2_config(nginx, access_log=log))
    base = f"http://{LOCALHOST}:{proxy.port()}"
    for flag in ("--http1.1", H2C):
        assert curl(flag, f"{base}/hello").stdout == b"hello world\n", flag
        big = curl(flag, f"{base}/big")
        assert hashlib.sha256(big.stdout).hexdigest() == nginx.big_sha256, flag
        # The upstream saw HTTP/2 whatever the client spoke.
        echoed = curl(flag, f"{base}/echo-headers").stdout.decode()
        assert "proto=HTTP/2.0" in echoed and f"host={LOCALHOST}:{proxy.port()}" in echoed, echoed
        head = curl(flag, "-I", f"{base}/big")
        assert head.returncode == 0 and b"200" in head.stdout.split(b"\n")[0], head.stdout
    # Bodies up, with a length and streamed without one (chunked from an
    # HTTP/1.1 client), read back whole.
    payload = os.urandom(3_000_000)
    source = fleet.dir / "payload"
    source.write_bytes(payload)
    assert curl("--http1.1", "-f", "-T", source, f"{base}/dav/sized").returncode == 0
    assert curl("--http1.1", "-f", "-T", "-", f"{base}/dav/chunked", input=payload).returncode == 0
    assert curl(H2C, "-f", "-T", "-", f"{base}/dav/streamed", input=payload).returncode == 0
    for name in ("sized", "chunked", "streamed"):
        assert curl("--http1.1", f"{base}/dav/{name}").stdout == payload, name
    # The upstream's HTTP/2 trailers reach an HTTP/1.1 client in the last chunk.
    trailers = curl("--http1.1", "--raw", "-s", f"{base}/trailers").stdout.decode()
    assert "trailer body" in trailers and "x-checksum: abc123" in trailers.lower(), trailers
    stats = proxy.stats()
    assert metric(stats, "trellis_upstream_protocol_errors_total", cluster="web") == 0


def test_requests_of_many_clients_share_a_few_connections_balanced_per_request(fleet):
    nginx = fleet.nginx(2, http2=True)
    # Round robin: the default (peak EWMA) follows latency, which a busy machine bends.
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("web")])],
                                     [h2_cluster("web", nginx.address(0), nginx.address(1),
                                                 lb_policy="round_robin")]), workers=2)
    url = f"http://{LOCALHOST}:{proxy.port()}/port"
    # 64 HTTP/1.1 clients at once, then one HTTP/2 client with 40 streams.
    result = run(["h2load", "--h1", "-n", "4000", "-c", "64", url], timeout=60)
    assert "4000 succeeded, 0 failed, 0 errored" in result.stdout.decode(), result.stdout
    result = run(["h2load", "-n", "2000", "-c", "1", "-m", "40", url], timeout=60)
    assert "2000 succeeded, 0 failed, 0 errored" in result.stdout.decode(), result.stdout
    entries = nginx.access_log()
    assert len(entries) == 6000
    # At most one connection per worker and endpoint carried them all.
    connections = {(e["port"], e["connection"]) for e in entries}
    assert len(connections) <= 4, connections
    stats = proxy.stats()
    assert metric(stats, "trellis_upstream_connects_total", cluster="web") <= 4
    # Round robin per request, even for the single client connection.
    per_port = {p: sum(1 for e in entries if e["port"] == p) for p in nginx.ports}
    assert all(count >= 2400 for count in per_port.values()), per_port


def test_an_upstream_goaway_moves_requests_to_a_new_connection_without_failures(fleet):
    # nginx ends each connection after 10 requests with GOAWAY.
    nginx = fleet.nginx(http2=True, max_requests=10)
    proxy = fleet.proxy(h2_config(nginx), workers=1)
    url = f"http://{LOCALHOST}:{proxy.port()}/hello"
    result = run(["h2load", "--h1", "-n", "500", "-c", "8", url], timeout=60)
    assert "500 succeeded, 0 failed, 0 errored" in result.stdout.decode(), result.stdout
    assert len({e["connection"] for e in nginx.access_log()}) >= 50


def test_a_client_that_does_not_read_stalls_only_its_own_stream(fleet):
    nginx = fleet.nginx(http2=True)
    proxy = fleet.proxy(h2_config(nginx), workers=1)
    port = proxy.port()
    # A client asks for 8 MiB and reads nothing: its stream's window closes,
    # the upstream connection goes on serving the others.
    stalled = socket.create_connection((LOCALHOST, port))
    stalled.sendall(f"GET /big HTTP/1.1\r\nHost: {LOCALHOST}\r\n\r\n".encode())
    time.sleep(0.5)
    for _ in range(20):
        assert curl("--max-time", "5", f"http://{LOCALHOST}:{port}/hello").stdout == b"hello world\n"
    assert curl("--max-time", "20", f"http://{LOCALHOST}:{port}/big-buffered").returncode == 0
    # Then the client reads, and gets all of it.
    stalled.settimeout(20)
    received = bytearray()
    while b"\r\n\r\n" not in received:
        received.extend(stalled.recv(65536))
    body = bytearray(bytes(received).partition(b"\r\n\r\n")[2])
    while len(body) < nginx.BIG_SIZE:
        data = stalled.recv(1 << 20)
        assert data, f"closed after {len(body)} bytes"
        body.extend(data)
    stalled.close()
    assert hashlib.sha256(bytes(body)).hexdigest() == nginx.big_sha256


def test_over_tls_http2_is_agreed_by_alpn(fleet):
    cert, key = self_signed_certificate(fleet.subdir("certs"), "api.example.test")
    nginx = fleet.nginx(http2=True, tls=(cert, key))
    tls = {"server_name": "api.example.test", "trust_bundle": cert}
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("web")])],
                                     [h2_cluster("web", nginx, tls=tls)]))
    echoed = curl(f"http://{LOCALHOST}:{proxy.port()}/echo-headers").stdout.decode()
    assert "proto=HTTP/2.0" in echoed, echoed
    big = curl(H2C, f"http://{LOCALHOST}:{proxy.port()}/big")
    assert hashlib.sha256(big.stdout).hexdigest() == nginx.big_sha256
    # An upstream that speaks only HTTP/1.1 refuses the handshake (no
    # protocol in common): a connect failure, never HTTP/2 sent blind.
    h1 = fleet.nginx(tls=(cert, key))
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("web")])], [h2_cluster("web", h1, tls=tls)]))
    answer = curl("-s", "-w", "%{http_code}", f"http://{LOCALHOST}:{proxy.port()}/hello")
    assert answer.stdout.startswith(b"upstream connect error") and answer.stdout.endswith(b"503"), answer.stdout
    assert not [e for e in h1.access_log() if e["status"] == 200]


def test_the_protocol_field_is_checked(fleet, nginx):
    cfg = simple_config(nginx)
    cfg["admin"]["address"] = f"{LOCALHOST}:1"
    cfg["listeners"][0]["address"] = f"{LOCALHOST}:2"
    cfg["clusters"][0]["protocol"] = "http3"
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0
    assert b"clusters[0].protocol" in result.stderr + result.stdout, result.stderr
    assert b"expected http1, http2 or downstream" in result.stderr + result.stdout, result.stderr
    # Over TLS, ALPN fixes one protocol per connection.
    cfg["clusters"][0]["protocol"] = "downstream"
    cfg["clusters"][0]["tls"] = {"server_name": "example.com"}
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0
    assert b"clusters[0].protocol: downstream is not possible with tls" in result.stderr + result.stdout
    # A gRPC check speaks HTTP/2, which an http1 cluster's TLS does not ask for.
    cfg["clusters"][0]["protocol"] = "http1"
    cfg["clusters"][0]["health_check"] = {"grpc": {}, "interval": "1s", "timeout": "500ms"}
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0
    assert b"clusters[0].health_check: grpc checks speak HTTP/2" in result.stderr + result.stdout
    cfg["clusters"][0]["protocol"] = "http2"
    assert validate_config(fleet.dir, cfg).returncode == 0


def test_http_health_checks_of_an_http2_cluster_speak_http2(fleet):
    nginx = fleet.nginx(http2=True)
    # Answers 200 to anything in HTTP/1.1: it would pass an HTTP/1.1 check.
    http1_only = fleet.upstream(http_responder())
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("web")])],
        [h2_cluster("web", nginx, http1_only, lb_policy="round_robin",
                    health_check={"http": {"path": "/hello"}, "interval": "200ms", "timeout": "150ms",
                                  "unhealthy_threshold": 1, "jitter_percent": 0})]))
    wait_until(lambda: "endpoint " + http1_only.address + " is unhealthy" in proxy.output(), 10)
    # nginx passes its HTTP/2 checks: every request goes to it.
    statuses = [call(proxy.port(), "/hello")[0] for _ in range(20)]
    assert statuses == [200] * 20
    assert "endpoint " + nginx.address() + " is unhealthy" not in proxy.output()


def test_an_upstream_that_does_not_speak_http2_fails_clearly(fleet, nginx):
    # nginx on this port speaks HTTP/1.1 only.
    proxy = fleet.proxy(h2_config(nginx))
    answer = curl("-s", "-w", "%{http_code}", f"http://{LOCALHOST}:{proxy.port()}/hello")
    assert answer.stdout.endswith(b"502"), answer.stdout
    stats = proxy.stats()
    assert metric(stats, "trellis_upstream_protocol_errors_total", cluster="web") >= 1
