"""Route matching (headers, method, query parameters, regular-expression paths,
hosts, order), header changes both ways, URL rewrites, redirects and weighted
traffic splits."""

import collections
import re

import pytest

from harness import (
    HttpClient, build_request, cluster, get, http_listener, http_response, http_responder, named_responder,
    pipelined, proxy_config, route, vhost,
)


@pytest.fixture
def abc(fleet) -> dict:
    """Upstreams "a", "b" and "c", each answering with its own name."""
    return {name: fleet.upstream(named_responder(name)) for name in "abc"}


def routed(fleet, upstreams: dict, routes: list[dict]):
    """A proxy with one cluster per upstream (named alike) and these routes."""
    clusters = [cluster(name, u) for name, u in upstreams.items()]
    return fleet.proxy(proxy_config([http_listener("web", routes)], clusters))


def who(proxy, target: str = "/", headers=(), host: str = "localhost", method: str = "GET",
        body: bytes | None = None) -> str:
    """Which upstream served the request; "404" when no route matched."""
    resp = get(proxy.port(), target, headers, host=host, method=method, body=body)
    if resp.status == 404:
        return "404"
    assert resp.status == 200, f"{method} {target} {headers}: got {resp}"
    return resp.text()


def check(cases: dict, got: dict, what: str) -> None:
    wrong = {k: (got[k], v) for k, v in cases.items() if got[k] != v}
    assert not wrong, f"{what}: (served, expected) for each mismatch: {wrong}"


def match(**fields) -> dict:
    return {"prefix": "/", **fields}


# ----------------------------------------------------------------- matching


def test_header_exact_and_regex_match(fleet, abc):
    proxy = routed(fleet, abc, [
        route("a", match=match(headers=[{"name": "x-env", "value": "canary"}])),
        route("b", match=match(headers=[{"name": "x-user", "regex": "user-[0-9]+"}])),
        route("c")])
    cases = {
        (("X-Env", "canary"),): "a",
        (("X-ENV", "canary"),): "a",          # names are case-insensitive
        (("X-Env", "Canary"),): "c",          # values are not
        (("X-Env", "canary-2"),): "c",
        (("X-User", "user-42"),): "b",
        (("X-User", "user-42x"),): "c",       # a regex must match the whole value
        (("X-User", "xuser-42"),): "c",
        (): "c",
    }
    check(cases, {h: who(proxy, "/h", list(h)) for h in cases}, "header match")


def test_method_match(fleet, abc):
    proxy = routed(fleet, abc, [route("a", match=match(method="POST")), route("b")])
    got = {m: who(proxy, "/m", method=m, body=b"x" if m in ("POST", "PUT") else None)
           for m in ("POST", "GET", "PUT", "DELETE")}
    check({"POST": "a", "GET": "b", "PUT": "b", "DELETE": "b"}, got, "method match")


def test_query_parameter_match(fleet, abc):
    proxy = routed(fleet, abc, [
        route("a", match=match(query_params=[{"name": "version", "value": "2"}])),
        route("b", match=match(query_params=[{"name": "id", "regex": "[0-9]+"}])),
        route("c")])
    cases = {"/q?version=2": "a", "/q?x=1&version=2": "a", "/q?version=20": "c", "/q?Version=2": "c",
             "/q?id=123": "b", "/q?id=12a": "c", "/q": "c", "/q?": "c"}
    check(cases, {t: who(proxy, t) for t in cases}, "query parameter match")


def test_regex_path_match_and_fall_through(fleet, abc):
    proxy = routed(fleet, abc, [route("a", match={"regex": "/items/[0-9]+"}), route("b", prefix="/items"),
                                route("c")])
    cases = {"/items/42": "a", "/items/42?view=full": "a", "/items/abc": "b", "/items/42/reviews": "b",
             "/shop/items/42": "c", "/items": "b"}
    check(cases, {t: who(proxy, t) for t in cases}, "regex path match")


def test_hosts_match(fleet, abc):
    proxy = routed(fleet, abc, [route("a", match=match(hosts=["api.example", "*.wild.example"])), route("b")])
    cases = {"api.example": "a", "API.Example": "a", "api.example:8080": "a", "x.wild.example": "a",
             "deep.x.wild.example": "a", "wild.example": "b", "api.example.org": "b", "other.example": "b"}
    check(cases, {h: who(proxy, "/", host=h) for h in cases}, "hosts match")


def test_routes_are_tried_in_order_first_match_wins(fleet, abc):
    proxy = routed(fleet, abc, [
        route("a", prefix="/api"),
        route("b", exact="/api/special"),                                # shadowed by the route above
        route("b", match={"prefix": "/", "headers": [{"name": "x-vip", "value": "1"}]}),
        route("c", prefix="/")])
    cases = {("/api/special", ()): "a", ("/api", (("X-Vip", "1"),)): "a", ("/other", (("X-Vip", "1"),)): "b",
             ("/other", ()): "c"}
    check(cases, {(t, h): who(proxy, t, list(h)) for t, h in cases}, "route order")


