"""L4 proxying (listener protocol tcp): bytes both ways, half-close, upstream
close, refused upstream, and backpressure without buffering in the proxy."""

import os
import socket
import threading
import time

import pytest

from harness import (
    LOCALHOST, SANITIZED, MiB, blast, cluster, echo, free_port, metric, proxy_config, reply_after_eof,
    tcp_listener, wait_until,
)


def tcp_proxy(fleet, endpoint):
    return fleet.proxy(proxy_config([tcp_listener("raw", "db")], [cluster("db", endpoint)]))


def connect(proxy) -> socket.socket:
    return socket.create_connection((LOCALHOST, proxy.port("raw")), timeout=10)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), MiB))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def recv_until_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(MiB):
        data += chunk
    return bytes(data)


def test_bytes_are_echoed_both_ways(fleet):
    proxy = tcp_proxy(fleet, fleet.upstream(echo))
    data = os.urandom(4 * MiB)
    with connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
        sender.start()
        got = recv_exactly(sock, len(data))
        sender.join(10)
    assert len(got) == len(data) and got == data, f"echoed {len(got)} of {len(data)} bytes, equal={got == data}"


def test_small_messages_round_trip(fleet):
    proxy = tcp_proxy(fleet, fleet.upstream(echo))
    with connect(proxy) as sock:
        for i in range(20):
            message = f"ping {i}\n".encode()
            sock.sendall(message)
            got = recv_exactly(sock, len(message))
            assert got == message, f"round trip {i}: sent {message!r}, got {got!r}"


def test_half_close_reaches_upstream_and_reply_comes_back(fleet):
    upstream = fleet.upstream(reply_after_eof)
    proxy = tcp_proxy(fleet, upstream)
    data = os.urandom(100_000)
    with connect(proxy) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = recv_until_eof(sock)
    assert reply == b"got %d bytes\n" % len(data), f"reply after half-close: {reply!r}"
    assert bytes(upstream.peers[0].received) == data, "upstream did not get every byte before EOF"


def test_upstream_close_reaches_client(fleet):
    def say_bye(peer):
        peer.send(b"bye\n")

    proxy = tcp_proxy(fleet, fleet.upstream(say_bye))
    with connect(proxy) as sock:
        got = recv_until_eof(sock)
    assert got == b"bye\n", f"client got {got!r} before EOF"


def test_refused_upstream_closes_client_connection(fleet):
    proxy = tcp_proxy(fleet, free_port())
    with connect(proxy) as sock:
        try:
            got = recv_until_eof(sock)
        except ConnectionResetError:
            got = b""
        except TimeoutError:
            pytest.fail("client connection left open although the upstream refused")
    assert got == b"", f"client got {got!r}"


def test_byte_counters(fleet):
    proxy = tcp_proxy(fleet, fleet.upstream(echo))
    data = os.urandom(100_000)
    with connect(proxy) as sock:
        sock.sendall(data)
        assert recv_exactly(sock, len(data)) == data
    def counted():
        stats = proxy.stats()
        return (metric(stats, "trellis_downstream_bytes_received_total", listener="raw"),
                metric(stats, "trellis_downstream_bytes_sent_total", listener="raw"))
    wait_until(lambda: counted() == (len(data), len(data)), 5)
    assert counted() == (len(data), len(data)), f"(received, sent) counters: {counted()}"


def test_slow_reader_gets_backpressure_not_buffering(fleet):
    total = 200 * MiB
    proxy = tcp_proxy(fleet, fleet.upstream(blast(total)))
    start_kb = proxy.rss_kb()
    peak_kb = start_kb
    with connect(proxy) as sock:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # the upstream pushes, nobody reads
            peak_kb = max(peak_kb, proxy.rss_kb())
            time.sleep(0.05)
        sock.settimeout(30)
        received = 0
        while chunk := sock.recv(MiB):
            received += len(chunk)
    assert received == total, f"client read {received} bytes, upstream sent {total}"
    growth_mb = (peak_kb - start_kb) / 1024
    assert SANITIZED or growth_mb < 16, (f"proxy RSS grew by {growth_mb:.1f} MB while the client was not reading "
                            f"({start_kb} kB -> {peak_kb} kB)")
