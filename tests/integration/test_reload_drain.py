"""Configuration reload on SIGHUP (under load, keeping connections, refusing bad
files) and graceful drain on SIGTERM."""

import copy
import re
import signal
import threading
import time

import pytest

from harness import (
    HttpClient, build_request, cluster, get, http_listener, proxy_config, route, tail, to_yaml,
    wait_until,
)

HELLO = b"hello world\n"


@pytest.fixture
def nginx(fleet):
    """One nginx on two ports: cluster "a" is the first, "b" the second."""
    return fleet.nginx(ports=2)


def config_to(nginx, target: str, **kwargs) -> dict:
    """"web" routes everything to cluster `target` ("a" or "b")."""
    return proxy_config([http_listener("web", [route(target)])],
                        [cluster("a", nginx.address(0)), cluster("b", nginx.address(1))], **kwargs)


def served_port(proxy) -> int:
    resp = get(proxy.port(), "/port")
    assert resp.status == 200, f"GET /port: {resp}"
    return int(resp.body)


# ------------------------------------------------------------------- reload


class KeepAliveLoad:
    """Threads sending GET /hello over keep-alive connections (a new one every
    100 requests) until stopped, or a request or time limit is reached."""

    def __init__(self, port: int, threads: int = 4, limit: int = 20000, seconds: float = 60):
        self.port = port
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.done = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _more(self) -> bool:
        with self.lock:
            return (not self.stop_event.is_set() and self.done < self.limit
                    and time.monotonic() < self.deadline)

    def _run(self) -> None:
        while self._more():
            try:
                with HttpClient(self.port, timeout=10) as client:
                    for _ in range(100):
                        if not self._more():
                            return
                        resp = client.request("GET", "/hello")
                        with self.lock:
                            self.done += 1
                            if resp.status != 200 or resp.body != HELLO:
                                self.failures.append(str(resp))
            except Exception as e:  # a broken connection is a failed request
                with self.lock:
                    self.done += 1
                    self.failures.append(repr(e))

    def __enter__(self) -> "KeepAliveLoad":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(15)


def h2load_summary(output: str) -> dict[str, int]:
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout", output)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    assert requests and codes, f"unexpected h2load output:\n{output}"
    names = ["total", "started", "done", "succeeded", "failed", "errored", "timeout"]
    summary = dict(zip(names, map(int, requests.groups())))
    summary.update(zip(["2xx", "3xx", "4xx", "5xx"], map(int, codes.groups())))
    return summary


def test_reloads_under_load_lose_no_request(fleet, nginx):
    proxy = fleet.proxy(config_to(nginx, "a"))
    h2load = fleet.spawn("h2load", ["h2load", "--h1", "-n", "20000", "-c", "8", "-t", "1",
                                    proxy.url("/hello")])
    with KeepAliveLoad(proxy.port()) as load:
        wait_until(lambda: load.done >= 200, 5)
        for target in "babab":
            proxy.reload(config_to(nginx, target))
            # Some requests on the new config before the next reload.
            done = load.done
            wait_until(lambda: load.done >= done + 100, 5)
    rc = h2load.wait(120)
    assert rc == 0, f"h2load exited with {rc}:\n{h2load.stdout()}{h2load.stderr()}"
    summary = h2load_summary(h2load.stdout())
    assert (summary["succeeded"], summary["failed"], summary["errored"], summary["timeout"],
            summary["2xx"]) == (20000, 0, 0, 0, 20000), f"h2load: {summary}"
    assert load.done > 0 and not load.failures, \
        f"{len(load.failures)} of {load.done} keep-alive requests failed: {load.failures[:5]}"
    ports = {served_port(proxy) for _ in range(10)}
    assert ports == {nginx.ports[1]}, f"after the last reload (to b) requests reached {ports}"


def test_keep_alive_connection_survives_reload(fleet, nginx):
    proxy = fleet.proxy(config_to(nginx, "a"))
    with HttpClient(proxy.port()) as client:
        resp = client.request("GET", "/port")
        assert resp.status == 200 and int(resp.body) == nginx.ports[0], f"before reload: {resp}"
        proxy.reload(config_to(nginx, "b"))
        resp = client.request("GET", "/port")
        assert resp.status == 200 and int(resp.body) in nginx.ports, \
            f"same connection after reload: {resp}"
    assert served_port(proxy) == nginx.ports[1], "new connection after reload not routed to b"


def unknown_cluster(proxy) -> tuple[str, str]:
    """The config in force with its route pointing at a cluster that does not exist."""
    config = copy.deepcopy(proxy.config)
    config["listeners"][0]["virtual_hosts"][0]["routes"][0]["cluster"] = "nonexistent"
    return to_yaml(config), "nonexistent"


