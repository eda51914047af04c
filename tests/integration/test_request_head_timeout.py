"""Slow clients (slowloris): a request head, or an HTTP/2 header section,
must arrive whole within the listener's request_head_timeout of its first
byte, however it trickles in; the client gets 408 (HTTP/2: GOAWAY) and the
connection is closed, while other clients go on. A request body must keep
arriving at request_body_min_rate after request_body_timeout (slow POST):
the client gets 408, unless the upstream is what holds the body back."""

import socket
import threading
import time

import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, Frame, HeadersFrame, SettingsFrame, WindowUpdateFrame

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


@pytest.mark.parametrize("field, value", [("request_head_timeout", "5s"), ("request_body_timeout", "5s"),
                                          ("request_body_min_rate", 100)])
def test_the_timeouts_are_only_for_http_listeners(fleet, field, value):
    cfg = simple_config(f"{LOCALHOST}:1")
    cfg["listeners"][0].update(protocol="tcp", cluster="web", **{field: value})
    del cfg["listeners"][0]["virtual_hosts"]
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0
    assert f"{field}\" is only for http listeners" in (result.stdout + result.stderr).decode()


def body_timeout_config(upstream: str, timeout: str = "1s", rate: int = 1000) -> dict:
    cfg = simple_config(upstream)
    cfg["listeners"][0].update(request_body_timeout=timeout, request_body_min_rate=rate, idle_timeout="60s")
    return cfg


def test_a_trickled_http1_body_gets_408_while_others_are_served(fleet, nginx):
    proxy = fleet.proxy(body_timeout_config(nginx.address()))
    port = proxy.port()
    # 10 bytes every 0.25 s (40 B/s), far below 1,000 B/s: late at about 1 s.
    head = b"PUT /dav/slow.txt HTTP/1.1\r\nHost: x\r\ncontent-length: 100000\r\n\r\n"
    received, closed_at = trickle(port, head, [b"x" * 10] * 100, 0.25, 10)
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"request body timeout" in received
    assert 0.9 <= closed_at < 3, closed_at
    assert curl(f"http://{LOCALHOST}:{port}/hello").stdout == b"hello world\n"
    # Chunked, the same.
    head = b"PUT /dav/slow.txt HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    received, closed_at = trickle(port, head, [b"1\r\nx\r\n"] * 100, 0.25, 10)
    assert received.startswith(b"HTTP/1.1 408") and 0.9 <= closed_at < 3, (received[:200], closed_at)
    assert metric(proxy.stats(), "trellis_http_request_body_timeouts_total", listener="web") == 2


def test_a_body_at_the_minimum_rate_may_take_longer_than_the_timeout(fleet, nginx):
    proxy = fleet.proxy(body_timeout_config(nginx.address()))
    # 200 bytes every 0.1 s (2,000 B/s) for 3 s: every byte earns time.
    body = b"y" * 6000
    head = f"PUT /dav/steady.txt HTTP/1.1\r\nHost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    received, _ = trickle(proxy.port(), head, [body[i:i + 200] for i in range(0, len(body), 200)], 0.1, 6)
    assert received.startswith(b"HTTP/1.1 201"), received[:200]
    assert (nginx.dav_dir / "steady.txt").read_bytes() == body
    assert metric(proxy.stats(), "trellis_http_request_body_timeouts_total", listener="web") == 0


def test_an_upstream_that_holds_the_body_back_is_not_the_clients_fault(fleet):
    """The upstream reads nothing for 3 s: the client, blocked, is not late."""
    size = 32 * 1024 * 1024
    listener = socket.create_server((LOCALHOST, 0))
    got = []

    def upstream():
        conn, _ = listener.accept()
        with conn:
            time.sleep(3)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            received = len(body)
            while received < size and (chunk := conn.recv(1 << 20)):
                received += len(chunk)
            got.append(received)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")

    thread = threading.Thread(target=upstream, daemon=True)
    thread.start()
    try:
        proxy = fleet.proxy(body_timeout_config(f"{LOCALHOST}:{listener.getsockname()[1]}"))
        with socket.create_connection((LOCALHOST, proxy.port()), timeout=20) as sock:
            sock.sendall(f"POST /up HTTP/1.1\r\nHost: x\r\ncontent-length: {size}\r\n\r\n".encode())
            sock.sendall(b"z" * size)
            answer = sock.recv(4096)
        thread.join(20)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert got == [size]
        assert metric(proxy.stats(), "trellis_http_request_body_timeouts_total", listener="web") == 0
    finally:
        listener.close()


def test_a_trickled_http2_body_gets_408_on_its_stream_only(fleet, nginx):
    proxy = fleet.proxy(body_timeout_config(nginx.address()))
    encoder, decoder = Encoder(), Decoder()
    with socket.create_connection((LOCALHOST, proxy.port()), timeout=5) as sock:
        sock.sendall(PREFACE + SettingsFrame(0).serialize())
        slow = HeadersFrame(1, flags=["END_HEADERS"])
        slow.data = encoder.encode([(":method", "PUT"), (":scheme", "http"), (":authority", "x"),
                                    (":path", "/dav/h2slow.txt"), ("content-length", "100000")])
        sock.sendall(slow.serialize())
        start = time.monotonic()
        frames = []
        buffer = b""
        sent = 0
        while time.monotonic() - start < 4 and not any(f.type == 0x1 and f.stream_id == 1 for f in frames):
            if sent < 20:
                sock.sendall(DataFrame(1, data=b"x" * 10).serialize())
                sent += 1
            sock.settimeout(0.25)
            try:
                buffer += sock.recv(65536)
            except socket.timeout:
                pass
            while len(buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
                if len(buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(buffer[9:9 + length]))
                buffer = buffer[9 + length:]
                frames.append(frame)
        answered_at = time.monotonic() - start
        heads = [f for f in frames if f.type == 0x1 and f.stream_id == 1]
        assert heads, frames
        assert dict(decoder.decode(heads[0].data))[":status"] == "408"
        assert 0.9 <= answered_at < 3, answered_at
        # The connection goes on: another stream on it is answered.
        fast = HeadersFrame(3, flags=["END_HEADERS", "END_STREAM"])
        fast.data = encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                                    (":path", "/hello")])
        sock.sendall(fast.serialize() + WindowUpdateFrame(0, window_increment=1000).serialize())
        sock.settimeout(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and b"hello world" not in buffer:
            buffer += sock.recv(65536)
        assert b"hello world" in buffer
    assert metric(proxy.stats(), "trellis_http_request_body_timeouts_total", listener="web") == 1


def test_the_body_limits_are_checked(fleet):
    cfg = simple_config(f"{LOCALHOST}:1")
    cfg["listeners"][0].update(request_body_min_rate=-1)
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0 and "request_body_min_rate" in (result.stdout + result.stderr).decode()
