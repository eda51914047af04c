"""Rate limits: exact for the whole proxy (not per worker), per source or
header, 429 with Retry-After, leaky-bucket shaping that holds instead of
refusing, and buckets that survive a reload."""

import threading
import time

from harness import HttpClient, cluster, http_listener, metric, named_responder, proxy_config, route


def limited_proxy(fleet, limits: list[dict], workers: int = 4):
    up = fleet.upstream(named_responder("ok"))
    config = proxy_config([http_listener("web", [route("app", rate_limits=limits)])], [cluster("app", up)])
    return fleet.proxy(config, workers=workers), config


def burst(port: int, clients: int, per_client: int, headers=()) -> list[int]:
    """clients x per_client requests at once, each client on its own connection."""
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def one() -> None:
        with HttpClient(port) as client:
            barrier.wait()
            for _ in range(per_client):
                resp = client.request("GET", "/", headers)
                with lock:
                    statuses.append(resp.status)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return statuses


def test_token_bucket_is_exact_across_workers(fleet):
    # 10 per minute with 20 more in a burst: 30 pass at once, whatever the workers.
    proxy, _ = limited_proxy(fleet, [{"name": "all", "token_bucket": {"requests_per_unit": 10, "unit": "minute",
                                                                      "burst": 20}}])
    statuses = burst(proxy.port(), clients=8, per_client=10)
    assert statuses.count(200) == 30 and statuses.count(429) == 50, \
        f"80 requests at once against a bucket of 30 over 4 workers: {statuses.count(200)} passed"
    with HttpClient(proxy.port()) as client:
        resp = client.request("GET", "/")
    assert resp.status == 429 and resp.body == b"rate limited: all\n", resp
    retry_after = int(dict(resp.headers)["retry-after"])
    assert 1 <= retry_after <= 6, f"Retry-After {retry_after} s for a token every 6 s"
    stats = proxy.stats()
    limited = sum(v for (name, labels), v in stats.items() if name == "trellis_http_rate_limited_total")
    assert limited == 51


def test_per_address_and_per_header_buckets(fleet):
    proxy, _ = limited_proxy(fleet, [{"key": {"header": "x-api-key"},
                                      "token_bucket": {"requests_per_unit": 3, "unit": "hour"}}])
    a = burst(proxy.port(), clients=2, per_client=4, headers=[("x-api-key", "alice")])
    b = burst(proxy.port(), clients=1, per_client=4, headers=[("x-api-key", "bob")])
    assert a.count(200) == 3 and b.count(200) == 3, f"alice {a}, bob {b}: each key has its own 3"


def test_match_selects_what_counts(fleet):
    proxy, _ = limited_proxy(fleet, [{"match": {"prefix": "/writes", "method": "POST"},
                                      "token_bucket": {"requests_per_unit": 1, "unit": "hour"}}])
    def post(path: str) -> int:
        with HttpClient(proxy.port()) as client:
            return client.request("POST", path, body=b"x").status

    # A refused request's body is read and dropped: its connection serves on.
    with HttpClient(proxy.port()) as client:
        assert [client.request("POST", "/writes/1", body=b"x").status for _ in range(3)] == [200, 429, 429]
        assert client.request("GET", "/writes/1").status == 200
    with HttpClient(proxy.port()) as client:
        assert all(client.request("GET", "/writes/1").status == 200 for _ in range(10)), "GETs were limited"
    assert all(post("/other") == 200 for _ in range(5))


def test_leaky_bucket_holds_requests_instead_of_refusing(fleet):
    # 20 per second, up to 10 waiting: 11 requests at once all pass, most of
    # them held for their turn (how long: tests/unit/proxy/http/router_test.cc).
    proxy, _ = limited_proxy(fleet, [{"leaky_bucket": {"rate_per_second": 20, "queue_size": 10}}])
    statuses = burst(proxy.port(), clients=11, per_client=1)
    assert statuses.count(200) == 11, statuses
    held = metric(proxy.stats(), "trellis_http_rate_limit_delayed_total", listener="web")
    assert held >= 8, f"11 requests at once at 20/s: only {held:.0f} were held"
    # A queue of 10 is full with 11 more at once: the extra ones are refused.
    statuses = burst(proxy.port(), clients=16, per_client=1)
    assert statuses.count(429) >= 4, statuses


def test_a_reload_keeps_the_buckets(fleet):
    proxy, config = limited_proxy(fleet, [{"name": "all", "token_bucket": {"requests_per_unit": 5,
                                                                           "unit": "hour"}}], workers=1)
    with HttpClient(proxy.port()) as client:
        assert [client.request("GET", "/").status for _ in range(6)] == [200] * 5 + [429]
    proxy.reload(config)
    with HttpClient(proxy.port()) as client:
        assert client.request("GET", "/").status == 429, "a reload refilled the bucket"
