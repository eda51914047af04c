"""Connection limits: a listener's max_connections and the proxy's. At the
limit an idle keep-alive connection is closed to make room (its client
reconnects); with none idle, a new connection is refused (a plain HTTP
listener answers 503 first). Both are counted in /stats."""

import resource
import socket
import time

import pytest

from harness import (LOCALHOST, SANITIZED, HttpClient, build_request, cluster, http_listener, metric, proxy_config,
                     route, simple_config, validate_config, wait_until)


def busy_connection(port: int) -> socket.socket:
    """A connection in the middle of a request head: never idle."""
    s = socket.create_connection((LOCALHOST, port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
    return s


def answer_of_refused(port: int) -> bytes:
    with socket.create_connection((LOCALHOST, port), timeout=5) as s:
        s.sendall(build_request("GET", "/", [("Host", "a")]))
        data = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data


def test_a_listener_at_its_limit_refuses_with_503_when_nothing_is_idle(fleet):
    nginx = fleet.nginx()
    cfg = simple_config(nginx)
    cfg["listeners"][0]["max_connections"] = 3
    proxy = fleet.proxy(cfg, workers=2)
    port = proxy.port()
    busy = [busy_connection(port) for _ in range(3)]
    try:
        wait_until(lambda: metric(proxy.stats(), "trellis_downstream_connections_active", listener="web") == 3, 5)
        answer = answer_of_refused(port)
        assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"too many connections\n"), answer
        assert metric(proxy.stats(), "trellis_downstream_connections_overflow_total", listener="web") == 1
        # The connections held are served as usual.
        busy[0].sendall(b"\r\n")
        assert busy[0].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for s in busy:
            s.close()
    # Once they close, new connections are taken again.
    wait_until(lambda: metric(proxy.stats(), "trellis_downstream_connections_active", listener="web") == 0, 5)
    with HttpClient(port) as client:
        assert client.request("GET", "/").status == 200


def test_at_the_limit_the_oldest_idle_keep_alive_connection_makes_room(fleet):
    nginx = fleet.nginx()
    cfg = simple_config(nginx)
    cfg["listeners"][0]["max_connections"] = 3
    proxy = fleet.proxy(cfg, workers=1)
    clients = [HttpClient(proxy.port()) for _ in range(3)]
    for c in clients:
        assert c.request("GET", "/").status == 200  # each now idle, kept alive
    with HttpClient(proxy.port()) as newcomer:
        assert newcomer.request("GET", "/").status == 200
    assert clients[0].wait_closed(5) is not None, "the oldest idle connection was not closed"
    assert clients[1].is_open() and clients[2].is_open()
    stats = proxy.stats()
    assert metric(stats, "trellis_downstream_idle_connections_shed_total", listener="web") == 1
    assert metric(stats, "trellis_downstream_connections_overflow_total", listener="web") == 0
    for c in clients:
        c.close()


def test_the_proxy_limit_covers_every_listener(fleet):
    nginx = fleet.nginx()
    cfg = proxy_config([http_listener("a", [route("web")]), http_listener("b", [route("web")])],
                       [cluster("web", nginx)])
    cfg["max_connections"] = 2
    proxy = fleet.proxy(cfg, workers=2)
    busy = [busy_connection(proxy.port("a")), busy_connection(proxy.port("a"))]
    try:
        wait_until(lambda: metric(proxy.stats(), "trellis_downstream_connections_active") == 2, 5)
        assert answer_of_refused(proxy.port("b")).startswith(b"HTTP/1.1 503 ")
        assert metric(proxy.stats(), "trellis_downstream_connections_overflow_total", listener="b") == 1
    finally:
        for s in busy:
            s.close()
    wait_until(lambda: metric(proxy.stats(), "trellis_downstream_connections_active") == 0, 5)
    with HttpClient(proxy.port("b")) as client:
        assert client.request("GET", "/").status == 200


def test_limits_are_checked(fleet):
    cfg = simple_config(f"{LOCALHOST}:1")
    cfg["admin"]["address"] = f"{LOCALHOST}:2"
    cfg["listeners"][0]["address"] = f"{LOCALHOST}:3"
    cfg["max_connections"] = 0
    cfg["listeners"][0]["max_connections"] = -1
    result = validate_config(fleet.dir, cfg)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert b"max_connections: must be between 1 and 10000000" in out, out
    assert b"listeners[0].max_connections: must be between 1 and 10000000" in out, out


def test_a_reload_sets_a_new_heap_limit_at_once(fleet):
    nginx = fleet.nginx()
    cfg = simple_config(nginx)
    cfg["max_heap_bytes"] = 1 << 30
    proxy = fleet.proxy(cfg, workers=1)

    def limit() -> int:
        return int(metric(proxy.stats(), "trellis_overload_heap_limit_bytes"))

    assert limit() == 1 << 30
    for value in (0, 32 << 20):
        cfg["max_heap_bytes"] = value
        proxy.reload(cfg, wait=False)
        assert wait_until(lambda: limit() == value, 10), f"limit {limit()} after a reload to {value}"
        assert metric(proxy.stats(), "trellis_overload_level") == 0
        assert heap_bytes(proxy) > 0  # counted under the new limit at once
    with HttpClient(proxy.port()) as client:
        assert client.request("GET", "/hello").status == 200


@pytest.mark.skipif(bool(SANITIZED), reason="a sanitizer's allocator holds freed memory")
def test_idle_connections_cost_little_and_their_memory_is_given_back(fleet):
    n = 3000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * n), hard))
    nginx = fleet.nginx()
    proxy = fleet.proxy(simple_config(nginx), workers=2)  # inherits the raised limit
    with HttpClient(proxy.port()) as client:  # warm: the first request's allocations
        assert client.request("GET", "/").status == 200
    base_kb = proxy.rss_kb()
    idle = [socket.create_connection((LOCALHOST, proxy.port()), timeout=5) for _ in range(n)]
    try:
        assert wait_until(lambda: metric(proxy.stats(), "trellis_downstream_connections_active") == n, 10)
        per_connection = (proxy.rss_kb() - base_kb) * 1024 / n
        assert per_connection <= 4096, f"an idle connection costs {per_connection:.0f} bytes"
        # Still serving.
        with HttpClient(proxy.port()) as client:
            assert client.request("GET", "/").status == 200
    finally:
        for s in idle:
            s.close()
    # Given back within the housekeeping round (10 s), not kept by malloc.
    assert wait_until(lambda: proxy.rss_kb() <= base_kb * 1.10, 30), \
        f"RSS {proxy.rss_kb()} kB a while after the connections closed, {base_kb} kB before"


