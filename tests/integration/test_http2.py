"""HTTP/2 from clients: h2c with prior knowledge and h2 chosen by ALPN over
TLS, on the same HTTP listeners as HTTP/1.1, to HTTP/1.1 upstreams. Every
stream is routed, answered and logged on its own; bodies go both ways with
flow control; malformed requests are refused and never forwarded."""

import hashlib
import json
import os
import socket

import h2.config
import h2.connection
import h2.events
from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame,
                              SettingsFrame)

from harness import (LOCALHOST, cluster, curl, http_listener, metric, named_responder, proxy_config, route,
                     run, self_signed_certificate, simple_config, wait_until)

H2C = "--http2-prior-knowledge"


def h2_request(port: int, headers: list[tuple[str, str]], body: bytes | None = None,
               timeout: float = 5) -> dict:
    """One request on a new HTTP/2 connection, sent as given (no checks on
    our side). Returns status, body and how the stream or connection ended."""
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                       validate_outbound_headers=False, normalize_outbound_headers=False,
                                       validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    out = {"status": None, "body": b"", "reset": None, "goaway": None}
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        conn.initiate_connection()
        conn.send_headers(1, headers, end_stream=body is None)
        if body is not None:
            conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    out["status"] = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    out["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    done = True
                elif isinstance(event, h2.events.StreamReset):
                    out["reset"] = event.error_code
                    done = True
                elif isinstance(event, h2.events.ConnectionTerminated):
                    out["goaway"] = event.error_code
                    done = True
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)
    return out


def request_headers(port: int, path: str = "/hello", method: str = "GET", **extra) -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":authority", f"{LOCALHOST}:{port}"), (":path", path),
            *extra.items()]


def test_h2c_is_served_beside_http1_with_bodies_and_trailers_both_ways(fleet, nginx):
    log = fleet.dir / "access.log"
    proxy = fleet.proxy(simple_config(nginx.address(), access_log=log))
    base = f"http://{LOCALHOST}:{proxy.port()}"
    answer = curl(H2C, f"{base}/hello", "-w", "%{http_version}")
    assert answer.stdout == b"hello world\n2", answer.stdout + answer.stderr
    assert curl("--http1.1", f"{base}/hello").stdout == b"hello world\n", "HTTP/1.1 on the same listener"
    # 8 MiB down and 3 MB up, with and without a content-length (the
    # upstream then gets it chunked), read back over HTTP/1.1.
    big = curl(H2C, f"{base}/big")
    assert hashlib.sha256(big.stdout).hexdigest() == nginx.big_sha256
    payload = os.urandom(3_000_000)
    source = fleet.dir / "payload"
    source.write_bytes(payload)
    assert curl(H2C, "-f", "-T", source, f"{base}/dav/sized").returncode == 0
    assert curl(H2C, "-f", "-T", "-", f"{base}/dav/streamed", input=payload).returncode == 0
    for name in ("sized", "streamed"):
        assert curl("--http1.1", f"{base}/dav/{name}").stdout == payload, name
    # A chunked response's trailer arrives as HTTP/2 trailers.
    trailers = curl(H2C, "-D", "-", f"{base}/trailers").stdout.decode()
    assert "trailer body" in trailers and "x-checksum: abc123" in trailers, trailers
    # Each stream is an exchange of its own in the access log.
    assert wait_until(lambda: log.exists() and log.read_text().count('"HTTP/2"') >= 5, 5), log.read_text()
    entry = next(json.loads(line) for line in log.read_text().splitlines() if '"/big"' in line)
    assert entry["protocol"] == "HTTP/2" and entry["status"] == 200, entry


def test_concurrent_streams_on_a_few_connections_all_succeed(fleet, nginx):
    proxy = fleet.proxy(simple_config(nginx.address()))
    result = run(["h2load", "-n", "2000", "-c", "2", "-m", "50", f"http://{LOCALHOST}:{proxy.port()}/hello"],
                 timeout=60)
    text = result.stdout.decode()
    assert "2000 succeeded, 0 failed, 0 errored" in text, text
    stats = proxy.stats()
    assert metric(stats, "trellis_http_requests_total", listener="web", code_class="2xx") == 2000


def test_large_responses_on_many_streams_of_one_connection_all_arrive(fleet, nginx):
    # Twenty 8 MiB responses at once, written by the upstream in small
    # pieces, fill the connection: each producer waits for room, and each
    # must be told when there is some again.
    proxy = fleet.proxy(simple_config(nginx.address()), workers=1)
    url = f"http://{LOCALHOST}:{proxy.port()}/big-buffered"
    result = run(["h2load", "-n", "40", "-c", "1", "-m", "20", url], timeout=120)
    text = result.stdout.decode()
    assert "40 succeeded, 0 failed, 0 errored" in text, text


