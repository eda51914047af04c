"""Retries (on connect failures, resets and status codes; idempotency; body
replay limits; the retry budget) and timeouts (request, per try, idle,
connect), each as the client and the upstream see them."""

import json
import os
import threading
import time

import pytest

from harness import (
    HttpClient, ScriptedResponder, cluster, concurrent_requests, free_port, get, http_listener, http_response,
    metric, named_responder, proxy_config, route, silent, wait_until,
)


def retry_config(upstreams, retry: dict | None, route_fields: dict | None = None, access_log=None,
                 **cluster_fields) -> dict:
    """Listener "web": everything to cluster "svc" over `upstreams`."""
    if retry is not None:
        cluster_fields["retry"] = retry
    return proxy_config([http_listener("web", [route("svc", **(route_fields or {}))])],
                        [cluster("svc", *upstreams, **cluster_fields)], access_log=access_log)


def status(code: int, body: bytes = b"") -> bytes:
    reasons = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
    return http_response(code, body or f"status {code}".encode(), reason=reasons.get(code, "X"))


def retries_metric(proxy, name: str = "trellis_upstream_retries_total") -> float:
    return metric(proxy.stats(), name, cluster="svc")


FAST_BACKOFF = {"base": "1ms", "max": "5ms"}


# ------------------------------------------------------------------ retry on


def test_retry_on_connect_failure_reaches_the_live_endpoint(fleet):
    live = fleet.upstream(named_responder("live"))
    log = fleet.subdir("logs") / "access.log"
    proxy = fleet.proxy(retry_config(
        [free_port(), live], {"attempts": 2, "retry_on": ["connect-failure"], "backoff": FAST_BACKOFF},
        access_log=log, lb_policy="round_robin"))
    for i in range(20):
        resp = get(proxy.port(), f"/cf/{i}")
        assert resp.status == 200 and resp.body == b"live", \
            f"request {i} with one dead and one live endpoint: got {resp}"
    retries = retries_metric(proxy)
    assert retries >= 5, f"round robin over a dead endpoint for 20 requests: {retries} retries counted"

    def entries():
        return [json.loads(l) for l in log.read_text().splitlines() if l.strip()] if log.exists() else []
    wait_until(lambda: len(entries()) >= 20, 5)
    logged = sum(e.get("retries", 0) for e in entries())
    assert logged == retries, \
        f"access log shows {logged} retries in total, /stats {retries}: {entries()[:3]}"
    assert all(e.get("retries", 1) > 0 for e in entries()), \
        f'"retries" must appear only when there were some: {[e for e in entries() if "retries" in e][:3]}'


def test_retry_on_retriable_status_code(fleet):
    script = ScriptedResponder(status(503), http_response(200, b"second"), status(500), then=status(500))
    upstream = fleet.upstream(script)
    proxy = fleet.proxy(retry_config([upstream], {"attempts": 2, "retry_on": ["retriable-status-codes"],
                                                  "status_codes": [503], "backoff": FAST_BACKOFF}))
    resp = get(proxy.port(), "/rsc")
    assert resp.status == 200 and resp.body == b"second", f"503 then 200: client got {resp}"
    assert len(upstream.requests()) == 2, f"upstream saw {len(upstream.requests())} requests, expected 2"
    resp = get(proxy.port(), "/rsc-500")
    assert resp.status == 500, f"500 is not in status_codes: client got {resp}"
    assert len(upstream.requests()) == 3, \
        f"a 500 (not in status_codes [503]) was retried: upstream saw {len(upstream.requests())} requests"


def test_retry_on_5xx(fleet):
    upstream = fleet.upstream(ScriptedResponder(status(500), status(502), then=http_response(200, b"third")))
    proxy = fleet.proxy(retry_config([upstream], {"attempts": 2, "retry_on": ["5xx"], "backoff": FAST_BACKOFF}))
    resp = get(proxy.port(), "/5xx")
    assert resp.status == 200 and resp.body == b"third", f"500, 502, then 200: client got {resp}"
    assert len(upstream.requests()) == 3, f"upstream saw {len(upstream.requests())} requests, expected 3"
    assert retries_metric(proxy) == 2


@pytest.mark.parametrize("how", ["close", "reset"])
def test_retry_on_reset(fleet, how):
    upstream = fleet.upstream(ScriptedResponder(how, then=http_response(200, b"after")))
    proxy = fleet.proxy(retry_config([upstream], {"attempts": 2, "retry_on": ["reset"], "backoff": FAST_BACKOFF}))
    resp = get(proxy.port(), "/reset")
    assert resp.status == 200 and resp.body == b"after", \
        f"upstream {how}d the connection without answering, then answered: client got {resp}"
    assert len(upstream.requests()) == 2, f"upstream saw {len(upstream.requests())} requests, expected 2"
    assert retries_metric(proxy) == 1


