"""RFC 9113 (HTTP/2) and RFC 7541 (HPACK) conformance of the proxy's HTTP/2
server, written with raw frames: the MUST-level cases of h2spec's generic,
http2 and hpack groups. Each case sends what the RFC forbids (or what it says
must be ignored) and asserts the exact answer: the GOAWAY or RST_STREAM
error code, or that the connection goes on (a PING is answered). Every
request that reaches the upstream is recorded: none of the malformed ones
may."""

import socket
import struct
from dataclasses import dataclass
from typing import Callable

import pytest

from harness import LOCALHOST, http_responder, simple_config

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Error codes (§7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, \
    REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = range(10)


def frame(kind: int, flags: int, stream: int, payload: bytes = b"", length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) with the flag bits `first`."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def literal(name: str, value: str) -> bytes:
    """A literal field without indexing, name and value as given (no Huffman)."""
    n, v = name.encode(), value.encode()
    return b"\x00" + integer(len(n), 7) + n + integer(len(v), 7) + v


def block(*fields: tuple[str, str]) -> bytes:
    return b"".join(literal(n, v) for n, v in fields)


def request_fields(port: int, method: str = "GET", path: str = "/", **extra: str) -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", f"{LOCALHOST}:{port}"),
            *((k.replace("_", "-"), v) for k, v in extra.items())]


def request(port: int, stream: int = 1, end_stream: bool = True, **kwargs) -> bytes:
    flags = END_HEADERS | (END_STREAM if end_stream else 0)
    return frame(HEADERS, flags, stream, block(*request_fields(port, **kwargs)))


