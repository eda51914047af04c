"""Every attack the proxy defends against, driven at once against one proxy
while a normal client keeps working: HTTP/2 floods (rapid reset,
CONTINUATION, SETTINGS, PING, PRIORITY, empty DATA), an HPACK bomb, a peer
that never opens its window, streams that idle, HTTP/1.1 slowloris (heads
and bodies) and 10,000 idle connections. The normal client's requests, over
HTTP/1.1 and HTTP/2, all succeed, the attackers' connections are ended, and
the proxy's memory stays bounded."""

import resource
import socket
import threading
import time

import pytest
from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, PriorityFrame,
                              RstStreamFrame, SettingsFrame)

from harness import LOCALHOST, SANITIZED, HttpClient, metric, simple_config, wait_until
from test_http2 import h2_request, request_headers

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ATTACK_SECONDS = 8
IDLE_CONNECTIONS = 10_000


def send_all_then_read(port: int, opening: bytes, frames: bytes, repeat: int, until: float) -> None:
    """One attacking connection: the preface, then `frames` `repeat` times,
    reading what comes back only at the end."""
    try:
        with socket.create_connection((LOCALHOST, port), timeout=5) as sock:
            sock.sendall(PREFACE + opening)
            for _ in range(repeat):
                if time.monotonic() > until:
                    break
                sock.sendall(frames)
            while sock.recv(65536):
                pass
    except OSError:
        pass  # ended by the proxy: what a flood should get


def headers_frame(block: bytes, stream_id: int, end_stream: bool = True) -> HeadersFrame:
    frame = HeadersFrame(stream_id)
    frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    frame.data = block
    return frame


def h2_attacks(port: int, until: float) -> dict:
    """Each attack's opening and frames, as (opening, frames, repeat)."""
    block = Encoder().encode(request_headers(port))
    big_block = Encoder().encode(request_headers(port, path="/big"))
    settings = SettingsFrame(0).serialize()
    # An HPACK bomb: one 4 KiB field into the dynamic table, then a block
    # that names it 2,000 times (8 MiB decoded from 4 KB on the wire).
    bomb_encoder = Encoder()
    seed = bomb_encoder.encode(request_headers(port) + [("x-bomb", "b" * 4000)])
    bomb = headers_frame(seed, 1).serialize()
    refs = bomb_encoder.encode(request_headers(port) + [("x-bomb", "b" * 4000)] * 2000)
    bomb += headers_frame(refs, 3).serialize()
    open_stream = headers_frame(block, 1, end_stream=False).serialize()
    return {
        "rapid reset": (settings, b"".join(headers_frame(block, i).serialize() +
                                           RstStreamFrame(i, error_code=8).serialize()
                                           for i in range(1, 4001, 2)), 1),
        "CONTINUATION": (settings, HeadersFrame(1, data=block).serialize() +
                         ContinuationFrame(1, data=b"").serialize() * 100, 200),
        "SETTINGS": (settings, settings * 1000, 100),
        "PING": (settings, b"".join(PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize()
                                    for i in range(1000)), 300),
        "PRIORITY": (settings, b"".join(PriorityFrame(i, depends_on=0, stream_weight=16).serialize()
                                        for i in range(1, 20001, 2)), 1),
        "empty DATA": (settings, open_stream + DataFrame(1).serialize() * 1000, 1),
        "HPACK bomb": (settings, bomb, 1),
        # Large responses on 100 streams, with a window never opened.
        "closed window": (SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}).serialize(),
                          b"".join(headers_frame(big_block, i).serialize() for i in range(1, 201, 2)), 1),
        # Streams opened and left: no body, no end.
        "idle streams": (settings, b"".join(headers_frame(block, i, end_stream=False).serialize()
                                            for i in range(1, 201, 2)), 1),
    }


