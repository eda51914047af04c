"""Load balancing over three upstream instances: how each lb_policy spreads
requests, consistent hashing (header, cookie, source address) and its
stability across a reload, locality, and slow start of a new endpoint."""

import collections
import math
import re

import pytest

from harness import (
    HttpClient, build_request, cluster, concurrent_requests, get, http_listener, named_responder,
    pipelined, proxy_config, route, validate_config, wait_until,
)


@pytest.fixture
def three(fleet):
    """nginx on three ports: three upstream instances that say which one answered."""
    return fleet.nginx(ports=3)


def lb_config(endpoints, **cluster_fields) -> dict:
    """Listener "web": everything to cluster "pool" over `endpoints`."""
    return proxy_config([http_listener("web", [route("pool")])], [cluster("pool", *endpoints, **cluster_fields)])


def endpoints_of(nginx, weights=None, zones=None) -> list[dict]:
    out = []
    for i in range(nginx.nports):
        e = {"address": nginx.address(i)}
        if weights:
            e["weight"] = weights[i]
        if zones:
            e["zone"] = zones[i]
        out.append(e)
    return out


def served_port(resp) -> int:
    """The nginx port that answered (its catch-all says "port=P")."""
    assert resp.status == 200, f"expected 200, got {resp}"
    m = re.search(r"port=(\d+)", resp.text())
    assert m, f"no port in the answer: {resp}"
    return int(m[1])


def spread(port: int, n: int, target: str = "/lb", headers=()) -> collections.Counter:
    """Which port served each of `n` requests sent on one keep-alive connection
    (so one worker, one balancer, sees them all in order)."""
    with HttpClient(port) as client:
        responses = pipelined(client, [build_request("GET", target, headers)] * n)
    return collections.Counter(served_port(r) for r in responses)


def within(count: int, n: int, share: float, sigmas: float = 5.0) -> bool:
    """`count` out of `n` draws is within `sigmas` standard deviations of `share`."""
    return abs(count - n * share) <= sigmas * math.sqrt(n * share * (1 - share))


# ------------------------------------------------------------ simple policies


def test_round_robin_is_exactly_even(fleet, three):
    proxy = fleet.proxy(lb_config(endpoints_of(three), lb_policy="round_robin"))
    counts = spread(proxy.port(), 60)
    assert counts == {p: 20 for p in three.ports}, \
        f"round_robin, 60 requests on one connection: {dict(counts)}, expected 20 each"
    # Fresh connections land on either worker; each worker cycles on its own,
    # so the totals differ by at most one per worker.
    fresh = collections.Counter(served_port(get(proxy.port(), "/lb")) for _ in range(60))
    assert set(fresh) == set(three.ports) and max(fresh.values()) - min(fresh.values()) <= proxy.workers, \
        f"round_robin, 60 requests on fresh connections: {dict(fresh)}"


def test_weighted_round_robin_gives_exact_proportions(fleet, three):
    proxy = fleet.proxy(lb_config(endpoints_of(three, weights=[1, 2, 3]), lb_policy="weighted_round_robin"))
    counts = spread(proxy.port(), 60)
    want = dict(zip(three.ports, (10, 20, 30)))
    assert counts == want, f"weighted_round_robin 1/2/3 over 60 requests: {dict(counts)}, expected {want}"


def test_random_spreads_evenly_within_tolerance(fleet, three):
    proxy = fleet.proxy(lb_config(endpoints_of(three), lb_policy="random"))
    n = 900
    counts = spread(proxy.port(), n)
    assert all(within(counts[p], n, 1 / 3) for p in three.ports), \
        f"random over {n} requests: {dict(counts)}, expected about {n // 3} each"


def test_weighted_random_follows_weights_within_tolerance(fleet, three):
    proxy = fleet.proxy(lb_config(endpoints_of(three, weights=[1, 2, 3]), lb_policy="weighted_random"))
    n = 1200
    counts = spread(proxy.port(), n)
    shares = dict(zip(three.ports, (1 / 6, 2 / 6, 3 / 6)))
    assert all(within(counts[p], n, s) for p, s in shares.items()), \
        f"weighted_random 1/2/3 over {n} requests: {dict(counts)}, expected about " \
        f"{ {p: round(n * s) for p, s in shares.items()} }"


# ------------------------------------------------- load- and latency-aware


def slow_and_fast(fleet):
    """Upstreams "fast-1", "fast-2" and "slow" (300 ms per answer)."""
    return [fleet.upstream(named_responder("fast-1")), fleet.upstream(named_responder("fast-2")),
            fleet.upstream(named_responder("slow", delay=0.3))]


