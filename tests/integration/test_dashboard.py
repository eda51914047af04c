"""The web dashboard trellis-control serves, in a real browser (headless
Chromium): a user signs in with a read-only token and sees the services
with their golden metrics, the topology of who calls whom, the proxies'
configuration state and what `trellis check` finds; every number compared
with what the proxies counted."""

import json
import os
import ssl
import urllib.request
from pathlib import Path

import pytest

from browser import Browser, spki_sha256
from harness import LOCALHOST, SOURCE_DIR, call, free_port, http_response, http_responder, sidecar_config, wait_until

DETAILS_OK, DETAILS_FAILED, RATINGS_OK, DENIED = 30, 10, 5, 4


def app(req) -> bytes:
    return http_response(503 if req.target.startswith("/fail") else 200, b"hello\n")


@pytest.fixture
def mesh(fleet):
    """productpage calls details and ratings; reviews calls ratings, which
    refuses it its /private/ paths."""
    control = fleet.control_plane()
    sidecars = {}
    for service in ("details", "ratings"):
        upstream = fleet.upstream(http_responder(app))
        sidecars[service] = fleet.proxy(sidecar_config(control, service, instance={
            "address": f"{LOCALHOST}:{free_port()}", "app_address": upstream.address}))
    productpage, reviews = free_port(), free_port()
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=productpage,
                               upstream_services=["details", "ratings"]))
    fleet.proxy(sidecar_config(control, "reviews", outbound_port=reviews, upstream_services=["ratings"]))
    assert control.apply({"apiVersion": "trellis.dev/v1alpha1", "kind": "AuthorizationPolicy",
                          "metadata": {"name": "no-private", "namespace": "default"},
                          "spec": {"targetRef": {"kind": "Service", "name": "ratings"}, "action": "DENY",
                                   "rules": [{"to": [{"paths": ["/private/*"]}]}]}})[0] == 201
    assert wait_until(lambda: call(reviews, "/private/x", host="ratings")[0] == 403, 15), "policy never applied"
    assert wait_until(lambda: call(productpage, "/", host="details")[0] == 200, 10)
    assert call(productpage, "/", host="ratings")[0] == 200
    # The readiness calls above count too: the numbers below are made after
    # the page shows what came before them.
    return control, productpage, reviews, sidecars["details"]


def read_only_token(control) -> str:
    status, body = control.request("POST", "/v1/tokens", {"kind": "read-only", "description": "dashboard test"})
    assert status == 201, body
    return body["secret"]


@pytest.fixture
def browser(mesh):
    control = mesh[0]
    b = Browser(trusted_spki=spki_sha256(LOCALHOST, control.http_port))
    yield b
    b.close()


ROWS = """(sel, attrs) => [...document.querySelectorAll(sel)].map(tr => Object.fromEntries(
    [['cells', [...tr.cells].map(c => c.textContent)], ...attrs.map(a => [a, tr.getAttribute('data-' + a)])]))"""


def table(b: Browser, tbody: str, *attrs: str) -> list[dict]:
    return b.evaluate(f"({ROWS})('#{tbody} tr', {list(attrs)!r})")


def readings(b: Browser) -> int:
    return int(b.evaluate("document.body.dataset.readings || '0'"))