def slowloris(port: int, connections: int, until: float) -> None:
    """Heads and bodies trickled in, one byte a connection every 0.5 s, until
    the attack ends and then on until the proxy has ended each connection (or
    for 10 s more): a slow machine may take seconds to open them all, and
    each one must meet its timeout."""
    socks = []
    try:
        for i in range(connections):
            s = socket.create_connection((LOCALHOST, port), timeout=5)
            s.setblocking(False)
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n" if i % 2 == 0 else
                      b"PUT /dav/x HTTP/1.1\r\nHost: x\r\ncontent-length: 100000\r\n\r\n")
            socks.append(s)
        open_socks, deadline = list(socks), until + 10
        while time.monotonic() < until or (open_socks and time.monotonic() < deadline):
            still = []
            for s in open_socks:
                try:
                    s.send(b"x")
                    while s.recv(65536):  # an answer (408), then the close
                        pass
                except BlockingIOError:
                    still.append(s)  # nothing more to read: the proxy still holds it
                except OSError:
                    pass  # reset by the proxy
            open_socks = still
            time.sleep(0.5)
    finally:
        for s in socks:
            s.close()


@pytest.mark.skipif(bool(SANITIZED), reason="memory is bounded by the sanitizer's allocator, not the proxy")
def test_a_normal_client_is_served_throughout_every_attack_and_memory_stays_bounded(fleet, nginx):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_CONNECTIONS + 2000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * want), hard))
    cfg = simple_config(nginx.address())
    cfg["listeners"][0].update(request_head_timeout="3s", request_body_timeout="3s")
    proxy = fleet.proxy(cfg, workers=2)  # inherits the raised descriptor limit
    port = proxy.port()
    with HttpClient(port) as client:  # warm
        assert client.request("GET", "/hello").status == 200
    base_kb = proxy.rss_kb()

    idle = []
    for _ in range(IDLE_CONNECTIONS):
        idle.append(socket.create_connection((LOCALHOST, port), timeout=5))

    until = time.monotonic() + ATTACK_SECONDS
    attackers = [threading.Thread(target=slowloris, args=(port, 300, until), daemon=True)]
    for name, (opening, frames, repeat) in h2_attacks(port, until).items():
        for _ in range(2):
            attackers.append(threading.Thread(target=send_all_then_read, daemon=True, name=name,
                                              args=(port, opening, frames, repeat, until)))
    for t in attackers:
        t.start()

    # The normal client: HTTP/1.1 on a keep-alive connection and on new
    # ones, and HTTP/2 on new connections, until the attacks end.
    results = []
    with HttpClient(port) as keep_alive:
        i = 0
        while time.monotonic() < until:
            try:
                if i % 3 == 0:
                    ok = keep_alive.request("GET", "/hello").status == 200
                elif i % 3 == 1:
                    with HttpClient(port) as fresh:
                        ok = fresh.request("GET", "/hello").status == 200
                else:
                    answer = h2_request(port, request_headers(port), timeout=10)
                    ok = answer["status"] == 200 and answer["body"] == b"hello world\n"
            except OSError as e:
                ok = e
            results.append(ok)
            i += 1
            time.sleep(0.02)
    for t in attackers:
        t.join(30)
    peak_kb = proxy.hwm_kb()
    for s in idle:
        s.close()

    failures = [r for r in results if r is not True]
    assert len(results) >= 50 and not failures, f"{len(failures)} of {len(results)} failed: {failures[:5]}"
    assert proxy.running()
    # 10,000 idle connections at a few KB each, the floods' buffers, and
    # nothing that grows with what the attackers send.
    assert peak_kb - base_kb < 160 * 1024, f"RSS went from {base_kb} kB to {peak_kb} kB"
    stats = proxy.stats()
    assert metric(stats, "trellis_http2_misbehaving_connections_total", listener="web", reason="flood") >= 8
    assert metric(stats, "trellis_http_request_head_timeouts_total", listener="web") >= 100
    assert metric(stats, "trellis_http_request_body_timeouts_total", listener="web") >= 100
    assert wait_until(lambda: metric(proxy.stats(), "trellis_downstream_connections_active", listener="web") == 0,
                      30), "attacking connections were left open"