def test_least_request_sends_fewer_requests_to_a_slow_instance(fleet):
    proxy = fleet.proxy(lb_config(slow_and_fast(fleet), lb_policy="least_request"))
    responses = concurrent_requests(proxy.port(), clients=4, total=160, target="/lr")
    assert all(r.status == 200 for r in responses), [str(r) for r in responses if r.status != 200][:3]
    counts = collections.Counter(r.text() for r in responses)
    even = len(responses) / 3
    assert counts["slow"] < even / 2, \
        f"least_request, 4 concurrent clients, one instance 300 ms slow: {dict(counts)}; " \
        f"the slow one should get clearly fewer than an even {even:.0f}"


@pytest.mark.parametrize("policy", ["peak_ewma", None], ids=["peak_ewma", "default"])
def test_latency_aware_policy_avoids_a_slow_instance(fleet, policy):
    fields = {"lb_policy": policy} if policy else {}
    proxy = fleet.proxy(lb_config(slow_and_fast(fleet), **fields))
    responses = concurrent_requests(proxy.port(), clients=2, total=80, target="/ewma")
    assert all(r.status == 200 for r in responses), [str(r) for r in responses if r.status != 200][:3]
    counts = collections.Counter(r.text() for r in responses)
    even = len(responses) / 3
    assert counts["slow"] < even / 2, \
        f"lb_policy {policy or '(default: peak_ewma)'}, one instance 300 ms slow: {dict(counts)}; " \
        f"the slow one should get clearly fewer than an even {even:.0f}"


# ---------------------------------------------------------- consistent hashing


def keyed_spread(port: int, keys: list[str]) -> dict[str, int]:
    """key -> port that served a request with X-User: key (one connection)."""
    with HttpClient(port) as client:
        responses = pipelined(client, [build_request("GET", "/hash", [("X-User", k)]) for k in keys])
    return {k: served_port(r) for k, r in zip(keys, responses)}


@pytest.mark.parametrize("policy", ["ring_hash", "maglev"])
def test_header_hash_is_sticky_spread_and_stable_across_reload(fleet, three, policy):
    config = lb_config(endpoints_of(three), lb_policy=policy, hash={"header": "x-user"})
    proxy = fleet.proxy(config)

    # Fresh connections reach both workers: every one must agree.
    sticky = {served_port(get(proxy.port(), "/hash", [("X-User", "user-42")])) for _ in range(20)}
    assert len(sticky) == 1, f"{policy}: X-User: user-42 served by {sticky} over 20 requests"

    keys = [f"user-{i}" for i in range(300)]
    before = keyed_spread(proxy.port(), keys)
    counts = collections.Counter(before.values())
    assert all(counts[p] >= 45 for p in three.ports), \
        f"{policy}: 300 keys spread as {dict(counts)}; every instance should hold a fair share"

    removed = three.ports[2]
    smaller = lb_config(endpoints_of(three)[:2], lb_policy=policy, hash={"header": "x-user"})
    proxy.reload(smaller)
    # Workers take the new config a moment after /config_dump shows it.
    def settled():
        m = keyed_spread(proxy.port(), keys)
        return m if removed not in m.values() else None
    after = wait_until(settled, 5)
    assert after, f"{policy}: the removed instance still serves 5 s after the reload"
    stayed = [k for k in keys if before[k] != removed]
    moved = {k: (before[k], after[k]) for k in stayed if after[k] != before[k]}
    # A ring moves only the removed instance's keys. Maglev's table is rebuilt
    # and may move a few of the others: with three hosts, whose names (here
    # random ports) decide the fill order, up to a few percent of slots (4 of
    # 201 keys were seen). 5% allows that and is far below a rehash (about half).
    allowed = 0 if policy == "ring_hash" else len(stayed) // 20
    assert len(moved) <= allowed, \
        f"{policy}: after removing one instance, {len(moved)} of {len(stayed)} keys that were on the " \
        f"remaining instances moved (allowed {allowed}); e.g. {dict(list(moved.items())[:5])}"


COOKIE = re.compile(r"trellis-affinity=([^;\s]+); Path=/; Max-Age=3600; HttpOnly")


