"""trellis-control with real proxies: registration and routing, TTL expiry,
refused resources, NACKs, an outage of the control plane under load, and a
restart that keeps every piece of state."""

import http.client
import signal
import threading
import time

import pytest

from harness import LOCALHOST, free_port, sidecar_config, wait_until, cluster

HELLO = b"hello world\n"


def get_via(port: int, host: str, path: str = "/hello") -> tuple[int, bytes]:
    try:
        conn = http.client.HTTPConnection(LOCALHOST, port, timeout=3)
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, body
    except OSError:
        return 0, b""


def wait_for(port: int, host: str, status: int = 200, timeout: float = 10) -> tuple[int, bytes]:
    last = [(0, b"")]

    def ok():
        last[0] = get_via(port, host)
        return last[0][0] == status

    wait_until(ok, timeout)
    return last[0]


@pytest.fixture
def mesh(fleet, nginx):
    """productpage calls details; details is nginx behind its own sidecar."""
    control = fleet.control_plane()
    details_port = free_port()
    details = fleet.proxy(sidecar_config(
        control, "details", instance={"address": f"{LOCALHOST}:{details_port}",
                                      "app_address": nginx.address(0), "ttl": "2s"}))
    outbound = free_port()
    product = fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound,
                                         upstream_services=["details"]))
    status, body = wait_for(outbound, "details")
    assert (status, body) == (200, HELLO), f"productpage -> details through the mesh gave {status} {body!r}"
    return control, details, product, outbound


def test_registered_service_is_routed_through_both_sidecars(mesh):
    control, details, product, outbound = mesh
    # Any of the service's names works, and the Host port is ignored.
    for host in ("details.default", "details.default.svc.cluster.local", "details:9080"):
        status, body = get_via(outbound, host)
        assert (status, body) == (200, HELLO), f"Host {host}: {status} {body!r}"
    assert get_via(outbound, "unknown-service")[0] == 404
    st = control.status()
    nodes = {p["node_id"]: p for p in st["proxies"]}
    assert set(nodes) == {"details-1", "productpage-1"}, st
    assert all(p["in_sync"] for p in nodes.values()), f"proxies not in sync: {st}"
    _, instances = control.request("GET", "/v1/registry/services/default/details/instances")
    assert [i["id"] for i in instances["instances"]] == ["details-1"], instances


def test_scoping_sends_a_proxy_only_what_it_calls(fleet, nginx):
    control = fleet.control_plane()
    for name in ("details", "reviews", "ratings", "unrelated"):
        control.register(name, nginx.address(0), ttl_seconds=60)
    outbound = free_port()
    product = fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound,
                                         upstream_services=["details"]))
    wait_for(outbound, "details")
    dump = product.config_dump()
    assert sorted(c["name"] for c in dump["clusters"]) == ["details.default"], dump["clusters"]


def test_policies_are_distributed_to_the_proxies_they_concern(fleet, nginx):
    control = fleet.control_plane()
    control.register("details", nginx.address(0), ttl_seconds=60)
    outbound = free_port()
    product = fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound,
                                         upstream_services=["details"]))
    wait_for(outbound, "details")
    dest = {"apiVersion": "trellis.dev/v1alpha1", "kind": "DestinationPolicy", "metadata": {"name": "details"},
            "spec": {"targetRef": {"kind": "Service", "name": "details"},
                     "connectionPool": {"connectTimeout": "250ms"}}}
    unrelated = {"apiVersion": "trellis.dev/v1alpha1", "kind": "DestinationPolicy", "metadata": {"name": "other"},
                 "spec": {"targetRef": {"kind": "Service", "name": "other"}}}
    for r in (dest, unrelated):
        status, body = control.apply(r)
        assert status == 201, body

    def policies():
        return {(p["kind"], p["name"]) for p in product.config_dump().get("policies", [])}

    assert wait_until(lambda: ("DestinationPolicy", "details") in policies(), 5), product.config_dump()
    assert ("DestinationPolicy", "other") not in policies(), "a policy for a service it does not call reached it"
    [details] = [c for c in product.config_dump()["clusters"] if c["name"] == "details.default"]
    assert details["connect_timeout"] == "250ms", details
    assert control.request("DELETE", "/v1/resources/destinationpolicies/default/details")[0] == 200
    assert wait_until(lambda: ("DestinationPolicy", "details") not in policies(), 5), "a deleted policy stayed"
    st = control.proxy_status("productpage-1")
    assert st["in_sync"], st