def heap_bytes(proxy) -> int:
    return int(metric(proxy.stats(), "trellis_overload_heap_bytes"))


def raise_fd_limit(n: int):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * n), hard))


def keep_alive_after_a_request(port: int, path: str = "/") -> socket.socket:
    s = socket.create_connection((LOCALHOST, port), timeout=5)
    s.sendall(build_request("GET", path))
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    return s


@pytest.mark.skipif(bool(SANITIZED), reason="a sanitizer's allocator holds freed memory")
def test_a_keep_alive_connection_idle_after_a_request_costs_little(fleet):
    """What an idle client connection keeps between requests (its router,
    no buffer), measured by malloc: the heap with the connections idle,
    less the heap once they are closed (the workers' block pools stay)."""
    n = 2000
    raise_fd_limit(n)
    nginx = fleet.nginx()
    cfg = simple_config(nginx)
    cfg["max_heap_bytes"] = 1 << 30  # far off; with a limit the heap is counted each second
    proxy = fleet.proxy(cfg, workers=2)
    idle = [keep_alive_after_a_request(proxy.port()) for _ in range(n)]
    try:
        time.sleep(2)  # the heap is measured once a second
        with_idle = heap_bytes(proxy)
    finally:
        for s in idle:
            s.close()
    assert wait_until(lambda: metric(proxy.stats(), "trellis_downstream_connections_active") == 0, 10)
    time.sleep(2)
    per_connection = (with_idle - heap_bytes(proxy)) / n
    assert per_connection <= 4096, f"an idle keep-alive connection holds {per_connection:.0f} bytes"


def test_the_overload_manager_sheds_idle_connections_then_refuses_until_memory_is_back(fleet):
    """Requests whose bodies are held (kept for a retry while the upstream
    never answers) fill the heap past max_heap_bytes: first the idle
    keep-alive connections are closed, then new connections and requests are
    refused with 503, and once the held requests go, the proxy serves again."""
    nginx = fleet.nginx()
    silent = socket.create_server((LOCALHOST, 0))  # accepts, reads nothing, never answers
    cfg = proxy_config(
        [http_listener("web", [route("silent", prefix="/hold"), route("web")])],
        [cluster("web", nginx),
         cluster("silent", f"{LOCALHOST}:{silent.getsockname()[1]}",
                 retry={"attempts": 1, "buffer_limit": 2 * 1024 * 1024})])
    cfg["max_heap_bytes"] = 24 * 1024 * 1024
    proxy = fleet.proxy(cfg, workers=2)
    port = proxy.port("web")
    idle = [keep_alive_after_a_request(port, "/hello") for _ in range(20)]
    body = b"x" * (1024 * 1024)
    held = []
    try:
        for _ in range(40):
            s = socket.create_connection((LOCALHOST, port), timeout=5)
            s.sendall(build_request("POST", "/hold", body=body))
            held.append(s)
        assert wait_until(lambda: metric(proxy.stats(), "trellis_overload_level") == 2, 10), proxy.stats()
        # The idle ones were closed: their clients read the end.
        for s in idle:
            s.settimeout(5)
            assert s.recv(4096) == b""
        assert metric(proxy.stats(), "trellis_overload_idle_connections_shed_total") >= 20
        answer = answer_of_refused(port)
        assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"overloaded: memory full\n"), answer
        assert metric(proxy.stats(), "trellis_overload_refused_total", what="connection") >= 1
        assert "overload: heap" in proxy.output()
    finally:
        for s in held:
            s.close()
        silent.close()
    assert wait_until(lambda: metric(proxy.stats(), "trellis_overload_level") == 0, 10), proxy.stats()
    with HttpClient(port) as client:
        assert client.request("GET", "/hello").status == 200
