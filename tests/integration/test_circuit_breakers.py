"""Circuit breakers: past a cluster's limit, requests are answered 503 at once
with a header naming the limit, the limit holds across workers, and the
refusals are counted in /stats."""

import threading
import time

from harness import (HttpClient, ScriptedResponder, cluster, http_listener, http_response, named_responder,
                     proxy_config, route)


def parallel_gets(port: int, n: int) -> list:
    """n requests at once, each on its own connection; (status, headers, seconds)."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        with HttpClient(port, timeout=10) as client:
            barrier.wait()
            start = time.monotonic()
            resp = client.request("GET", "/")
            results[i] = (resp.status, resp.headers, time.monotonic() - start, resp.body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    return results


def overflow_count(proxy, limit: str) -> float:
    return sum(v for (name, labels), v in proxy.stats().items()
               if name == "trellis_upstream_overflow_total" and ("limit", limit) in labels)


def test_max_requests_holds_across_workers_and_answers_at_once(fleet):
    slow = fleet.upstream(named_responder("slow", delay=0.6))
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])],
                                     [cluster("app", slow, circuit_breakers={"max_requests": 2})]), workers=2)
    results = parallel_gets(proxy.port(), 6)
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    assert len(ok) == 2 and len(refused) == 4, f"statuses with max_requests 2: {[r[0] for r in results]}"
    for status, headers, seconds, body in refused:
        assert dict(headers).get("x-trellis-overflow") == "max_requests", headers
        assert body == b"upstream overflow: max_requests\n", body
    assert overflow_count(proxy, "max_requests") == 4
    # The slots come back: after the slow ones finish, requests pass again.
    with HttpClient(proxy.port()) as client:
        assert client.request("GET", "/").status == 200


def test_max_connections_refuses_a_new_connection(fleet):
    slow = fleet.upstream(named_responder("slow", delay=0.5))
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])],
                                     [cluster("app", slow, circuit_breakers={"max_connections": 1})]), workers=1)
    results = parallel_gets(proxy.port(), 3)
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 503, 503], statuses
    assert {dict(r[1]).get("x-trellis-overflow") for r in results if r[0] == 503} == {"max_connections"}


def test_max_retries_caps_retries_in_flight(fleet):
    failing = ScriptedResponder(then=http_response(503, b"no\n"))
    upstream = fleet.upstream(failing)
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("app")])],
        [cluster("app", upstream, retry={"attempts": 3, "retry_on": ["5xx"], "backoff": {"base": "1ms"},
                                         "budget": {"percent": 100, "min_per_second": 1000}},
                 circuit_breakers={"max_retries": 0})]))
    with HttpClient(proxy.port()) as client:
        statuses = [client.request("GET", "/").status for _ in range(20)]
    assert statuses == [503] * 20
    assert failing.answered == 20, f"max_retries 0 still let {failing.answered - 20} retries through"
    assert overflow_count(proxy, "max_retries") == 20