def test_a_stream_the_client_does_not_read_stalls_alone(fleet, nginx):
    proxy = fleet.proxy(simple_config(nginx.address()))
    port = proxy.port()
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config=config)
    got = {1: 0, 3: 0}
    ended = set()
    with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
        conn.initiate_connection()
        # Room on the connection for everything; stream 1's own window
        # (64 KiB) is never opened again.
        conn.increment_flow_control_window(64 * 1024 * 1024)
        conn.send_headers(1, request_headers(port, "/big"), end_stream=True)
        sock.sendall(conn.data_to_send())
        while got[1] < 60_000:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.DataReceived):
                    got[event.stream_id] += len(event.data)
                    conn.increment_flow_control_window(event.flow_controlled_length)
            sock.sendall(conn.data_to_send())
        conn.send_headers(3, request_headers(port, "/hello"), end_stream=True)
        sock.sendall(conn.data_to_send())
        while 3 not in ended:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.DataReceived):
                    got[event.stream_id] += len(event.data)
                    conn.increment_flow_control_window(event.flow_controlled_length)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
            sock.sendall(conn.data_to_send())
    assert got[3] == len(b"hello world\n") and 1 not in ended
    assert got[1] <= 65535, "no more than stream 1's window"


def test_malformed_requests_are_refused_and_never_forwarded(fleet, nginx):
    proxy = fleet.proxy(simple_config(nginx.address()))
    port = proxy.port()
    PROTOCOL_ERROR = 1
    # Framing and message errors nghttp2 finds: the stream is reset.
    for bad in (request_headers(port, **{"X-Upper": "1"}),           # upper case in a field name
                request_headers(port, connection="keep-alive"),      # connection-specific field
                request_headers(port, te="gzip"),                    # te other than "trailers"
                [h for h in request_headers(port) if h[0] != ":path"],  # no :path
                request_headers(port, **{"x-bad": "a\r\nb"})):       # CR LF in a value
        got = h2_request(port, bad)
        assert got["status"] is None and (got["reset"] == PROTOCOL_ERROR or got["goaway"] is not None), (bad, got)
    # Fewer bytes than the content-length says.
    got = h2_request(port, request_headers(port, "/dav/short", "PUT", **{"content-length": "10"}), b"12345")
    assert got["status"] is None and got["reset"] == PROTOCOL_ERROR, got
    # A host that is not the :authority, or no authority at all: reset, or
    # answered 400 where nghttp2 lets it through.
    # An :authority that would not be a valid Host in HTTP/1.1, a :path with a
    # byte an HTTP/1.1 request-target cannot hold (both found by the
    # http2_server fuzz target: they reached the upstream as they came).
    for bad, reason in ((request_headers(port, host="other.example"), b"differs from :authority"),
                        ([h for h in request_headers(port) if h[0] != ":authority"], b"no :authority"),
                        ([(n, "127.0.0.1:[8080" if n == ":authority" else v) for n, v in request_headers(port)],
                         b"invalid :authority"),
                        ([(n, "user@127.0.0.1" if n == ":authority" else v) for n, v in request_headers(port)],
                         b"invalid :authority"),
                        (request_headers(port, "/caf\u00e9"), b"invalid :path")):
        got = h2_request(port, bad)
        assert got["reset"] == PROTOCOL_ERROR or (got["status"] == 400 and reason in got["body"]), (bad, got)
    # The size of the header section, as for HTTP/1.1.
    many = request_headers(port, **{f"x-field-{i}": "v" for i in range(120)})
    assert h2_request(port, many)["status"] == 431
    large = request_headers(port, **{f"x-large-{i}": "v" * 4000 for i in range(16)})
    assert h2_request(port, large)["status"] == 431
    # None of them reached the upstream; a good request still does.
    assert h2_request(port, request_headers(port))["status"] == 200
    assert [e["request"] for e in nginx.access_log()] == ["GET /hello HTTP/1.1"]
    assert not (nginx.dav_dir / "short").exists()
    stats = proxy.stats()
    assert metric(stats, "trellis_http_malformed_requests_total", listener="web") >= 13


