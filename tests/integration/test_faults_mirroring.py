"""Fault injection (aborts and delays, always and sampled) and request
mirroring to a shadow cluster, as the client, the upstream and the shadow see
them."""

import hashlib
import os

from harness import (
    HttpClient, build_request, cluster, get, http_listener, http_responder, metric, named_responder, pipelined,
    proxy_config, request_echo, route, silent, wait_until,
)


def within(count: int, n: int, share: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * share) <= sigmas * (n * share * (1 - share)) ** 0.5


def fault_config(upstream, fault: dict) -> dict:
    return proxy_config([http_listener("web", [route("svc", fault=fault)])], [cluster("svc", upstream)])


def mirror_config(primary, shadow, percent: int, timeout: str | None = None) -> dict:
    return proxy_config([http_listener("web", [route("svc", timeout=timeout,
                                                     mirror=[{"cluster": "shadow", "percent": percent}])])],
                        [cluster("svc", primary), cluster("shadow", shadow)])


def stat(proxy, name: str, cluster_name: str) -> float:
    return metric(proxy.stats(), name, cluster=cluster_name)


# ------------------------------------------------------------------- aborts


def test_abort_always_answers_the_fault_and_never_reaches_the_upstream(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(fault_config(upstream, {"abort": {"status": 503, "percent": 100}}))
    for i in range(10):
        resp = get(proxy.port(), f"/abort/{i}")
        assert (resp.status, resp.text().strip()) == (503, "fault filter abort"), \
            f"request {i} with abort 503 at 100%: got {resp}"
    resp = get(proxy.port(), "/abort/post", method="POST", body=b"payload")
    assert resp.status == 503, f"POST with abort 503 at 100%: got {resp}"
    assert upstream.connections() == 0, f"the upstream got {upstream.connections()} connections: {upstream.requests()}"
    assert stat(proxy, "trellis_upstream_fault_aborts_total", "svc") == 11


def test_abort_half_of_the_requests(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(fault_config(upstream, {"abort": {"status": 500, "percent": 50}}))
    n = 400
    with HttpClient(proxy.port()) as client:
        responses = pipelined(client, [build_request("GET", "/maybe")] * n)
    aborted = sum(1 for r in responses if r.status == 500 and r.text().strip() == "fault filter abort")
    passed = sum(1 for r in responses if r.status == 200)
    assert aborted + passed == n, f"answers other than 200 or the fault: {[str(r) for r in responses][:3]}"
    assert within(aborted, n, 0.5), f"abort at 50%: {aborted} of {n} requests aborted"
    assert len(upstream.requests()) == passed, \
        f"the upstream saw {len(upstream.requests())} requests; {passed} were not aborted"
    assert stat(proxy, "trellis_upstream_fault_aborts_total", "svc") == aborted


# ------------------------------------------------------------------- delays


def test_delay_holds_the_request_and_keeps_it_whole(fleet):
    upstream = fleet.upstream(http_responder(request_echo))
    proxy = fleet.proxy(fault_config(upstream, {"delay": {"duration": "200ms", "percent": 100}}))

    # How long the hold lasts is tested on simulated time (tests/unit/proxy/http/router_test.cc).
    resp = get(proxy.port(), "/delayed?q=1")
    assert resp.status == 200 and resp.header("x-echo-target") == "/delayed?q=1", f"GET: got {resp}"

    body = os.urandom(200_000)  # more than the default 64 KiB retry buffer
    resp = get(proxy.port(), "/delayed-upload", method="POST", body=body, timeout=20)
    assert resp.status == 200, f"POST of {len(body)} bytes with a 200ms delay: got {resp}"
    assert hashlib.sha256(resp.body).hexdigest() == hashlib.sha256(body).hexdigest(), \
        f"the upstream echoed {len(resp.body)} bytes that differ from the {len(body)} sent"
    assert stat(proxy, "trellis_upstream_fault_delays_total", "svc") == 2


# ----------------------------------------------------------------- mirroring


def test_mirror_copies_every_request_to_the_shadow(fleet):
    primary = fleet.upstream(named_responder("primary"))
    shadow = fleet.upstream(named_responder("shadow"))
    proxy = fleet.proxy(mirror_config(primary, shadow, 100))
    sent = [("GET", "/m/1?q=1", None), ("POST", "/m/2", os.urandom(10_000)), ("PUT", "/m/3", b"put-body"),
            ("DELETE", "/m/4", None)]
    for method, target, body in sent:
        resp = get(proxy.port(), target, [("X-Tag", target)], method=method, body=body)
        assert resp.status == 200 and resp.body == b"primary", f"{method} {target}: client got {resp}"
    assert wait_until(lambda: len(shadow.requests()) >= len(sent), 5), \
        f"the shadow received {len(shadow.requests())} of {len(sent)} copies"
    got = sorted((r.method, r.target, r.body, r.header("x-tag")) for r in shadow.requests())
    want = sorted((m, t, b or b"", t) for m, t, b in sent)
    assert got == want, f"shadow received {[(m, t, len(b), x) for m, t, b, x in got]}, " \
                        f"expected {[(m, t, len(b), x) for m, t, b, x in want]}"
    assert len(primary.requests()) == len(sent), f"the primary saw {len(primary.requests())} requests"


def test_mirror_half_of_the_requests(fleet):
    primary = fleet.upstream(named_responder("primary"))
    shadow = fleet.upstream(named_responder("shadow"))
    proxy = fleet.proxy(mirror_config(primary, shadow, 50))
    n = 400
    with HttpClient(proxy.port()) as client:
        responses = pipelined(client, [build_request("GET", "/half")] * n)
    assert all(r.status == 200 and r.body == b"primary" for r in responses), \
        [str(r) for r in responses if r.body != b"primary"][:3]

    def settled():
        mirrored = stat(proxy, "trellis_upstream_mirrored_total", "shadow")
        return mirrored if len(shadow.requests()) == mirrored else None
    mirrored = wait_until(settled, 5)
    assert mirrored is not None, \
        f"the shadow received {len(shadow.requests())} copies, /stats counts " \
        f"{stat(proxy, 'trellis_upstream_mirrored_total', 'shadow')}"
    assert within(int(mirrored), n, 0.5), f"mirror at 50%: {mirrored:.0f} of {n} requests copied"


def test_shadow_that_never_answers_does_not_delay_the_primary(fleet):
    primary = fleet.upstream(named_responder("primary"))
    shadow = fleet.upstream(silent)
    proxy = fleet.proxy(mirror_config(primary, shadow, 100, timeout="10s"))
    # A primary that waited for its copy would end in the route's timeout
    # (504 after 10 s), past the client's own timeout.
    with HttpClient(proxy.port(), timeout=5) as client:
        for i in range(20):
            resp = client.request("GET", f"/shadowed/{i}")
            assert resp.status == 200 and resp.body == b"primary", f"request {i}: got {resp}"
    assert wait_until(lambda: len(shadow.requests()) == 20, 5), \
        f"the shadow received {len(shadow.requests())} of 20 copies"
    assert stat(proxy, "trellis_upstream_mirrored_total", "shadow") == 20