def test_fault_injection_changes_reach_the_proxies_whose_routes_name_them(fleet, nginx):
    control = fleet.control_plane()
    control.register("details", nginx.address(0), ttl_seconds=60)
    outbound = free_port()
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound, upstream_services=["details"]))
    wait_for(outbound, "details")
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "chaos"},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "details"}],
                      "rules": [{"filters": [{"type": "ExtensionRef", "extensionRef": {
                                    "group": "trellis.dev", "kind": "FaultInjection", "name": "flaky"}}],
                                 "backendRefs": [{"name": "details", "port": 9080}]}]}}
    fault = {"apiVersion": "trellis.dev/v1alpha1", "kind": "FaultInjection", "metadata": {"name": "flaky"},
             "spec": {"abort": {"httpStatus": 503, "percent": 10}}}
    unrelated = {"apiVersion": "trellis.dev/v1alpha1", "kind": "FaultInjection", "metadata": {"name": "other"},
                 "spec": {"delay": {"fixedDelay": "1s"}}}

    def sent() -> int:
        return control.proxy_status("productpage-1")["sent_version"]

    def pushed_after(change) -> None:
        before = sent()
        status, body = change()
        assert status in (200, 201), body
        assert wait_until(lambda: sent() > before, 5), f"no push after the change: {control.status()}"

    pushed_after(lambda: control.apply(route))
    pushed_after(lambda: control.apply(fault))  # the rule's fault appears
    fault["spec"]["abort"]["httpStatus"] = 504
    pushed_after(lambda: control.apply(fault))
    pushed_after(lambda: control.request("DELETE", "/v1/resources/faultinjections/default/flaky"))
    before = sent()
    assert control.apply(unrelated)[0] == 201
    revision = control.status()["revision"]
    # Once a push went out from this revision, the proxy has whatever it got.
    assert wait_until(lambda: control.status()["pushed_revision"] >= revision, 5), control.status()
    assert sent() == before, "a FaultInjection no route names changed the proxy's config"


def test_ttl_expiry_removes_the_endpoint_from_proxies(fleet, nginx):
    control = fleet.control_plane()
    control.register("ratings", nginx.address(0), ttl_seconds=1)
    outbound = free_port()
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound, upstream_services=["ratings"]))
    assert wait_for(outbound, "ratings")[0] == 200
    # No heartbeat comes: within its TTL (and the one-second sweep) it is gone.
    status, body = wait_for(outbound, "ratings", status=503, timeout=6)
    assert status == 503 and b"no healthy upstream" in body, f"after the TTL: {status} {body!r}"
    _, instances = control.request("GET", "/v1/registry/services/default/ratings/instances")
    assert instances["instances"] == [], instances


def test_a_sidecar_that_dies_is_removed_after_its_ttl(mesh):
    control, details, product, outbound = mesh
    details.signal(signal.SIGKILL)
    # First its address refuses connections; once its TTL ran out it is gone.
    last = [(0, b"")]
    wait_until(lambda: b"no healthy upstream" in (last.__setitem__(0, get_via(outbound, "details")) or last[0][1]), 8)
    assert last[0][0] == 503 and b"no healthy upstream" in last[0][1], f"{last[0]}"


def test_bad_resource_is_refused_with_its_field_path(fleet):
    control = fleet.control_plane()
    bad = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "bad"},
           "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
                    "rules": [{"backendRefs": [{"name": "reviews-v1", "port": 9080, "weight": -1}]}]}}
    status, body = control.apply(bad)
    assert status == 400, f"{status} {body}"
    paths = [d["path"] for d in body.get("details", [])]
    assert "spec.rules[0].backendRefs[0].weight" in paths, body
    assert control.request("GET", "/v1/resources/httproutes/default/bad")[0] == 404, "a refused resource was stored"


