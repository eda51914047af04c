"""Active health checks against real upstreams: an endpoint that fails its
checks leaves the rotation and comes back when it passes again; with too few
healthy endpoints the proxy spreads over all of them (panic). When checks run
and what each verdict takes is tested on simulated time in
tests/unit/proxy/upstream/health_checker_test.cc."""

import threading

from harness import (LOCALHOST, HttpClient, cluster, free_port, http_listener, http_responder, http_response,
                     metric, proxy_config, route, wait_until)


class Switchable:
    """An upstream whose health can be flipped: /healthz answers 200 or 503,
    every other path answers its name."""

    def __init__(self, fleet, name: str):
        self.name = name
        self.healthy = True
        self.checks = 0
        self._lock = threading.Lock()
        self.server = fleet.upstream(http_responder(self._respond))
        self.port = self.server.port

    def _respond(self, req):
        if req.target == "/healthz":
            with self._lock:
                self.checks += 1
            return http_response(200 if self.healthy else 503, b"check\n")
        return http_response(200, self.name.encode())


def served(port: int, n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    with HttpClient(port) as client:
        for _ in range(n):
            resp = client.request("GET", "/")
            key = resp.body.decode() if resp.status == 200 else f"status {resp.status}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def checked_cluster(*endpoints, kind: dict | None = None, **checks) -> dict:
    hc = {"http": {"path": "/healthz"}} if kind is None else kind
    hc.update({"interval": "100ms", "timeout": "80ms", "healthy_threshold": 2, "unhealthy_threshold": 2,
               "jitter_percent": 0, **checks})
    return cluster("app", *endpoints, lb_policy="round_robin", health_check=hc)


def test_failing_endpoint_leaves_and_returns(fleet):
    a, b, c = (Switchable(fleet, n) for n in "abc")
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])], [checked_cluster(a, b, c)]))
    assert set(served(proxy.port(), 30)) == {"a", "b", "c"}
    b.healthy = False
    assert wait_until(lambda: "b" not in served(proxy.port(), 12), 5), "b failed its checks but still gets requests"
    counts = served(proxy.port(), 60)
    assert counts == {"a": 30, "c": 30}, f"with b out, requests went {counts}"
    b.healthy = True
    assert wait_until(lambda: "b" in served(proxy.port(), 12), 5), "b passes its checks again but gets nothing"


def test_tcp_check_takes_out_an_endpoint_nobody_listens_on(fleet):
    a = Switchable(fleet, "a")
    dead = free_port()
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])],
                                     [checked_cluster(a, f"{LOCALHOST}:{dead}", kind={"tcp": {}})]))
    assert wait_until(lambda: served(proxy.port(), 10) == {"a": 10}, 5), \
        f"the dead endpoint stayed in rotation: {served(proxy.port(), 10)}"


def test_panic_spreads_over_all_when_too_few_are_healthy(fleet):
    a, b = (Switchable(fleet, n) for n in "ab")
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])], [checked_cluster(a, b)]))
    a.healthy = False
    b.healthy = False

    def failing() -> float:
        return metric(proxy.stats(), "trellis_upstream_endpoints", cluster="app", state="failing_checks")
    assert wait_until(lambda: failing() == 2, 5), f"both should fail their checks; failing: {failing()}"
    counts = served(proxy.port(), 20)
    # Nothing healthy: rather than answer 503, the proxy keeps using both.
    assert counts == {"a": 10, "b": 10}, f"with every endpoint failing its checks: {counts}"


def test_health_check_config_is_checked(fleet):
    from harness import validate_config
    bad = proxy_config([http_listener("web", [route("app")])],
                       [cluster("app", "127.0.0.1:1", health_check={"http": {"path": "/h"}, "interval": "1s",
                                                                     "timeout": "2s"})])
    result = validate_config(fleet.dir, bad)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0 and \
        "clusters[0].health_check.timeout: must be shorter than the interval (1s)" in output, output


def test_locality_fails_over_to_the_next_zone(fleet):
    local = [Switchable(fleet, n) for n in ("a1", "a2")]
    remote = [Switchable(fleet, n) for n in ("b1", "b2")]
    endpoints = [{"address": f"{LOCALHOST}:{u.port}", "zone": "a"} for u in local] + \
                [{"address": f"{LOCALHOST}:{u.port}", "zone": "b"} for u in remote]
    c = checked_cluster(*endpoints)
    c["locality"] = {"min_healthy_percent": 100}
    config = proxy_config([http_listener("web", [route("app")])], [c])
    config["zone"] = "a"
    proxy = fleet.proxy(config)
    assert set(served(proxy.port(), 20)) == {"a1", "a2"}, "with its zone healthy, the proxy left it"
    for u in local:
        u.healthy = False
    # Half the endpoints are still healthy: no panic, the other zone takes it all.
    assert wait_until(lambda: served(proxy.port(), 10) == {"b1": 5, "b2": 5}, 5), \
        f"the local zone failed its checks but traffic stayed: {served(proxy.port(), 10)}"
