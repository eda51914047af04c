"""Adaptive concurrency: with an upstream that can only serve a few requests
at once, the proxy's limit settles low and the excess is shed at once with a
503 naming the limit, instead of queueing behind the slow upstream."""

import threading
import time

from harness import HttpClient, cluster, http_listener, http_responder, http_response, proxy_config, route


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
    stop = time.monotonic() + 3.0

    def client() -> None:
        with HttpClient(proxy.port(), timeout=10) as c:
            while time.monotonic() < stop:
                resp = c.request("GET", "/")
                with lock:
                    results.append((resp.status, dict(resp.headers).get("x-trellis-overflow", "")))

    threads = [threading.Thread(target=client) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    ok = sum(1 for s, _ in results if s == 200)
    shed = [h for s, h in results if s == 503]
    assert ok > 50, f"only {ok} requests were served"
    assert shed and set(shed) == {"adaptive_concurrency"}, f"nothing was shed: {len(results)} requests"
    stats = proxy.stats()
    counted = sum(v for (name, labels), v in stats.items() if name == "trellis_upstream_concurrency_shed_total")
    assert counted == len(shed)
