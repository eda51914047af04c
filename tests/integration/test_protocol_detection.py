"""Listeners with `protocol: auto`: HTTP/1.x and HTTP/2 are told apart from
anything else by the client's first bytes and routed; the rest (binary
protocols, TLS not terminated here, a client waiting for its server to speak
first) is proxied as TCP to the listener's cluster. Each outcome is counted."""

import socket
import time

from harness import (LOCALHOST, Peer, cluster, curl, echo, metric, proxy_config, route, validate_config,
                     vhost)


def greeter(peer: Peer) -> None:
    """A server that speaks first (as SMTP or MySQL do), then echoes."""
    peer.send(b"220 ready\r\n")
    echo(peer)


def auto_listener(**fields) -> dict:
    return {"name": "web", "address": None, "protocol": "auto", "cluster": "raw",
            "virtual_hosts": [vhost([route("web")])], **fields}


def exchange(port: int, data: bytes, expect: int, timeout: float = 5) -> bytes:
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while len(got) < expect:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_http_and_other_protocols_share_a_port(fleet, nginx):
    raw = fleet.upstream(echo)
    proxy = fleet.proxy(proxy_config([auto_listener()], [cluster("web", nginx), cluster("raw", raw)]))
    port = proxy.port()
    base = f"http://{LOCALHOST}:{port}"
    assert curl("--http1.1", f"{base}/hello").stdout == b"hello world\n"
    assert curl("--http2-prior-knowledge", f"{base}/hello").stdout == b"hello world\n"
    # Redis's protocol, and its inline form that starts like a request line.
    for data in (b"*1\r\n$4\r\nPING\r\n", b"GET key\r\n", b"\x00\x01binary\xff"):
        assert exchange(port, data, len(data)) == data
    # A TLS ClientHello the listener does not terminate goes through whole.
    hello = b"\x16\x03\x01\x00\x05hello"
    assert exchange(port, hello, len(hello)) == hello
    # Half-close after a short message: the bytes still go through.
    with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
        sock.sendall(b"PI")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b"PI"
    stats = proxy.stats()
    outcomes = {o: metric(stats, "trellis_protocol_detection_total", listener="web", outcome=o)
                for o in ("http1", "http2", "tcp", "tls", "timeout")}
    assert outcomes == {"http1": 1, "http2": 1, "tcp": 4, "tls": 1, "timeout": 0}, outcomes


def test_a_server_that_speaks_first_is_reached_after_the_detection_timeout(fleet, nginx):
    server = fleet.upstream(greeter)
    proxy = fleet.proxy(proxy_config([auto_listener(detect_timeout="300ms")],
                                     [cluster("web", nginx), cluster("raw", server)]))
    with socket.create_connection((LOCALHOST, proxy.port()), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b"220 ready\r\n"
        waited = time.monotonic() - started
        sock.sendall(b"EHLO x\r\n")
        assert sock.recv(100) == b"EHLO x\r\n"
    assert 0.25 <= waited < 3, waited
    stats = proxy.stats()
    assert metric(stats, "trellis_protocol_detection_total", listener="web", outcome="timeout") == 1


def test_auto_listeners_are_checked(fleet):
    def config(listener: dict) -> dict:
        cfg = proxy_config([listener], [cluster("web", "127.0.0.1:9"), cluster("raw", "127.0.0.1:9")])
        cfg["admin"]["address"] = f"{LOCALHOST}:1"
        cfg["listeners"][0]["address"] = f"{LOCALHOST}:2"
        return cfg

    listener = auto_listener()
    del listener["cluster"]
    result = validate_config(fleet.dir, config(listener))
    assert result.returncode != 0 and b"listeners[0].cluster" in result.stderr + result.stdout, result.stderr
    listener = auto_listener(detect_timeout="0s")
    result = validate_config(fleet.dir, config(listener))
    assert result.returncode != 0 and b"listeners[0].detect_timeout" in result.stderr + result.stdout
    http = {"name": "web", "address": None, "protocol": "http", "detect_timeout": "1s",
            "virtual_hosts": [vhost([route("web")])]}
    result = validate_config(fleet.dir, config(http))
    assert result.returncode != 0 and b"only for auto listeners" in result.stderr + result.stdout
    assert validate_config(fleet.dir, config(auto_listener(detect_timeout="250ms"))).returncode == 0
