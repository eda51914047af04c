"""AuthorizationPolicy enforced by real sidecars: resources applied to
trellis-control reach the inbound sidecar of the Service they target, which
answers refused requests 403 naming the policy (never forwarding them),
judges normalized paths, counts every decision and logs refusals; a static
TCP listener closes refused connections at accept."""

import json
import re
import socket
from pathlib import Path

import pytest
import yaml

from harness import (LOCALHOST, SOURCE_DIR, cluster, free_port, metric, proxy_config, sidecar_config, tcp_listener,
                     wait_until)
from harness import call as harness_call

HELLO = b"hello world\n"


def call(port: int, path: str, method: str = "GET", host: str = "details") -> tuple[int, bytes]:
    return harness_call(port, path, method, host, timeout=3)


@pytest.fixture
def mesh(fleet, nginx):
    """productpage (outbound) -> details (inbound sidecar in front of nginx)."""
    control = fleet.control_plane()
    details_port = free_port()
    access_log = fleet.dir / "details-access.log"
    details = fleet.proxy(sidecar_config(
        control, "details", instance={"address": f"{LOCALHOST}:{details_port}", "app_address": nginx.address(0)},
        access_log=access_log))
    outbound = free_port()
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound, upstream_services=["details"]))
    assert wait_until(lambda: call(outbound, "/hello")[0] == 200, 10), "no traffic through the mesh"
    return control, details, outbound, details_port, access_log