def test_cookie_hash_sets_the_cookie_and_requests_with_it_stick(fleet, three):
    config = lb_config(endpoints_of(three), lb_policy="ring_hash",
                       hash={"cookie": {"name": "trellis-affinity", "ttl": "1h"}})
    proxy = fleet.proxy(config)

    first = get(proxy.port(), "/cart")
    set_cookie = first.header_values("set-cookie")
    assert len(set_cookie) == 1 and COOKIE.fullmatch(set_cookie[0]), \
        f"first request without the cookie: Set-Cookie {set_cookie}, expected " \
        f"'trellis-affinity=VALUE; Path=/; Max-Age=3600; HttpOnly'"
    value = COOKIE.fullmatch(set_cookie[0])[1]
    home = served_port(first)

    ports = set()
    for i in range(20):
        resp = get(proxy.port(), "/cart", [("Cookie", f"other=x{i}; trellis-affinity={value}")])
        ports.add(served_port(resp))
        assert not resp.header_values("set-cookie"), \
            f"request {i} carried the cookie but got Set-Cookie {resp.header_values('set-cookie')}"
    assert ports == {home}, f"requests with trellis-affinity={value} served by {ports}; the first by {home}"

    # Each new client gets its own value, so new clients still spread.
    newcomers = [get(proxy.port(), "/cart") for _ in range(30)]
    cookies = [COOKIE.fullmatch(r.header("set-cookie") or "") for r in newcomers]
    assert all(cookies) and len({m[1] for m in cookies}) == 30, \
        f"30 new clients got Set-Cookie {[r.header('set-cookie') for r in newcomers]}"
    assert len({served_port(r) for r in newcomers}) > 1, "30 new clients all landed on one instance"


def test_source_ip_hash_keeps_a_client_on_one_instance(fleet, three):
    proxy = fleet.proxy(lb_config(endpoints_of(three), lb_policy="maglev", hash={"source_ip": True}))
    ports = collections.Counter(served_port(get(proxy.port(), f"/src/{i}")) for i in range(30))
    assert len(ports) == 1, f"30 connections from 127.0.0.1 served by {dict(ports)}"


# ---------------------------------------------------------------- locality


def zoned_config(three, zone: str, weights=None, min_healthy_percent: int = 70) -> dict:
    config = lb_config(endpoints_of(three, weights=weights, zones=["a", "a", "b"]), lb_policy="round_robin",
                       locality={"min_healthy_percent": min_healthy_percent})
    config["zone"] = zone
    return config


def test_locality_keeps_traffic_in_the_proxys_zone(fleet, three):
    proxy = fleet.proxy(zoned_config(three, "a"))
    counts = spread(proxy.port(), 60)
    a1, a2, b = three.ports
    assert counts == {a1: 30, a2: 30}, \
        f"proxy in zone a, endpoints a/a/b: {dict(counts)}; expected only the two zone-a endpoints, 30 each"


def test_locality_uses_other_zones_when_its_own_has_no_endpoint(fleet, three):
    proxy = fleet.proxy(zoned_config(three, "c"))
    counts = spread(proxy.port(), 60)
    assert counts == {p: 20 for p in three.ports}, \
        f"proxy in zone c, endpoints in zones a/a/b: {dict(counts)}; expected all three, 20 each"


def test_locality_spills_over_below_min_healthy_percent(fleet, three):
    # Health checking does not exist yet; weight 0 is the one way to take a
    # local endpoint out of rotation: half of zone a is then usable, against
    # a threshold of 100%, so half of the traffic should leave the zone.
    config = zoned_config(three, "a", weights=[0, 1, 1], min_healthy_percent=100)
    for listener in config["listeners"]:
        listener["address"] = "127.0.0.1:1"
    config["admin"]["address"] = "127.0.0.1:2"
    check = validate_config(fleet.subdir("validate"), config)
    output = check.stdout.decode() + check.stderr.decode()
    if check.returncode != 0 and "endpoints[0].weight" in output:
        pytest.skip(f"endpoint weight 0 not accepted, so min_healthy_percent is not testable without "
                    f"health checks: {output}")
    proxy = fleet.proxy(zoned_config(three, "a", weights=[0, 1, 1], min_healthy_percent=100))
    n = 600
    counts = spread(proxy.port(), n)
    out, a2, b = three.ports
    assert counts[out] == 0, f"an endpoint of weight 0 served {counts[out]} requests"
    assert within(counts[a2], n, 0.5) and counts[a2] + counts[b] == n, \
        f"half of zone a usable, min_healthy_percent 100, {n} requests: {dict(counts)}; " \
        f"expected about half local ({a2}) and half to zone b ({b})"


# -------------------------------------------------------------- slow start
# Slow start ramps on simulated time: tests/unit/proxy/upstream/cluster_test.cc.
