"""Adaptive concurrency: with an upstream that can only serve a few requests
at once, the proxy's limit settles low and the excess is shed at once with a
503 naming the limit, instead of queueing behind the slow upstream."""

import threading
import time

from harness import (HttpClient, cluster, http_listener, http_responder, http_response, metric, proxy_config, route,
                     wait_until)


def test_excess_is_shed_when_latency_climbs(fleet):
    capacity = threading.Semaphore(4)  # the upstream serves 4 at a time, 20 ms each

    def respond(req):
        with capacity:
            time.sleep(0.02)
        return http_response(200, b"ok")

    up = fleet.upstream(http_responder(respond))
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("app")])],
        [cluster("app", up, adaptive_concurrency={"initial_limit": 50, "min_limit": 2, "max_limit": 200,
                                                  "sample_window": "100ms", "baseline_interval": "10s"})]))
    results: list[tuple[int, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with HttpClient(proxy.port(), timeout=10) as c:
            while not stop.is_set():
                resp = c.request("GET", "/")
                with lock:
                    results.append((resp.status, dict(resp.headers).get("x-trellis-overflow", "")))

    def limit() -> float:
        return metric(proxy.stats(), "trellis_upstream_concurrency_limit", cluster="app")

    threads = [threading.Thread(target=client) for _ in range(24)]
    for t in threads:
        t.start()
    try:
        # While the baseline is measured the limit is pinned at min_limit;
        # then it starts from initial_limit (50), and the gradient brings it
        # down toward what the upstream serves at once (4).
        measured = wait_until(lambda: limit() >= 20, 20)
        since = len(results)
        settled = measured and wait_until(lambda: limit() <= 12 and len(results) > since + 100, 20)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert measured, f"the limit never left min_limit (baseline not measured?): {limit()}"
    assert settled, f"the limit stayed at {limit()} after the baseline, {len(results) - since} requests since"
    ok = sum(1 for s, _ in results if s == 200)
    shed = [h for s, h in results if s == 503]
    assert ok > 50, f"only {ok} requests were served"
    assert shed and set(shed) == {"adaptive_concurrency"}, f"nothing was shed: {len(results)} requests"
    stats = proxy.stats()
    counted = sum(v for (name, labels), v in stats.items() if name == "trellis_upstream_concurrency_shed_total")
    assert counted == len(shed)