def yaml_syntax_error(proxy) -> tuple[str, str]:
    return to_yaml(proxy.config) + "clusters: [\n  {name: broken\n", proxy.config_path.name


@pytest.mark.parametrize("make_bad", [unknown_cluster, yaml_syntax_error])
def test_invalid_config_on_sighup_is_refused(fleet, nginx, make_bad):
    proxy = fleet.proxy(config_to(nginx, "a"))
    dump_before = proxy.config_dump()
    stderr_before = len(proxy.stderr())
    text, mention = make_bad(proxy)
    proxy.reload(text, wait=False)
    new_stderr = lambda: proxy.stderr()[stderr_before:]  # noqa: E731
    assert wait_until(lambda: mention in new_stderr(), 5), (
        f"stderr does not mention {mention!r} after the bad reload: {new_stderr()!r}; "
        f"stdout ends with:\n{tail(proxy.service.stdout(), 5)}")
    assert proxy.running(), f"proxy exited on a bad reload: {tail(proxy.output())}"
    assert proxy.ready_status() == 200, f"/ready answered {proxy.ready_status()}"
    assert proxy.config_dump() == dump_before, "config in force changed after a refused reload"
    assert served_port(proxy) == nginx.ports[0], "requests no longer reach the old cluster"
    proxy.reload(config_to(nginx, "b"))
    assert served_port(proxy) == nginx.ports[1], "a good reload after the bad one was not applied"


# -------------------------------------------------------------------- drain


def start_downloads(fleet, proxy, path: str, count: int):
    """`count` curl downloads of `path` through the proxy, running in the background."""
    out = fleet.subdir("downloads")
    downloads = []
    for i in range(count):
        target = out / f"{i}.bin"
        curl = fleet.spawn(f"curl-{i}", ["curl", "-sS", "--noproxy", "*", "-o", target,
                                         proxy.url(path)])
        downloads.append((curl, target))
    started = wait_until(lambda: all(t.exists() and t.stat().st_size > 0 for _, t in downloads), 5)
    assert started, "downloads did not start: " + "; ".join(c.stderr() for c, _ in downloads)
    return downloads


def refuses_new_connections(port: int) -> bool:
    try:
        with HttpClient(port, timeout=1) as client:
            client.send(build_request("GET", "/hello"))
            return client.try_read_response() is None
    except ConnectionError:  # refused or reset
        return True
    except TimeoutError:
        return False


def test_sigterm_drains_in_flight_requests(fleet):
    nginx = fleet.nginx()
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("web")])],
                                     [cluster("web", nginx)], drain_timeout="10s"))
    downloads = start_downloads(fleet, proxy, "/slow", 4)
    proxy.signal(signal.SIGTERM)
    started = time.monotonic()
    assert wait_until(lambda: proxy.ready_status() == 503, 1), \
        f"/ready answered {proxy.ready_status()} after SIGTERM, expected 503"
    assert wait_until(lambda: refuses_new_connections(proxy.port()), 3), \
        "listener still accepts and serves new connections 3 s after SIGTERM"
    for i, (curl, target) in enumerate(downloads):
        rc = curl.wait(30)
        size = target.stat().st_size if target.exists() else 0
        assert rc == 0 and size == nginx.SLOW_SIZE, \
            f"download {i}: curl rc={rc}, {size} of {nginx.SLOW_SIZE} bytes, stderr={curl.stderr()!r}"
        assert target.read_bytes() == nginx.slow_body, f"download {i}: body differs"
    rc = proxy.service.wait(max(1.0, 15 - (time.monotonic() - started)))
    assert rc == 0, f"proxy exit code {rc} after draining; output:\n{tail(proxy.output())}"


def test_drain_timeout_cuts_requests_that_take_longer(fleet):
    nginx = fleet.nginx()
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("web")])],
                                     [cluster("web", nginx)], drain_timeout="1s"))
    [(curl, target)] = start_downloads(fleet, proxy, "/slower", 1)
    proxy.signal(signal.SIGTERM)
    rc = proxy.service.wait(6)
    assert rc == 0, (f"proxy exit code {rc} (None: still running 6 s after SIGTERM with "
                     f"drain_timeout 1s); output:\n{tail(proxy.output())}")
    curl.wait(10)
    size = target.stat().st_size
    assert size < nginx.SLOW_SIZE, f"the slow download completed ({size} bytes) although it was cut"


def test_sigterm_when_idle_exits_cleanly(fleet, nginx):
    proxy = fleet.proxy(config_to(nginx, "a", drain_timeout="3s"))
    assert get(proxy.port(), "/hello").body == HELLO
    rc = proxy.stop(timeout=8)
    assert rc == 0, f"exit code {rc} after SIGTERM; output:\n{tail(proxy.output())}"