def test_optimistic_concurrency(fleet):
    control = fleet.control_plane()
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r"}, "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "a", "port": 9080}], "rules": [{"backendRefs": [{"name": "a", "port": 9080}]}]}}
    status, body = control.apply(route)
    assert status == 201, body
    version = body["resource"]["metadata"]["resourceVersion"]
    route["spec"]["rules"][0]["backendRefs"][0]["name"] = "b"
    route["metadata"]["resourceVersion"] = version
    assert control.apply(route)[0] == 200
    route["spec"]["rules"][0]["backendRefs"][0]["name"] = "c"  # still the old version: stale
    status, body = control.apply(route)
    assert status == 409 and "conflict" in body["error"], f"{status} {body}"


def test_nack_keeps_the_last_good_config(fleet, nginx):
    control = fleet.control_plane()
    control.register("reviews", nginx.address(0), ttl_seconds=60)
    control.register("ratings", nginx.address(0), ttl_seconds=60)
    outbound = free_port()
    config = sidecar_config(control, "productpage", outbound_port=outbound, upstream_services=["reviews"])
    # A static cluster with the name the control plane gives ratings: a
    # config that reaches ratings cannot be put in force on this proxy.
    config["clusters"] = [cluster("ratings.default", nginx.address(0))]
    product = fleet.proxy(config)
    assert wait_for(outbound, "reviews")[0] == 200
    good = product.config_dump()
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "to-ratings"},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}], "rules": [{"backendRefs": [{"name": "ratings", "port": 9080}]}]}}
    assert control.apply(route)[0] == 201

    def nacked():
        st = control.proxy_status("productpage-1")
        return st and "nack" in st

    assert wait_until(nacked, 5), f"no NACK shown: {control.status()}"
    st = control.proxy_status("productpage-1")
    assert "ratings.default" in st["nack"]["error"], st
    assert not st["in_sync"], st
    assert product.config_dump() == good, "a refused update changed the config in force"
    assert get_via(outbound, "reviews") == (200, HELLO), "traffic stopped after a refused update"


def test_control_plane_outage_under_load_fails_no_request(mesh):
    control, details, product, outbound = mesh
    results = {"ok": 0, "failed": []}
    stop = threading.Event()

    def client():
        conn = http.client.HTTPConnection(LOCALHOST, outbound, timeout=5)
        while not stop.is_set():
            try:
                conn.request("GET", "/hello", headers={"Host": "details"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200 and body == HELLO:
                    results["ok"] += 1
                else:
                    results["failed"].append((resp.status, body[:80]))
            except OSError as e:
                results["failed"].append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection(LOCALHOST, outbound, timeout=5)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: results["ok"] >= 50, 10), f"no traffic before the outage: {results}"
        assert control.stop(signal.SIGKILL) is not None
        # The fault: an outage longer than the sidecar's TTL (2 s). The proxies
        # keep their last config and traffic keeps flowing.
        down = results["ok"]
        time.sleep(3)
        assert results["ok"] > down, f"traffic stopped in the outage: {results}"
        control.start()
        assert wait_until(lambda: (s := control.proxy_status("productpage-1")) and s["in_sync"], 10), \
            f"proxies did not resync: {control.status()}"
        up = results["ok"]
        assert wait_until(lambda: results["ok"] >= up + 50, 10), f"no traffic after the restart: {results}"
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not results["failed"], f"{len(results['failed'])} failed: {results['failed'][:5]}"
    assert results["ok"] > 200, f"only {results['ok']} requests went through"


def test_restart_recovers_all_state(fleet, nginx):
    control = fleet.control_plane()
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "kept", "labels": {"team": "a"}},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}], "rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}]}}
    _, created = control.apply(route)
    inst = control.register("reviews", nginx.address(0), ttl_seconds=300, labels={"version": "v1"})
    assert control.stop() == 0, "trellis-control did not exit cleanly on SIGTERM"
    control.start()
    status, got = control.request("GET", "/v1/resources/httproutes/default/kept")
    assert status == 200, got
    assert got.pop("status")["parents"][0]["conditions"][0]["type"] == "Accepted", "a route is shown with its status"
    assert got == created["resource"], f"resource changed across a restart: {got} vs {created['resource']}"
    _, instances = control.request("GET", "/v1/registry/services/default/reviews/instances")
    assert [(i["id"], i["labels"]) for i in instances["instances"]] == [(inst["id"], {"version": "v1"})], instances