# ------------------------------------------------------- what is retried


def test_post_is_not_retried_by_default(fleet):
    upstream = fleet.upstream(ScriptedResponder(status(503), then=http_response(200, b"second")))
    proxy = fleet.proxy(retry_config([upstream], {"attempts": 2, "retry_on": ["5xx"], "backoff": FAST_BACKOFF}))
    resp = get(proxy.port(), "/order", method="POST", body=b"amount=10")
    assert resp.status == 503, f"POST answered 503: client got {resp}; it must not be retried"
    assert len(upstream.requests()) == 1, f"a POST was sent {len(upstream.requests())} times"


def test_post_is_retried_with_non_idempotent_and_the_same_body(fleet):
    upstream = fleet.upstream(ScriptedResponder(status(503), then=http_response(200, b"second")))
    proxy = fleet.proxy(retry_config([upstream], {"attempts": 2, "retry_on": ["5xx"], "non_idempotent": True,
                                                  "backoff": FAST_BACKOFF}))
    body = os.urandom(20_000)
    resp = get(proxy.port(), "/order?x=1", method="POST", body=body, headers=[("X-Trace", "t1")])
    assert resp.status == 200 and resp.body == b"second", f"POST with non_idempotent: client got {resp}"
    reqs = upstream.requests()
    assert len(reqs) == 2, f"upstream saw {len(reqs)} requests, expected 2"
    for i, req in enumerate(reqs):
        assert (req.method, req.target, req.header("x-trace")) == ("POST", "/order?x=1", "t1"), \
            f"try {i + 1}: {req.start_line} {req.headers}"
        assert req.body == body, f"try {i + 1}: body of {len(req.body)} bytes differs from the {len(body)} sent"


def test_body_larger_than_buffer_limit_is_not_replayed(fleet):
    upstream = fleet.upstream(ScriptedResponder(status(503), status(503), then=http_response(200, b"ok")))
    proxy = fleet.proxy(retry_config([upstream], {"attempts": 2, "retry_on": ["5xx"], "buffer_limit": 1024,
                                                  "backoff": FAST_BACKOFF}))
    big = os.urandom(4096)
    resp = get(proxy.port(), "/dav/big", method="PUT", body=big)
    assert resp.status == 503, f"PUT of 4096 bytes with buffer_limit 1024: client got {resp}; not replayable"
    reqs = upstream.requests()
    assert len(reqs) == 1 and reqs[0].body == big, \
        f"upstream saw {len(reqs)} requests; the one try must carry the whole body"
    small = os.urandom(512)
    resp = get(proxy.port(), "/dav/small", method="PUT", body=small)
    assert resp.status == 200, f"PUT of 512 bytes with buffer_limit 1024, 503 then 200: client got {resp}"
    reqs = upstream.requests()[1:]
    assert len(reqs) == 2 and all(r.body == small for r in reqs), \
        f"upstream saw {len(reqs)} tries of the small PUT, bodies {[len(r.body) for r in reqs]}"


def test_retries_exhausted_return_the_last_failure(fleet):
    upstream = fleet.upstream(ScriptedResponder(status(503, b"try 1"), status(502, b"try 2"),
                                                then=status(500, b"try 3")))
    proxy = fleet.proxy(retry_config([upstream], {"attempts": 2, "retry_on": ["5xx"], "backoff": FAST_BACKOFF}))
    resp = get(proxy.port(), "/exhaust")
    assert (resp.status, resp.body) == (500, b"try 3"), f"three failing tries: client got {resp}, expected the last"
    assert len(upstream.requests()) == 3, f"upstream saw {len(upstream.requests())} requests, expected 3"


# ------------------------------------------------------------ retry budget