def policy(name: str, spec: dict, namespace: str = "default") -> dict:
    return {"apiVersion": "trellis.dev/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_policies_are_enforced_by_the_inbound_sidecar(mesh):
    control, details, outbound, details_port, access_log = mesh
    target = {"kind": "Service", "name": "details"}
    assert control.apply(policy("no-admin", {"targetRef": target, "action": "DENY",
                                             "rules": [{"to": [{"paths": ["/admin/*"]}]}]}))[0] == 201
    assert control.apply(policy("readers", {"targetRef": target, "rules": [
        {"from": [{"ipBlocks": ["127.0.0.0/8"]}],
         "to": [{"methods": ["GET", "HEAD"], "paths": ["/hello", "/reviews/*"], "ports": [details_port]}]}]}))[0] == 201
    assert wait_until(lambda: call(outbound, "/hello", "POST")[0] == 403, 10), "the policy never took effect"
    before = details.stats()

    def decisions(stats, policy_name, decision):
        return metric(stats, "trellis_authz_decisions_total", listener="inbound", policy=policy_name,
                      decision=decision)

    assert call(outbound, "/hello") == (200, HELLO)
    status, body = call(outbound, "/hello", "POST")
    assert (status, body) == (403, b"access denied by AuthorizationPolicy default/readers\n")
    status, body = call(outbound, "/admin/x")
    assert (status, body) == (403, b"access denied by AuthorizationPolicy default/no-admin\n")
    assert call(outbound, "/reviews/../admin/x")[0] == 403, "a dot segment does not get past the DENY"
    assert call(outbound, "//admin/x")[0] == 403
    assert call(outbound, "/admin%2Fx")[0] == 400
    status, body = call(outbound, "/x/%2e%2e/reviews/./1")
    assert status == 200 and b"uri=/reviews/1\n" in body, f"the application saw another path: {body!r}"
    assert call(outbound, "/other")[0] == 403, "not in any ALLOW rule"

    stats = details.stats()
    for name, decision, count in (("default/readers", "allow", 2), ("default/readers", "deny", 2),
                                  ("default/no-admin", "deny", 3)):
        assert decisions(stats, name, decision) - decisions(before, name, decision) == count, (name, decision)

    def denials():
        lines = [json.loads(l) for l in Path(access_log).read_text().splitlines()] if Path(access_log).exists() else []
        return [l for l in lines if l.get("denied_by")]

    assert wait_until(lambda: len(denials()) >= 5, 5), f"denials not in the access log: {denials()}"
    assert {l["denied_by"] for l in denials()} == {"AuthorizationPolicy default/readers",
                                                   "AuthorizationPolicy default/no-admin"}
    assert all(l["status"] == 403 for l in denials())

    # Deleting the policies opens the Service again.
    assert control.request("DELETE", "/v1/resources/AuthorizationPolicy/default/readers")[0] == 200
    assert control.request("DELETE", "/v1/resources/AuthorizationPolicy/default/no-admin")[0] == 200
    assert wait_until(lambda: call(outbound, "/other")[0] == 200, 10)


def test_default_deny_closes_every_service_without_an_allow_policy(mesh):
    control, details, outbound, _, _ = mesh
    mesh_config = {"apiVersion": "trellis.dev/v1alpha1", "kind": "MeshConfig", "metadata": {"name": "default"},
                   "spec": {"authorization": {"defaultAction": "DENY"}}}
    assert control.apply(mesh_config)[0] in (200, 201)
    assert wait_until(lambda: call(outbound, "/hello")[0] == 403, 10)
    assert call(outbound, "/hello")[1] == (b"access denied by the default action "
                                           b"(MeshConfig authorization.defaultAction)\n")
    assert control.apply(policy("open", {"targetRef": {"kind": "Service", "name": "details"},
                                         "rules": [{"to": [{"methods": ["GET"]}]}]}))[0] == 201
    assert wait_until(lambda: call(outbound, "/hello")[0] == 200, 10), "an ALLOW policy opens the Service"
    assert call(outbound, "/hello", "DELETE")[0] == 403


def documented_policies() -> list[dict]:
    """Every AuthorizationPolicy written out in docs/resources.md."""
    text = (SOURCE_DIR / "docs/resources.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return [doc for b in blocks for doc in yaml.safe_load_all(b) if doc and doc.get("kind") == "AuthorizationPolicy"]


@pytest.mark.parametrize("source", ["examples/mesh/reviews-authorization.yaml", "docs/resources.md"])
def test_the_documented_example_admits_the_named_identity_only(fleet, nginx, source):
    """examples/mesh/reviews-authorization.yaml allows only the productpage
    identity (and ops by namespace): productpage's sidecar, with the
    certificate the control plane issued it, gets through; a plain-text
    client has no identity, and another service's sidecar has the wrong one."""
    control = fleet.control_plane()
    port = free_port()
    fleet.proxy(sidecar_config(control, "reviews", namespace="bookinfo",
                               instance={"address": f"{LOCALHOST}:{port}", "app_address": nginx.address(0)}))
    if source.endswith(".yaml"):
        examples = [yaml.safe_load((SOURCE_DIR / source).read_text())]
    else:
        examples = documented_policies()
    assert [e["metadata"]["name"] for e in examples] == ["reviews-readers"], "a new example needs its test"
    assert control.apply(examples[0])[0] == 201
    productpage, ratings = free_port(), free_port()
    fleet.proxy(sidecar_config(control, "productpage", namespace="bookinfo", outbound_port=productpage,
                               upstream_services=["reviews"]))
    fleet.proxy(sidecar_config(control, "ratings", namespace="bookinfo", outbound_port=ratings,
                               upstream_services=["reviews"]))
    assert wait_until(lambda: call(port, "/reviews/1", host="reviews")[0] == 403, 10)
    assert call(port, "/reviews/1", host="reviews")[1] == \
        b"access denied by AuthorizationPolicy bookinfo/reviews-readers\n"
    assert wait_until(lambda: call(productpage, "/reviews/1", host="reviews")[0] == 200, 10), \
        call(productpage, "/reviews/1", host="reviews")
    assert call(productpage, "/reviews/1", "DELETE", host="reviews")[0] == 403, "the rule allows GET and HEAD only"
    assert call(ratings, "/reviews/1", host="reviews")[0] == 403, "another identity is refused"


def test_the_demo_policy_lets_productpage_read_details_only(fleet, nginx):
    """examples/demo/mesh.yaml (the quick start): only productpage's identity
    may call details, and only GET and HEAD."""
    control = fleet.control_plane()
    demo = [d for d in yaml.safe_load_all((SOURCE_DIR / "examples/demo/mesh.yaml").read_text())
            if d["kind"] in ("AuthorizationPolicy", "MeshConfig")]
    for resource in demo:
        assert control.apply(resource)[0] == 201, resource["metadata"]["name"]
    port, productpage, reviews = free_port(), free_port(), free_port()
    fleet.proxy(sidecar_config(control, "details",
                               instance={"address": f"{LOCALHOST}:{port}", "app_address": nginx.address(0)}))
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=productpage, upstream_services=["details"]))
    fleet.proxy(sidecar_config(control, "reviews-v1", outbound_port=reviews, upstream_services=["details"]))
    assert wait_until(lambda: call(productpage, "/details/0")[0] == 200, 10)
    assert call(productpage, "/details/0", "DELETE") == \
        (403, b"access denied by AuthorizationPolicy default/details-read-only\n")
    assert call(reviews, "/details/0")[0] == 403, "another identity is refused"
    assert call(port, "/details/0")[0] == 0, "STRICT: plain text is refused"


def test_a_tcp_listener_closes_refused_connections_at_accept(fleet):
    upstream = socket.socket()
    upstream.bind((LOCALHOST, 0))
    upstream.listen(8)
    cfg = proxy_config([tcp_listener("db", "db")], [cluster("db", f"{LOCALHOST}:{upstream.getsockname()[1]}")])
    cfg["listeners"][0]["authorization"] = {"policies": [
        {"name": "data/only-10", "rules": [{"from": [{"ip_blocks": ["10.0.0.0/8"]}]}]}]}
    proxy = fleet.proxy(cfg)
    try:
        client = socket.create_connection((LOCALHOST, proxy.port("db")), timeout=3)
        client.settimeout(3)
        assert client.recv(1) == b"", "a refused connection is closed"
        client.close()
        upstream.settimeout(0.5)
        with pytest.raises(socket.timeout):
            upstream.accept()
        assert metric(proxy.stats(), "trellis_authz_decisions_total", listener="db", policy="data/only-10",
                      decision="deny") == 1
    finally:
        upstream.close()
