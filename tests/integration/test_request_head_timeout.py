"""Slow clients (slowloris): a request head, or an HTTP/2 header section,
must arrive whole within the listener's request_head_timeout of its first
byte, however it trickles in; the client gets 408 (HTTP/2: GOAWAY) and the
connection is closed, while other clients go on."""

import socket
import time

from hpack import Encoder
from hyperframe.frame import HeadersFrame, SettingsFrame

from harness import LOCALHOST, curl, metric, simple_config, validate_config

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def trickle(port: int, first: bytes, pieces: list[bytes], every: float, until: float) -> tuple[bytes, float]:
    """Sends `first`, then one piece every `every` s, reading meanwhile;
    returns what came back and when the server closed (s from the start)."""
    start = time.monotonic()
    received = b""
    with socket.create_connection((LOCALHOST, port), timeout=every) as sock:
        sock.sendall(first)
        for piece in pieces:
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    return received, time.monotonic() - start
                received += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:  # closed with our bytes unread
                return received, time.monotonic() - start
            if time.monotonic() - start > until:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
        sock.settimeout(until)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return received, time.monotonic() - start


def test_a_trickled_http1_head_gets_408_in_time_while_others_are_served(fleet, nginx):
    cfg = simple_config(nginx.address())
    cfg["listeners"][0]["request_head_timeout"] = "2s"
    cfg["listeners"][0]["idle_timeout"] = "60s"
    proxy = fleet.proxy(cfg)
    port = proxy.port()
    # One header line every 0.4 s: never idle, never done.
    lines = [f"x-slow-{i}: {i}\r\n".encode() for i in range(100)]
    received, closed_at = trickle(port, b"GET /hello HTTP/1.1\r\nHost: x\r\n", lines, 0.4, 10)
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"request head not received within 2000 ms" in received
    assert 1.8 <= closed_at < 4, closed_at
    # Pipelined: the second head's time counts from its own first byte.
    received, _ = trickle(port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\n", lines, 0.4, 10)
    assert received.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in received, received[:400]
    assert curl(f"http://{LOCALHOST}:{port}/hello").stdout == b"hello world\n"
    stats = proxy.stats()
    assert metric(stats, "trellis_http_request_head_timeouts_total", listener="web") == 2
    assert metric(stats, "trellis_http_malformed_requests_total", listener="web") == 0
    assert [e["request"] for e in nginx.access_log()] == ["GET /hello HTTP/1.1"] * 2


def test_a_trickled_http2_header_section_ends_the_connection(fleet, nginx):
    cfg = simple_config(nginx.address())
    cfg["listeners"][0]["request_head_timeout"] = "2s"
    proxy = fleet.proxy(cfg)
    port = proxy.port()
    headers = HeadersFrame(1)
    headers.flags.add("END_HEADERS")
    headers.flags.add("END_STREAM")
    # A proper header section of about 300 bytes, one byte every 0.4 s.
    headers.data = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                                     (":path", "/hello"), *[(f"x-slow-{i}", "v" * 20) for i in range(10)]])
    wire = headers.serialize()
    received, closed_at = trickle(port, PREFACE + SettingsFrame(0).serialize() + wire[:9],
                                  [wire[i:i + 1] for i in range(9, len(wire))], 0.4, 10)
    assert 1.8 <= closed_at < 4, closed_at
    goaway = received.find(b"\x00\x00\x08\x07")  # a GOAWAY frame's length and type
    assert goaway >= 0 and received[goaway + 13:goaway + 17] == b"\x00\x00\x00\x0b", received  # ENHANCE_YOUR_CALM
    assert metric(proxy.stats(), "trellis_http_request_head_timeouts_total", listener="web") == 1
    assert curl("--http2-prior-knowledge", f"http://{LOCALHOST}:{port}/hello").stdout == b"hello world\n"


def test_the_timeout_is_only_for_http_listeners(fleet):
    cfg = simple_config(f"{LOCALHOST}:1")
    cfg["listeners"][0].update(protocol="tcp", cluster="web", request_head_timeout="5s")
    del cfg["listeners"][0]["virtual_hosts"]
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0
    assert "request_head_timeout\" is only for http listeners" in (result.stdout + result.stderr).decode()