def test_retry_budget_bounds_a_retry_storm(fleet):
    upstreams = [fleet.upstream(ScriptedResponder(then=status(503, b"overloaded"))) for _ in range(3)]
    min_per_second = 1
    proxy = fleet.proxy(retry_config(upstreams, {
        "attempts": 3, "retry_on": ["5xx"], "backoff": FAST_BACKOFF,
        "budget": {"percent": 20, "min_per_second": min_per_second}}))
    n = 500
    started = time.monotonic()
    responses = concurrent_requests(proxy.port(), clients=5, total=n, target="/storm")
    elapsed = time.monotonic() - started
    assert len(responses) == n and all(r.status == 503 for r in responses), \
        f"expected {n} answers of 503, got {len(responses)}: {[str(r) for r in responses if r.status != 503][:3]}"

    sent = sum(len(u.requests()) for u in upstreams)
    # Retries: 20% of the requests, plus the floor of min_per_second over the
    # 10 s window (which slides for as long as the storm lasted), plus slack.
    allowed = n * 1.2 + min_per_second * (10 + elapsed) + 5
    assert sent <= allowed, \
        f"{n} requests, every try answered 503, attempts 3, budget 20% + {min_per_second}/s: upstreams saw " \
        f"{sent} requests in {elapsed:.1f}s; at most {allowed:.0f} allowed (without a budget: up to {n * 4})"
    assert sent > n, f"upstreams saw {sent} requests for {n}: no retry at all"
    stats = proxy.stats()
    exhausted = metric(stats, "trellis_upstream_retry_budget_exhausted_total", cluster="svc")
    assert exhausted > 0, "trellis_upstream_retry_budget_exhausted_total stayed 0 during a retry storm"
    retries = metric(stats, "trellis_upstream_retries_total", cluster="svc")
    assert retries == sent - n, f"trellis_upstream_retries_total {retries}, but upstreams saw {sent - n} retries"


# ------------------------------------------------------------------ timeouts


def test_per_try_timeout_retries_on_a_fast_instance(fleet):
    stuck = fleet.upstream(silent)
    fast = fleet.upstream(named_responder("fast"))
    proxy = fleet.proxy(retry_config(
        [stuck, fast], {"attempts": 2, "per_try_timeout": "200ms", "retry_on": ["5xx"], "backoff": FAST_BACKOFF},
        lb_policy="round_robin"))
    for i in range(10):
        resp = get(proxy.port(), f"/ptt/{i}")
        assert resp.status == 200 and resp.body == b"fast", \
            f"request {i}, one endpoint never answers, per_try_timeout 200ms: got {resp}"
    assert len(stuck.requests()) >= 3, f"the stuck endpoint got {len(stuck.requests())} of 10 tries"
    assert retries_metric(proxy) == len(stuck.requests())


def test_request_timeout_is_504_and_covers_retries(fleet):
    upstream = fleet.upstream(silent)
    proxy = fleet.proxy(retry_config(
        [upstream], {"attempts": 5, "per_try_timeout": "300ms", "retry_on": ["5xx"], "backoff": FAST_BACKOFF},
        route_fields={"timeout": "500ms"}))
    resp = get(proxy.port(), "/slow")
    # Without the whole-request limit the tries would end as a per-try timeout.
    assert (resp.status, resp.text().strip()) == (504, "upstream request timeout"), \
        f"route timeout 500ms, per-try 300ms, 5 retries, silent upstream: got {resp}"
    assert len(upstream.requests()) <= 2, \
        f"upstream saw {len(upstream.requests())} tries after the request had timed out"


def test_route_per_try_timeout_is_504_per_try(fleet):
    upstream = fleet.upstream(silent)
    proxy = fleet.proxy(retry_config([upstream], None, route_fields={"timeout": "10s", "per_try_timeout": "300ms"}))
    # The route's 10 s would answer "upstream request timeout": this one fired first.
    resp = get(proxy.port(), "/slow")
    assert (resp.status, resp.text().strip()) == (504, "upstream per-try timeout"), \
        f"per_try_timeout 300ms, silent upstream: got {resp}"


def test_request_idle_timeout_is_504_idle(fleet):
    upstream = fleet.upstream(silent)
    proxy = fleet.proxy(retry_config([upstream], None, route_fields={"timeout": "10s"},
                                     request_idle_timeout="300ms"))
    resp = get(proxy.port(), "/idle")
    assert (resp.status, resp.text().strip()) == (504, "upstream idle timeout"), \
        f"request_idle_timeout 300ms, route timeout 10s, silent upstream: got {resp}"


def test_connect_timeout_is_504(fleet):
    hole = fleet.blackhole()
    proxy = fleet.proxy(retry_config([hole], None, connect_timeout="200ms"))
    resp = get(proxy.port(), "/", timeout=10)
    assert (resp.status, resp.text().strip()) == (504, "upstream connect timeout"), \
        f"endpoint whose SYNs go unanswered, connect_timeout 200ms: got {resp}"