def test_dashboard_shows_the_mesh_as_the_proxies_count_it(mesh, browser):
    control, productpage, reviews, details_sidecar = mesh
    b = browser
    b.open(f"{control.api}/ui/#token={read_only_token(control)}")
    b.wait_for("document.body.dataset.readings >= 1")
    # The token left the address as soon as the page took it.
    assert "token" not in b.evaluate("location.href")
    assert b.evaluate("document.getElementById('sign-in').hidden") is True
    baseline = {r["service"]: int(r["requests"]) for r in table(b, "service-rows", "service", "requests")}

    for _ in range(DETAILS_OK):
        assert call(productpage, "/ok", host="details")[0] == 200
    for _ in range(DETAILS_FAILED):
        assert call(productpage, "/fail", host="details")[0] == 503
    for _ in range(RATINGS_OK):
        assert call(productpage, "/ok", host="ratings")[0] == 200
    for _ in range(DENIED):
        assert call(reviews, "/private/y", host="ratings")[0] == 403
    seen = readings(b)
    b.wait_for(f"document.body.dataset.readings >= {seen + 1}", 20)

    # Services: totals since the proxies started, instances from the registry.
    services = {r["service"]: r for r in table(b, "service-rows", "service", "requests", "failures")}
    assert set(services) == {"default/details", "default/ratings", "default/productpage", "default/reviews"}
    details, ratings = services["default/details"], services["default/ratings"]
    assert int(details["requests"]) - baseline["default/details"] == DETAILS_OK + DETAILS_FAILED
    assert int(ratings["requests"]) - baseline["default/ratings"] == RATINGS_OK + DENIED
    assert int(details["failures"]) == DETAILS_FAILED
    assert details["cells"][:3] == ["default", "details", "1"]
    assert details["cells"][9] in ("100.00%", "-")  # every request sidecar to sidecar: mutual TLS

    # The numbers match what trellis-control gathers from the proxies.
    golden = control.request("GET", "/v1/golden")[1]
    inbound = [s for p in golden["proxies"] for s in p.get("series", []) if s["direction"] == "inbound"]

    def counted(source: str, destination: str) -> int:
        return sum(s["success"] + s["failure"] for s in inbound
                   if s["source_service"] == source and s["destination_service"] == destination)

    # Topology: the nodes and edges of who called whom, with their totals.
    b.evaluate("location.hash = '#topology'")
    b.wait_for("!document.getElementById('topology').hidden")
    nodes = set(b.evaluate("[...document.querySelectorAll('#graph [data-node]')].map(n => n.dataset.node)"))
    assert nodes == {"default/details", "default/ratings", "default/productpage", "default/reviews"}
    drawn = {e["edge"]: int(e["requests"]) for e in b.evaluate(
        "[...document.querySelectorAll('#graph [data-edge]')].map(e => ({edge: e.dataset.edge, "
        "requests: e.dataset.requests}))")}
    listed = {r["edge"]: int(r["requests"]) for r in table(b, "edge-rows", "edge", "requests")}
    expected = {f"default/{s} -> default/{d}": counted(s, d)
                for s, d in [("productpage", "details"), ("productpage", "ratings"), ("reviews", "ratings")]}
    assert drawn == listed == expected, (drawn, listed, expected)
    assert expected["default/reviews -> default/ratings"] >= DENIED

    # Errors and denials: the 503s and the 403s by who got them.
    errors = {(r["edge"], r["status"]): int(r["count"]) for r in table(b, "error-rows", "edge", "status", "count")}
    answered = {}
    for s in inbound:
        for code, n in s["status_codes"].items():
            if int(code) >= 400 or code == "0":
                key = (f"default/{s['source_service']} -> default/{s['destination_service']}", code)
                answered[key] = answered.get(key, 0) + n
    assert errors == answered, (errors, answered)
    assert errors[("default/productpage -> default/details", "503")] == DETAILS_FAILED
    assert errors[("default/reviews -> default/ratings", "403")] >= DENIED

    # Proxies: every one connected and in sync, with its identity.
    proxies = {r["node"]: r for r in table(b, "proxy-rows", "node", "sync")}
    assert set(proxies) == {"details-1", "ratings-1", "productpage-1", "reviews-1"}
    assert {r["sync"] for r in proxies.values()} == {"in-sync"}
    assert proxies["details-1"]["cells"][2].endswith("/ns/default/sa/details")
    # A proxy's configuration, as it has it in force.
    b.evaluate("[...document.querySelectorAll('#proxy-rows tr')].find(tr => tr.dataset.node === 'details-1')"
               ".querySelector('button').click()")
    shown = b.wait_for("(t => t.startsWith('{') && t)(document.getElementById('proxy-config-body').textContent)")
    assert json.loads(shown) == details_sidecar.config_dump()

    # Problems: what trellis check says, here about a route to nowhere.
    assert control.apply({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                          "metadata": {"name": "to-ghost"},
                          "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "details"}],
                                   "rules": [{"backendRefs": [{"name": "ghost", "port": 80}]}]}})[0] == 201
    seen = readings(b)
    b.wait_for(f"document.body.dataset.readings >= {seen + 1}", 20)
    findings = control.request("GET", "/v1/check")[1]["findings"]
    assert ("error", "HTTPRoute default/to-ghost", "spec.rules[0].backendRefs[0]") in {
        (f["severity"], f["resource"], f["field"]) for f in findings}
    shown = [r["cells"] for r in table(b, "problem-rows", "severity")]
    assert shown == [[f["severity"], f["resource"], f["field"] or "-", f["message"]] for f in findings]
    assert b.evaluate("document.getElementById('problem-count').textContent") == f"({len(findings)})"

    if os.environ.get("TRELLIS_SCREENSHOTS"):
        shots = Path(os.environ["TRELLIS_SCREENSHOTS"])
        for view in ("services", "topology", "proxies", "problems"):
            b.evaluate(f"location.hash = '#{view}'")
            b.wait_for(f"!document.getElementById('{view}').hidden")
            b.screenshot(shots / f"dashboard-{view}.png")
    assert not b.console, b.console


def test_dashboard_asks_for_a_token_and_refuses_a_wrong_one(mesh, browser):
    control = mesh[0]
    b = browser
    b.open(f"{control.api}/ui/")
    b.wait_for("!document.getElementById('sign-in').hidden")
    assert b.evaluate("document.getElementById('services').hidden") is True
    b.evaluate("document.getElementById('token').value = 'not-a-token'; "
               "document.getElementById('sign-in').requestSubmit()")
    message = b.wait_for("document.getElementById('sign-in-error').textContent")
    assert "refused" in message
    assert b.evaluate("sessionStorage.getItem('trellis-token')") is None

    b.evaluate(f"document.getElementById('token').value = '{read_only_token(control)}'; "
               "document.getElementById('sign-in').requestSubmit()")
    b.wait_for("document.body.dataset.readings >= 1")
    assert b.evaluate("document.getElementById('token').value") == ""


def test_dashboard_files_are_served_with_a_strict_policy(mesh):
    control = mesh[0]
    context = ssl.create_default_context(cafile=str(control.trust_bundle))
    with urllib.request.urlopen(f"{control.api}/ui/", context=context, timeout=5) as resp:
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        page = resp.read().decode()
    # What the page loads is what the repository holds, byte for byte.
    for name in ("app.js", "style.css"):
        assert name in page
        with urllib.request.urlopen(f"{control.api}/ui/{name}", context=context, timeout=5) as resp:
            assert resp.read() == (SOURCE_DIR / "src" / "control" / "ui" / name).read_bytes()
    # The files are public; the data is not.
    assert control.request("GET", "/v1/golden", token=None)[0] == 401
    assert control.request("GET", "/ui/missing.js")[0] == 404
