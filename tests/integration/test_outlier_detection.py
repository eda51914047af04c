"""Passive outlier detection: an endpoint that keeps failing real requests is
ejected (for all workers at once), comes back when its ejection ends, and
with retries the client never sees its failures."""

import time

from harness import (LOCALHOST, HttpClient, ScriptedResponder, cluster, free_port, http_listener, http_response,
                     named_responder, proxy_config, route, wait_until)


def served(port: int, n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    with HttpClient(port) as client:
        for _ in range(n):
            resp = client.request("GET", "/")
            key = resp.body.decode() if resp.status == 200 else f"status {resp.status}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def outlier_cluster(*endpoints, retry: dict | None = None, **outlier) -> dict:
    od = {"consecutive_5xx": 3, "max_ejection_percent": 50, "base_ejection_time": "1s", "interval": "200ms",
          **outlier}
    extra = {"retry": retry} if retry else {}
    return cluster("app", *endpoints, lb_policy="round_robin", outlier_detection=od, **extra)


def test_an_endpoint_answering_5xx_is_ejected_and_comes_back(fleet):
    a = fleet.upstream(named_responder("a"))
    b = fleet.upstream(named_responder("b"))
    bad = ScriptedResponder(then=http_response(500, b"bad"))
    c = fleet.upstream(bad)
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])], [outlier_cluster(a, b, c)]),
                        workers=2)
    first = served(proxy.port(), 30)
    assert first.get("status 500", 0) <= 6, f"the failing endpoint kept its share: {first}"
    ejected_at = bad.answered
    counts = served(proxy.port(), 60)
    assert counts == {"a": 30, "b": 30}, f"after the ejection: {counts}"
    assert bad.answered == ejected_at, "the ejected endpoint still got requests"
    stats = proxy.stats()
    assert stats[("trellis_upstream_endpoints", frozenset({("cluster", "app"), ("state", "ejected")}))] == 1, stats
    assert stats[("trellis_upstream_ejections_total", frozenset({("cluster", "app")}))] >= 1
    # The ejection lasts 1 s (then up to one 200 ms interval): it is tried again.
    def tried_again() -> bool:
        served(proxy.port(), 6)
        return bad.answered > ejected_at

    assert wait_until(tried_again, 4), "the ejected endpoint never came back"


def test_with_retries_the_client_never_sees_the_failing_endpoint(fleet):
    a = fleet.upstream(named_responder("a"))
    b = fleet.upstream(named_responder("b"))
    c = fleet.upstream(ScriptedResponder(then=http_response(503, b"bad")))
    retry = {"attempts": 2, "retry_on": ["gateway-error"], "backoff": {"base": "1ms"},
             "budget": {"percent": 100, "min_per_second": 100}}
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])],
                                     [outlier_cluster(a, b, c, retry=retry, consecutive_5xx=0,
                                                      consecutive_gateway_errors=2)]))
    counts = served(proxy.port(), 200)
    assert set(counts) == {"a", "b"}, f"a client saw the failing endpoint: {counts}"


def test_a_dead_endpoint_is_ejected_on_connect_failures(fleet):
    a = fleet.upstream(named_responder("a"))
    dead = f"{LOCALHOST}:{free_port()}"
    retry = {"attempts": 1, "retry_on": ["connect-failure"], "backoff": {"base": "1ms"},
             "budget": {"percent": 100, "min_per_second": 100}}
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])],
                                     [outlier_cluster(a, dead, retry=retry, consecutive_gateway_errors=2)]),
                        workers=1)
    assert served(proxy.port(), 40) == {"a": 40}
    stats = proxy.stats()
    connects = sum(v for (name, labels), v in stats.items() if name == "trellis_upstream_connect_failures_total")
    assert connects <= 4, f"{connects} connect failures: the dead endpoint was not ejected"