def settings(*pairs: tuple[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


@dataclass
class Outcome:
    goaway: int | None = None      # error code of a GOAWAY received
    resets: dict | None = None     # stream -> RST_STREAM error code
    statuses: dict | None = None   # stream -> :status of a response (first byte of its HEADERS block)
    ping_acked: bool = False       # the PING sent after the case was answered
    closed: bool = False           # the connection was closed


class Connection:
    """A raw HTTP/2 client connection; the server's SETTINGS are acknowledged."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((LOCALHOST, port), timeout=3)
        self.buf = b""
        self.sock.sendall(PREFACE + settings())

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def frames(self):
        while True:
            while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
                try:
                    chunk = self.sock.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    return
                if not chunk:
                    return
                self.buf += chunk
            n = int.from_bytes(self.buf[:3], "big")
            kind, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            yield kind, flags, stream, payload

    def outcome(self, done: Callable[[Outcome], bool]) -> Outcome:
        """What the server answered, read until `done` says it is there (or
        the connection ends); then a PING tells whether the connection still
        serves."""
        out = Outcome(resets={}, statuses={})
        probing = False
        frames = self.frames()
        if done(out):
            probing = True
            self.send(frame(PING, 0, 0, b"probe!!!"))
        for kind, flags, stream, payload in frames:
            if kind == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))
            elif kind == GOAWAY:
                out.goaway = int.from_bytes(payload[4:8], "big")
            elif kind == RST_STREAM:
                out.resets[stream] = int.from_bytes(payload[:4], "big")
            elif kind == HEADERS and stream not in out.statuses:
                out.statuses[stream] = payload
            elif kind == PING and flags & ACK and payload == b"probe!!!":
                out.ping_acked = True
                return out
            if not probing and done(out):
                probing = True
                self.send(frame(PING, 0, 0, b"probe!!!"))
        out.closed = True
        return out

    def close(self) -> None:
        self.sock.close()


@dataclass
class Case:
    id: str
    send: Callable[[int], bytes]  # port -> bytes after the preface and SETTINGS
    expect: str                   # "goaway", "reset", "reset_or_goaway", "ignored" or "response"
    code: int = NO_ERROR
    stream: int = 1
    forwards_valid: bool = False   # valid requests come before the fault, and reach the upstream


def huge_window_updates(stream: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", 0x7FFFFFFF)) * 2


CASES = [
    # 3.4 Connection preface — see test_an_invalid_preface_is_a_connection_error.
    # 4.1 Frame format: what is unknown is ignored.
    Case("4.1/unknown-frame-type", lambda p: frame(0x20, 0, 0, b"x" * 8), "ignored"),
    Case("4.1/undefined-flags", lambda p: frame(PING, 0x16, 0, b"abcdefgh"), "ignored"),
    Case("4.1/reserved-bit", lambda p: frame(PING, 0, 0x80000000, b"abcdefgh"), "ignored"),
    # 4.2 Frame size.
    Case("4.2/data-max-frame-size", lambda p: request(p, end_stream=False, method="POST")
         + frame(DATA, END_STREAM, 1, b"x" * 16384), "response"),
    Case("4.2/data-over-max-frame-size", lambda p: request(p, end_stream=False, method="POST")
         + frame(DATA, END_STREAM, 1, b"x" * 16385), "goaway", FRAME_SIZE_ERROR),
    Case("4.2/headers-over-max-frame-size", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), *[(f"x-{i}", "v" * 160) for i in range(100)])), "goaway", FRAME_SIZE_ERROR),
    # 4.3 Header compression and decompression.
    Case("4.3/invalid-header-block", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff"),
         "goaway", COMPRESSION_ERROR),
    Case("4.3/priority-inside-header-block", lambda p: frame(HEADERS, END_STREAM, 1, block(*request_fields(p)))
         + frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15)), "goaway", PROTOCOL_ERROR),
    Case("4.3/headers-to-other-stream-inside-header-block", lambda p: frame(HEADERS, END_STREAM, 1,
         block(*request_fields(p))) + request(p, stream=3), "goaway", PROTOCOL_ERROR),
    # 5.1 Stream states.
    Case("5.1/data-to-idle-stream", lambda p: frame(DATA, END_STREAM, 1, b"x"), "goaway", PROTOCOL_ERROR),
    Case("5.1/rst-stream-to-idle-stream", lambda p: frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)),
         "goaway", PROTOCOL_ERROR),
    Case("5.1/window-update-to-idle-stream", lambda p: frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)),
         "goaway", PROTOCOL_ERROR),
    Case("5.1/continuation-to-idle-stream", lambda p: frame(CONTINUATION, END_HEADERS, 1,
         block(*request_fields(p))), "goaway", PROTOCOL_ERROR),
    Case("5.1/data-to-half-closed-remote", lambda p: request(p) + frame(DATA, END_STREAM, 1, b"x"),
         "reset_or_goaway", STREAM_CLOSED, forwards_valid=True),
    Case("5.1/headers-to-half-closed-remote", lambda p: request(p) + request(p), "reset_or_goaway",
         STREAM_CLOSED, forwards_valid=True),
    Case("5.1/continuation-to-half-closed-remote", lambda p: request(p) + frame(CONTINUATION, END_HEADERS, 1,
         block(("x-a", "b"))), "goaway", PROTOCOL_ERROR, forwards_valid=True),
    # §5.1 "closed": a frame on a stream the client reset MAY be a connection
    # error; it is ignored.
    Case("5.1/data-to-closed-stream", lambda p: request(p) + frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL))
         + frame(DATA, 0, 1, b"x"), "ignored"),
    # 5.1.1 Stream identifiers.
    Case("5.1.1/even-stream-id", lambda p: request(p, stream=2), "goaway", PROTOCOL_ERROR),
    # Stream 3 was skipped when 5 opened: never opened, so HEADERS on it is
    # a connection error. (HEADERS on a lower stream that was opened may be
    # trailers crossing the proxy's RST_STREAM, and is ignored.)
    Case("5.1.1/stream-id-lower-than-before", lambda p: request(p, stream=5) + request(p, stream=3), "goaway",
         PROTOCOL_ERROR),
    # 5.1.2 Stream concurrency: 100 streams at once (the SETTINGS sent).
    Case("5.1.2/over-max-concurrent-streams", lambda p: b"".join(
        request(p, stream=2 * i + 1, end_stream=False, method="POST") for i in range(101)), "reset",
         REFUSED_STREAM, stream=201, forwards_valid=True),
    # 5.3.1 Stream dependencies.
    Case("5.3.1/headers-depending-on-itself", lambda p: frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1,
         struct.pack(">IB", 1, 15) + block(*request_fields(p))), "reset_or_goaway", PROTOCOL_ERROR),
    # nghttp2 skips PRIORITY payloads unread (no priority tree is kept); the
    # proxy's own scan of the frames finds this one.
    Case("5.3.1/priority-depending-on-itself", lambda p: frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 15)),
         "reset_or_goaway", PROTOCOL_ERROR),
    Case("5.3.1/priority-on-an-open-stream-depending-on-itself", lambda p: request(p, end_stream=False,
         method="POST") + frame(PRIORITY, 0, 1, struct.pack(">IB", 0x80000001, 15)), "reset_or_goaway",
         PROTOCOL_ERROR, forwards_valid=True),
    # 5.5 Extending HTTP/2.
    Case("5.5/unknown-frame-inside-header-block", lambda p: frame(HEADERS, END_STREAM, 1,
         block(*request_fields(p))) + frame(0x20, 0, 1, b"x"), "goaway", PROTOCOL_ERROR),
    # 6.1 DATA.
    Case("6.1/data-on-stream-0", lambda p: frame(DATA, END_STREAM, 0, b"x"), "goaway", PROTOCOL_ERROR),
    Case("6.1/data-invalid-pad-length", lambda p: request(p, end_stream=False, method="POST")
         + frame(DATA, END_STREAM | PADDED, 1, b"\x06abcde"), "goaway", PROTOCOL_ERROR),
    # 6.2 HEADERS.
    Case("6.2/headers-then-other-frame", lambda p: frame(HEADERS, END_STREAM, 1, block(*request_fields(p)))
         + frame(DATA, 0, 1, b"x"), "goaway", PROTOCOL_ERROR),
    Case("6.2/headers-on-stream-0", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 0,
         block(*request_fields(p))), "goaway", PROTOCOL_ERROR),
    Case("6.2/headers-invalid-pad-length", lambda p: frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1,
         b"\xff" + block(*request_fields(p))), "goaway", PROTOCOL_ERROR),
    # 6.3 PRIORITY.
    Case("6.3/priority-on-stream-0", lambda p: frame(PRIORITY, 0, 0, struct.pack(">IB", 1, 15)), "goaway",
         PROTOCOL_ERROR),
    Case("6.3/priority-wrong-length", lambda p: frame(PRIORITY, 0, 1, struct.pack(">I", 0)),
         "reset_or_goaway", FRAME_SIZE_ERROR),
    # 6.4 RST_STREAM.
    Case("6.4/rst-stream-on-stream-0", lambda p: frame(RST_STREAM, 0, 0, struct.pack(">I", CANCEL)), "goaway",
         PROTOCOL_ERROR),
    Case("6.4/rst-stream-wrong-length", lambda p: request(p, end_stream=False, method="POST")
         + frame(RST_STREAM, 0, 1, b"\x00\x00\x08"), "goaway", FRAME_SIZE_ERROR),
    # 6.5 SETTINGS.
    Case("6.5/settings-ack-with-payload", lambda p: frame(SETTINGS, ACK, 0, b"\x00" * 6), "goaway",
         FRAME_SIZE_ERROR),
    Case("6.5/settings-on-a-stream", lambda p: frame(SETTINGS, 0, 1, struct.pack(">HI", 3, 100)), "goaway",
         PROTOCOL_ERROR),
    Case("6.5/settings-wrong-length", lambda p: frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"), "goaway",
         FRAME_SIZE_ERROR),
    Case("6.5.2/enable-push-2", lambda p: settings((2, 2)), "goaway", PROTOCOL_ERROR),
    Case("6.5.2/initial-window-over-max", lambda p: settings((4, 0x80000000)), "goaway", FLOW_CONTROL_ERROR),
    Case("6.5.2/max-frame-size-too-small", lambda p: settings((5, 16383)), "goaway", PROTOCOL_ERROR),
    Case("6.5.2/max-frame-size-too-large", lambda p: settings((5, 1 << 24)), "goaway", PROTOCOL_ERROR),
    Case("6.5.2/unknown-setting", lambda p: settings((0xFF, 1)), "ignored"),
    Case("6.5.3/settings-acknowledged", lambda p: settings((3, 50)), "ignored"),
    # 6.7 PING.
    Case("6.7/ping-ack-is-not-answered", lambda p: frame(PING, ACK, 0, b"unasked!"), "ignored"),
    Case("6.7/ping-on-a-stream", lambda p: frame(PING, 0, 1, b"abcdefgh"), "goaway", PROTOCOL_ERROR),
    Case("6.7/ping-wrong-length", lambda p: frame(PING, 0, 0, b"abcdef"), "goaway", FRAME_SIZE_ERROR),
    # 6.8 GOAWAY.
    Case("6.8/goaway-on-a-stream", lambda p: frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)), "goaway",
         PROTOCOL_ERROR),
    # 6.9 WINDOW_UPDATE.
    Case("6.9/window-update-0-on-connection", lambda p: frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)),
         "goaway", PROTOCOL_ERROR),
    Case("6.9/window-update-0-on-stream", lambda p: request(p, end_stream=False, method="POST")
         + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0)), "reset_or_goaway", PROTOCOL_ERROR),
    Case("6.9/window-update-wrong-length", lambda p: frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"), "goaway",
         FRAME_SIZE_ERROR),
    Case("6.9.1/connection-window-overflow", lambda p: huge_window_updates(0), "goaway", FLOW_CONTROL_ERROR),
    Case("6.9.1/stream-window-overflow", lambda p: request(p, end_stream=False, method="POST")
         + huge_window_updates(1), "reset_or_goaway", FLOW_CONTROL_ERROR),
    Case("6.9.2/initial-window-overflows-a-stream", lambda p: request(p, end_stream=False, method="POST")
         + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF - 65535)) + settings((4, 65536)),
         "reset_or_goaway", FLOW_CONTROL_ERROR),
    # 6.10 CONTINUATION.
    Case("6.10/continuation-after-end-headers", lambda p: request(p, end_stream=False, method="POST")
         + frame(CONTINUATION, END_HEADERS, 1, block(("x-a", "b"))), "goaway", PROTOCOL_ERROR),
    Case("6.10/continuation-on-stream-0", lambda p: frame(HEADERS, END_STREAM, 1, block(*request_fields(p)))
         + frame(CONTINUATION, END_HEADERS, 0, block(("x-a", "b"))), "goaway", PROTOCOL_ERROR),
    Case("6.10/continuation-after-data", lambda p: request(p, end_stream=False, method="POST")
         + frame(DATA, 0, 1, b"x") + frame(CONTINUATION, END_HEADERS, 1, block(("x-a", "b"))), "goaway",
         PROTOCOL_ERROR),
    # 8.1 Message framing: trailers must end the stream.
    Case("8.1/trailers-without-end-stream", lambda p: request(p, end_stream=False, method="POST")
         + frame(DATA, 0, 1, b"x") + frame(HEADERS, END_HEADERS, 1, block(("x-t", "1"))), "reset_or_goaway",
         PROTOCOL_ERROR),
    # 8.2 Fields, 8.3 pseudo-header fields: malformed requests (§8.1.1) are stream errors.
    Case("8.2/uppercase-field-name", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), ("X-Upper", "1"))), "reset", PROTOCOL_ERROR),
    Case("8.2/cr-in-value", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), ("x-a", "a\rb"))), "reset", PROTOCOL_ERROR),
    Case("8.2/lf-in-value", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), ("x-a", "a\nb"))), "reset", PROTOCOL_ERROR),
    Case("8.2/nul-in-value", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), ("x-a", "a\0b"))), "reset", PROTOCOL_ERROR),
    Case("8.2/space-in-name", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), ("x a", "b"))), "reset", PROTOCOL_ERROR),
    Case("8.2.2/connection-field", lambda p: request(p, connection="keep-alive"), "reset", PROTOCOL_ERROR),
    Case("8.2.2/transfer-encoding-field", lambda p: request(p, transfer_encoding="chunked"), "reset",
         PROTOCOL_ERROR),
    Case("8.2.2/te-other-than-trailers", lambda p: request(p, te="gzip"), "reset", PROTOCOL_ERROR),
    Case("8.2.2/upgrade-field", lambda p: request(p, upgrade="websocket"), "reset", PROTOCOL_ERROR),
    Case("8.3/unknown-pseudo-field", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), (":foo", "bar"))), "reset", PROTOCOL_ERROR),
    Case("8.3/response-pseudo-field-in-request", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), (":status", "200"))), "reset", PROTOCOL_ERROR),
    Case("8.3/pseudo-field-in-trailers", lambda p: request(p, end_stream=False, method="POST")
         + frame(HEADERS, END_HEADERS | END_STREAM, 1, block((":path", "/"))), "reset", PROTOCOL_ERROR),
    Case("8.3/duplicate-pseudo-field", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p), (":path", "/again"))), "reset", PROTOCOL_ERROR),
    Case("8.3/pseudo-field-after-regular", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(("x-a", "b"), *request_fields(p))), "reset", PROTOCOL_ERROR),
    Case("8.3.1/empty-path", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block((":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "a"))), "reset",
         PROTOCOL_ERROR),
    Case("8.3.1/missing-method", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block((":scheme", "http"), (":path", "/"), (":authority", "a"))), "reset", PROTOCOL_ERROR),
    Case("8.3.1/missing-scheme", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block((":method", "GET"), (":path", "/"), (":authority", "a"))), "reset", PROTOCOL_ERROR),
    Case("8.3.1/missing-path", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block((":method", "GET"), (":scheme", "http"), (":authority", "a"))), "reset", PROTOCOL_ERROR),
    Case("8.1.1/content-length-over-data", lambda p: request(p, end_stream=False, method="POST",
         content_length="10") + frame(DATA, END_STREAM, 1, b"x" * 4), "reset", PROTOCOL_ERROR),
    Case("8.1.1/content-length-under-data", lambda p: request(p, end_stream=False, method="POST",
         content_length="2") + frame(DATA, 0, 1, b"x" * 2) + frame(DATA, END_STREAM, 1, b"x" * 2), "reset",
         PROTOCOL_ERROR),
    # RFC 7541 (HPACK): every decoding error is a connection error.
    Case("hpack/index-0", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80"), "goaway",
         COMPRESSION_ERROR),
    Case("hpack/index-beyond-tables", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, integer(70, 7, 0x80)),
         "goaway", COMPRESSION_ERROR),
    Case("hpack/table-size-update-over-limit", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         integer(1 << 20, 5, 0x20) + block(*request_fields(p))), "goaway", COMPRESSION_ERROR),
    Case("hpack/table-size-update-after-a-field", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p)) + integer(0, 5, 0x20)), "goaway", COMPRESSION_ERROR),
    Case("hpack/huffman-eos", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p)) + b"\x00\x81a\x84\xff\xff\xff\xff"), "goaway", COMPRESSION_ERROR),
    Case("hpack/huffman-padding-over-7-bits", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p)) + b"\x00\x81a\x82\x1f\xff"), "goaway", COMPRESSION_ERROR),
    Case("hpack/huffman-padding-not-ones", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         block(*request_fields(p)) + b"\x00\x81a\x81\x00"), "goaway", COMPRESSION_ERROR),
    Case("hpack/integer-overflow", lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1,
         b"\x00\x7f" + b"\xff" * 10 + b"\x01"), "goaway", COMPRESSION_ERROR),
]


@pytest.fixture(scope="module")
def upstream(module_fleet):
    return module_fleet.upstream(http_responder())


@pytest.fixture(scope="module")
def proxy(module_fleet, upstream):
    return module_fleet.proxy(simple_config(upstream.address))


def run_case(proxy, upstream, case: Case) -> Outcome:
    upstream.reset()
    conn = Connection(proxy.port())
    until = {
        "ignored": lambda out: True,
        "response": lambda out: case.stream in out.statuses,
        "goaway": lambda out: out.goaway is not None,
        "reset": lambda out: case.stream in out.resets or case.stream in out.statuses or out.goaway is not None,
        "reset_or_goaway": lambda out: case.stream in out.resets or out.goaway is not None,
    }[case.expect]
    try:
        conn.send(case.send(proxy.port()))
        return conn.outcome(until)
    finally:
        conn.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rfc9113_and_rfc7541(proxy, upstream, case: Case):
    out = run_case(proxy, upstream, case)
    if case.expect == "ignored":
        assert out.ping_acked and out.goaway is None and not out.resets, out
    elif case.expect == "response":
        assert out.statuses.get(case.stream, b"")[:1] == b"\x88", f"no 200 on stream {case.stream}: {out}"
        assert out.ping_acked, out
    elif case.expect == "goaway":
        assert out.goaway == case.code, f"expected GOAWAY({case.code}), got {out}"
    elif case.expect == "reset":
        assert out.resets.get(case.stream) == case.code and out.goaway is None, \
            f"expected RST_STREAM({case.code}) on stream {case.stream}, got {out}"
        assert out.ping_acked, "a stream error must leave the connection serving"
    else:  # a stream error the server may treat as a connection error (§5.4.1)
        assert out.resets.get(case.stream) == case.code or out.goaway == case.code, \
            f"expected RST_STREAM({case.code}) or GOAWAY({case.code}), got {out}"
    if case.expect not in ("response", "ignored"):
        assert upstream.requests() == [] or case.forwards_valid, \
            f"forwarded: {[r.target for r in upstream.requests()]}"


def test_an_invalid_preface_is_a_connection_error(proxy, upstream):
    with socket.create_connection((LOCALHOST, proxy.port()), timeout=3) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings())
        data = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    # Not HTTP/2 and not HTTP/1.1 either: the connection ends, nothing forwarded.
    assert b"HTTP/1.1 200" not in data and upstream.requests() == []