def test_a_connection_that_is_not_http2_after_the_preface_is_closed(fleet, nginx):
    proxy = fleet.proxy(simple_config(nginx.address()))
    with socket.create_connection((LOCALHOST, proxy.port()), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert b"HTTP/1.1" not in received, "the garbage after the preface is not read as HTTP/1.1"
    assert curl(H2C, f"http://{LOCALHOST}:{proxy.port()}/hello").stdout == b"hello world\n"


def test_a_gateway_listener_serves_h2_by_alpn_and_http1_to_others(fleet, nginx):
    cert, key = self_signed_certificate(fleet.subdir("certs"), "api", "api.example.com")
    cfg = proxy_config([http_listener("web", [route("app")])], [cluster("app", nginx.address())])
    cfg["listeners"][0]["tls"] = {"mode": "SIMPLE", "certificates": [{"certificate_chain": cert,
                                                                      "private_key": key}]}
    proxy = fleet.proxy(cfg)
    url = f"https://api.example.com:{proxy.port()}/hello"
    tls = ["--resolve", f"api.example.com:{proxy.port()}:{LOCALHOST}", "--cacert", cert]
    assert curl(*tls, "--http2", url, "-w", "%{http_version}").stdout == b"hello world\n2"
    assert curl(*tls, "--http1.1", url, "-w", "%{http_version}").stdout == b"hello world\n1.1"
    result = run(["h2load", "-n", "200", "-c", "2", "-m", "10", f"https://{LOCALHOST}:{proxy.port()}/hello"],
                 timeout=60)
    assert "200 succeeded" in result.stdout.decode(), result.stdout.decode()


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def blast(port: int, frames: bytes, repeat: int = 1, timeout: float = 10) -> tuple[bytes, bool]:
    """Sends the preface, SETTINGS and `frames` (`repeat` times), reading
    nothing meanwhile; returns what came back and whether the server closed."""
    received = b""
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        try:
            sock.sendall(PREFACE + SettingsFrame(0).serialize())
            for _ in range(repeat):
                sock.sendall(frames)
        except OSError:
            pass  # closed while we were still sending
        try:
            while chunk := sock.recv(65536):
                received += chunk
            return received, True
        except ConnectionResetError:  # closed with our frames still unread
            return received, True
        except socket.timeout:
            return received, False


def goaway_code(received: bytes) -> int | None:
    """The error code of the GOAWAY among the frames received, if one came."""
    at = 0
    while at + 9 <= len(received):
        length, kind = int.from_bytes(received[at:at + 3], "big"), received[at + 3]
        if kind == 7 and at + 9 + 8 <= len(received):
            return int.from_bytes(received[at + 13:at + 17], "big")
        at += 9 + length
    return None


def test_floods_end_their_connection_and_others_go_on(fleet, nginx):
    proxy = fleet.proxy(simple_config(nginx.address()), workers=1)
    port = proxy.port()
    ENHANCE_YOUR_CALM, INTERNAL_ERROR = 0xB, 0x2
    block = Encoder().encode(request_headers(port))

    def request(stream_id: int) -> HeadersFrame:
        frame = HeadersFrame(stream_id)
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        frame.data = block
        return frame

    # Rapid reset (CVE-2023-44487): streams opened and reset at once.
    rapid = b"".join(request(i).serialize() + RstStreamFrame(i, error_code=8).serialize()
                     for i in range(1, 6001, 2))
    # A CONTINUATION run (CVE-2024-28182): a header section that never ends.
    head = HeadersFrame(1)
    head.data = block
    continuation = head.serialize() + b"".join(ContinuationFrame(1, data=b"").serialize() for _ in range(50))
    # PINGs whose acknowledgements are never read: once the socket buffers
    # are full, they pile up in the proxy, which ends the connection.
    pings = b"".join(PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(10_000))
    # Empty DATA frames on an open stream, without end.
    open_request = request(1)
    open_request.flags.discard("END_STREAM")
    empty = open_request.serialize() + b"".join(DataFrame(1).serialize() for _ in range(500))
    for name, frames, repeat in (("rapid reset", rapid, 1), ("CONTINUATION", continuation, 1),
                                 ("PING", pings, 300), ("empty DATA", empty, 1)):
        received, closed = blast(port, frames, repeat=repeat)
        assert closed, name
        # nghttp2 says ENHANCE_YOUR_CALM, or INTERNAL_ERROR past its reset rate.
        assert goaway_code(received) in (ENHANCE_YOUR_CALM, INTERNAL_ERROR, None), (name, goaway_code(received))
        assert curl(H2C, f"http://{LOCALHOST}:{port}/hello").stdout == b"hello world\n", name
    # A connection error: DATA on stream 0.
    received, closed = blast(port, b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    assert closed and goaway_code(received) == 1, received  # PROTOCOL_ERROR
    stats = proxy.stats()
    assert metric(stats, "trellis_http2_misbehaving_connections_total", listener="web", reason="flood") == 4
    assert metric(stats, "trellis_http2_misbehaving_connections_total", listener="web", reason="protocol") == 1
    assert proxy.running()


def test_new_streams_on_a_connection_follow_a_config_change(fleet):
    # An HTTP/2 connection outlives config changes: each stream takes the
    # config in force when it begins.
    a, b = fleet.upstream(named_responder("a")), fleet.upstream(named_responder("b"))
    def config(target):
        return proxy_config([http_listener("web", [route(target)])], [cluster("a", a), cluster("b", b)])
    proxy = fleet.proxy(config("a"), workers=1)
    port = proxy.port()
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
        conn.initiate_connection()

        def fetch(stream_id: int) -> bytes:
            conn.send_headers(stream_id, request_headers(port, "/"), end_stream=True)
            sock.sendall(conn.data_to_send())
            body = b""
            while True:
                for event in conn.receive_data(sock.recv(65536)):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                        return body
                sock.sendall(conn.data_to_send())

        assert fetch(1) == b"a"
        proxy.reload(config("b"))
        assert fetch(3) == b"b"