def test_no_matching_route_is_404_no_route(fleet, abc):
    proxy = routed(fleet, abc, [route("a", match=match(headers=[{"name": "x-env", "value": "canary"}]))])
    resp = get(proxy.port(), "/anything")
    assert resp.status == 404 and "no route" in resp.text(), f"request no route matches: got {resp}"
    assert who(proxy, "/anything", [("X-Env", "canary")]) == "a"
    seen = [r.header("x-env") for r in abc["a"].requests()]
    assert seen == ["canary"], f"upstream saw requests with x-env {seen}; the unrouted one must not reach it"


# ------------------------------------------------------------ header changes


def test_request_headers_set_add_remove_reach_the_upstream(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("web", request_headers={
        "set": {"X-Set": "new"}, "add": {"X-Add": "added"}, "remove": ["X-Remove"]})])],
        [cluster("web", upstream)]))
    resp = get(proxy.port(), "/mod", [("X-Set", "old"), ("X-Add", "original"), ("X-Remove", "1"),
                                      ("X-Set-Too", "kept")])
    assert resp.status == 200, f"got {resp}"
    [req] = upstream.requests()
    assert req.header_values("x-set") == ["new"], f"set: upstream got {req.headers}"
    assert sorted(req.header_values("x-add")) == ["added", "original"], f"add: upstream got {req.headers}"
    assert "x-remove" not in req.names(), f"remove: upstream got {req.headers}"
    assert req.header("x-set-too") == "kept", f"an unrelated header changed: {req.headers}"
    # set also creates a header the client did not send
    get(proxy.port(), "/mod-bare")
    [req] = [r for r in upstream.requests() if r.target == "/mod-bare"]
    assert req.header_values("x-set") == ["new"] and req.header_values("x-add") == ["added"], \
        f"request without the headers: upstream got {req.headers}"


def test_response_headers_set_add_remove_reach_the_client(fleet):
    answer = http_response(200, b"ok", [("X-Set", "old"), ("X-Add", "original"), ("X-Remove", "1"),
                                        ("X-Other", "kept")])
    upstream = fleet.upstream(http_responder(answer))
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("web", response_headers={
        "set": {"X-Set": "new"}, "add": {"X-Add": "added"}, "remove": ["X-Remove"]})])],
        [cluster("web", upstream)]))
    resp = get(proxy.port(), "/mod")
    assert resp.status == 200 and resp.body == b"ok", f"got {resp}"
    assert resp.header_values("x-set") == ["new"], f"set: client got {resp.headers}"
    assert sorted(resp.header_values("x-add")) == ["added", "original"], f"add: client got {resp.headers}"
    assert "x-remove" not in resp.names(), f"remove: client got {resp.headers}"
    assert resp.header("x-other") == "kept", f"an unrelated header changed: {resp.headers}"


# -------------------------------------------------------------------- rewrite


def test_url_rewrite_of_hostname_and_path(fleet):
    upstream = fleet.upstream()
    routes = [
        route("web", prefix="/host", rewrite={"hostname": "internal.example"}),
        route("web", prefix="/old", rewrite={"path": {"full": "/new"}}),
        route("web", prefix="/v1/reviews", rewrite={"path": {"prefix": "/reviews"}}),
        route("web", prefix="/api", rewrite={"path": {"prefix": "/"}}),
    ]
    proxy = fleet.proxy(proxy_config([http_listener("web", routes)], [cluster("web", upstream)]))
    cases = {"/host/x?q=1": ("/host/x?q=1", "internal.example"),
             "/old/thing?q=1": ("/new?q=1", "public.example"),
             "/v1/reviews/7?q=1&r=2": ("/reviews/7?q=1&r=2", "public.example"),
             "/v1/reviews": ("/reviews", "public.example"),
             "/api/users?q=1": ("/users?q=1", "public.example")}
    got = {}
    for target in cases:
        resp = get(proxy.port(), target, [("X-Case", target)], host="public.example")
        assert resp.status == 200, f"{target}: got {resp}"
        [req] = [r for r in upstream.requests() if r.header("x-case") == target]
        got[target] = (req.target, req.header("host"))
    check(cases, got, "rewrite: upstream (target, Host)")


# ------------------------------------------------------------------- redirect


def test_redirects_status_and_location(fleet):
    upstream = fleet.upstream()
    redirects = {
        "/to-https": {"scheme": "https", "status": 301},
        "/to-host": {"hostname": "new.example", "status": 302},
        "/to-port": {"port": 8443, "status": 307},
        "/to-https-port": {"scheme": "https", "port": 8443, "status": 301},
        "/to-login": {"path": {"full": "/login"}, "status": 302},
    }
    routes = [route(None, exact=path, redirect=r) for path, r in redirects.items()]
    routes.append(route(None, prefix="/old", redirect={"path": {"prefix": "/new"}, "status": 308}))
    proxy = fleet.proxy(proxy_config([http_listener("web", routes)], [cluster("web", upstream)]))
    host = f"shop.example:{proxy.port()}"
    cases = {
        "/to-https?q=1": (301, "https://shop.example/to-https?q=1"),  # the old port goes with the old scheme
        "/to-host?q=1": (302, f"http://new.example:{proxy.port()}/to-host?q=1"),
        "/to-port?q=1": (307, "http://shop.example:8443/to-port?q=1"),
        "/to-https-port": (301, "https://shop.example:8443/to-https-port"),
        "/to-login?next=%2Fcart": (302, f"http://{host}/login?next=%2Fcart"),
        "/old/a/b?q=1": (308, f"http://{host}/new/a/b?q=1"),
    }
    got = {}
    for target in cases:
        resp = get(proxy.port(), target, host=host)
        got[target] = (resp.status, resp.header("location"))
    check(cases, got, "redirect (status, Location)")
    assert not upstream.requests(), f"a redirected request reached the upstream: {upstream.requests()}"


# ------------------------------------------------------------- traffic split


@pytest.fixture
def three(fleet):
    return fleet.nginx(ports=3)


def split_config(three, backends: list[dict], canary: bool = False) -> dict:
    routes = []
    if canary:
        routes.append(route("c", match=match(headers=[{"name": "x-canary", "value": "always"}])))
    routes.append(route(None, backends=backends))
    clusters = [cluster(name, three.address(i)) for i, name in enumerate("abc")]
    return proxy_config([http_listener("web", routes)], clusters)


def served_counts(three, port: int, n: int, headers=()) -> collections.Counter:
    """Cluster name ("a", "b", "c") -> requests it served, out of `n` on one connection."""
    name_of = dict(zip(three.ports, "abc"))
    with HttpClient(port) as client:
        responses = pipelined(client, [build_request("GET", "/split", headers)] * n)
    counts = collections.Counter()
    for r in responses:
        assert r.status == 200, f"got {r}"
        counts[name_of[int(re.search(r"port=(\d+)", r.text())[1])]] += 1
    return counts


def test_traffic_split_90_10(fleet, three):
    proxy = fleet.proxy(split_config(three, [{"cluster": "a", "weight": 90}, {"cluster": "b", "weight": 10}],
                                     canary=True))
    n = 10_000
    counts = served_counts(three, proxy.port(), n)
    assert counts["c"] == 0, f"the canary route took requests without its header: {dict(counts)}"
    assert abs(counts["a"] / n - 0.9) <= 0.02, f"90/10 split over {n} requests: {dict(counts)}"


def test_header_canary_route_before_the_split_takes_its_requests(fleet, three):
    proxy = fleet.proxy(split_config(three, [{"cluster": "a", "weight": 90}, {"cluster": "b", "weight": 10}],
                                     canary=True))
    counts = served_counts(three, proxy.port(), 200, [("X-Canary", "always")])
    assert counts == {"c": 200}, f"200 requests with X-Canary: always: {dict(counts)}"


def test_backend_of_weight_zero_gets_nothing(fleet, three):
    proxy = fleet.proxy(split_config(three, [{"cluster": "a", "weight": 1}, {"cluster": "b", "weight": 0}]))
    counts = served_counts(three, proxy.port(), 500)
    assert counts == {"a": 500}, f"split a:1, b:0 over 500 requests: {dict(counts)}"


def test_backend_header_changes_apply_to_their_backend_only(fleet, abc):
    backends = [{"cluster": name, "weight": 1,
                 "request_headers": {"set": {"x-backend": name}},
                 "response_headers": {"set": {"x-served-by": name}}} for name in "ab"]
    proxy = routed(fleet, abc, [route(None, backends=backends)])
    seen = collections.Counter()
    for i in range(40):
        resp = get(proxy.port(), f"/b/{i}")
        assert resp.status == 200, f"got {resp}"
        assert resp.header_values("x-served-by") == [resp.text()], \
            f"response from {resp.text()} carries x-served-by {resp.header_values('x-served-by')}"
        seen[resp.text()] += 1
    assert set(seen) == {"a", "b"}, f"40 requests split 1:1 all went to {dict(seen)}"
    for name in "ab":
        values = {tuple(r.header_values("x-backend")) for r in abc[name].requests()}
        assert values == {(name,)}, f"upstream {name} saw x-backend values {values}"
