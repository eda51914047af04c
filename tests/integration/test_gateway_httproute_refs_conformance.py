"""The Gateway API's HTTPRoute conformance scenarios of the Gateway profile
(conformance/tests/httproute-*), run on mesh routes: each route's parent is
Service echo (port 80) in gateway-conformance-mesh instead of the suite's
Gateway, on the base of test_gateway_conformance.py (GAMMA), with the
requests sent through a client's sidecar.

The suite's infra-backend-v1 and -v2 are echo-v1 and echo-v2 (port 80), its
infra-backend-v3 is echo-v3 (added here), and its backends in other
namespaces (web-backend, app-backend-v1, app-backend-v2) are echo-v1 and
echo-v2 of gateway-conformance-mesh-consumer, with the ReferenceGrants there.
Three more workloads are added here, as the suite's base has them: echo-v3,
whose echo waits as long as the query's `delay` says (the suite's echo does,
this base's does not), so the timeout scenarios send to it; a second
instance of echo-v1 serving only port 8081, in h2c as the suite's
infra-backend-v1 does; and echo-v2 in the consumer namespace.

Each scenario applies the suite's manifests, checks the route's status for
the Service it attaches to (Accepted, ResolvedRefs with the suite's reasons)
and sends the suite's requests, expecting what the suite expects: status,
the request as the workload saw it (path, method, namespace, headers), which
workload answered, and the response's headers. Each case must hold three
times in a row, as the suite's eventually-consistent checks require. All of
a scenario's cases are checked, and the test fails naming each that did not
hold."""

import json
import re
import time
import urllib.parse
from typing import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from harness import LOCALHOST, Peer, free_port, http_responder, http_response, sidecar_config, wait_until
from test_gateway_conformance import (CONSUMER, NS, Answer, GammaMesh, backend, echo_app, gamma,  # noqa: F401
                                      mesh, route)
from test_http2 import h2_request

GRANT_API = "gateway.networking.k8s.io/v1"
CONTROLLER = "trellis.dev/mesh"
ECHO = {"name": "echo", "port": 80}
H2C_PORT = 8081
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def echo_body(pod: str, namespace: str, method: str, path: str, host: str | None,
              headers: list[tuple[str, str]], proto: str) -> bytes:
    seen: dict[str, list[str]] = {}
    for name, value in headers:
        seen.setdefault(name.lower(), []).append(value)
    return json.dumps({"pod": pod, "namespace": namespace, "method": method, "path": path, "host": host,
                       "proto": proto, "headers": seen}).encode()


def go_duration(text: str) -> float:
    """Seconds in a duration as the suite's echo reads `delay` (1s, 500ms, 1.5s), at most 3."""
    units = {"ms": 0.001, "s": 1.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s)", text)
    return min(3.0, sum(float(n) * units[u] for n, u in parts))


def delaying_echo(pod: str, namespace: str):
    """The suite's echo: answers with what it received, after the query's `delay`."""

    def respond(req) -> bytes:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.target).query)
        if "delay" in query:
            time.sleep(go_duration(query["delay"][0]))
        body = echo_body(pod, namespace, req.method, req.target, req.header("host"), req.headers, "HTTP/1.1")
        return http_response(200, body, [("Content-Type", "application/json")])
    return http_responder(respond)


def h2c_echo(pod: str, namespace: str):
    """The suite's h2c port: requests in HTTP/2 with prior knowledge are
    echoed, anything else is answered 400."""

    def respond(conn: h2.connection.H2Connection, stream: int, headers: list[tuple[str, str]]) -> None:
        pseudo = {k: v for k, v in headers if k.startswith(":")}
        body = echo_body(pod, namespace, pseudo.get(":method", ""), pseudo.get(":path", ""),
                         pseudo.get(":authority"), [(k, v) for k, v in headers if not k.startswith(":")],
                         "HTTP/2.0")
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/json"),
                                   ("content-length", str(len(body)))])
        conn.send_data(stream, body, end_stream=True)

    def handler(peer: Peer) -> None:
        data = b""
        while len(data) < len(PREFACE) and PREFACE.startswith(data):
            chunk = peer.recv()
            if not chunk:
                return
            data += chunk
        if not data.startswith(PREFACE):
            peer.send(http_response(400, b"Expected h2c request", [("Connection", "close")]))
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        requests: dict[int, list[tuple[str, str]]] = {}
        while data:
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    requests[event.stream_id] = list(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id in requests:
                    respond(conn, event.stream_id, requests.pop(event.stream_id))
            if not peer.send(conn.data_to_send()):
                return
            data = peer.recv()
    return handler


class InfraBackends:
    """The workloads of the suite's base that GammaMesh has not."""

    def __init__(self, mesh: GammaMesh):
        fleet, control = mesh.fleet, mesh.control

        def workload(service: str, namespace: str, node: str, handler, ports: list[dict]) -> None:
            app = fleet.upstream(handler)
            for p in ports:
                p.setdefault("target_port", app.port)
            fleet.proxy(sidecar_config(control, service, node_id=f"{node}.{namespace}", namespace=namespace,
                                       instance={"address": f"{LOCALHOST}:{free_port()}",
                                                 "app_address": app.address, "ports": ports,
                                                 "labels": {"app": service}}))

        def http_ports() -> list[dict]:
            return [{"name": "http", "port": 80, "protocol": "http"},
                    {"name": "http-alt", "port": 8080, "protocol": "http"}]

        workload("echo-v3", NS, "echo-v3", delaying_echo("echo-v3", NS), http_ports())
        workload("echo-v1", NS, "echo-v1-h2c", h2c_echo("echo-v1", NS),
                 [{"name": "h2c", "port": H2C_PORT, "protocol": "h2c"}])
        workload("echo-v2", CONSUMER, "echo-v2", echo_app("echo-v2", CONSUMER), http_ports())

        def registered() -> bool:
            for namespace, service, count in ((NS, "echo-v3", 1), (NS, "echo-v1", 2), (CONSUMER, "echo-v2", 1)):
                status, body = control.request("GET", f"/v1/registry/services/{namespace}/{service}/instances")
                instances = body.get("instances", body) if isinstance(body, dict) else body
                if status != 200 or not isinstance(instances, list) or len(instances) < count:
                    return False
            return True
        assert wait_until(registered, 20), "the added workloads never registered"
        mesh.settle()


@pytest.fixture(scope="module")
def infra(gamma) -> InfraBackends:
    return InfraBackends(gamma)


# ---- the suite's checks ---------------------------------------------------------

class Cases:
    """A scenario's cases: each is checked, and done() fails naming all that did not hold."""

    def __init__(self):
        self.failed: list[str] = []
        self.passed = 0

    def check(self, name: str, ok: bool, detail: object = "") -> None:
        if ok:
            self.passed += 1
        else:
            self.failed.append(f"{name}: {detail}")

    def done(self) -> None:
        assert not self.failed, (f"{len(self.failed)} of {len(self.failed) + self.passed} cases failed:\n" +
                                 "\n".join(self.failed))


def route_status(mesh: GammaMesh, name: str, namespace: str = NS) -> dict:
    code, body = mesh.control.request("GET", f"/v1/resources/httproutes/{namespace}/{name}")
    return body if code == 200 and isinstance(body, dict) else {}


def parent_status(body: dict, route_namespace: str, parent: str = "echo", parent_namespace: str = NS) -> list[dict]:
    """The route's status entries for Service `parent`, as the suite finds its Gateway's."""
    out = []
    for p in (body.get("status") or {}).get("parents", []):
        ref = p.get("parentRef", {})
        ref_namespace = ref.get("namespace")
        if ref.get("name") != parent or ref.get("group") != "" or ref.get("kind") != "Service":
            continue
        if ref_namespace != parent_namespace and not (ref_namespace is None and route_namespace == parent_namespace):
            continue
        out.append(p)
    return out


def has_condition(p: dict, kind: str, status: str, reason: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == status and c.get("reason") == reason
               for c in p.get("conditions", []))


def must_be_accepted(cases: Cases, mesh: GammaMesh, name: str, namespace: str = NS,
                     parent_namespace: str = NS) -> None:
    """The route has a parent entry for the Service, from Trellis's controller, Accepted."""
    def ok() -> bool:
        return any(p.get("controllerName") == CONTROLLER and has_condition(p, "Accepted", "True", "Accepted")
                   for p in parent_status(route_status(mesh, name, namespace), namespace, "echo", parent_namespace))
    cases.check(f"{namespace}/{name} Accepted", wait_until(ok, 10), route_status(mesh, name, namespace).get("status"))


def must_have_condition(cases: Cases, mesh: GammaMesh, name: str, kind: str, status: str, reason: str,
                        namespace: str = NS, parent_namespace: str = NS) -> None:
    def ok() -> bool:
        return any(has_condition(p, kind, status, reason)
                   for p in parent_status(route_status(mesh, name, namespace), namespace, "echo", parent_namespace))
    cases.check(f"{namespace}/{name} {kind} {status} {reason}", wait_until(ok, 10),
                route_status(mesh, name, namespace).get("status"))


def resolved_refs(cases: Cases, mesh: GammaMesh, name: str, namespace: str = NS,
                  parent_namespace: str = NS) -> None:
    must_have_condition(cases, mesh, name, "ResolvedRefs", "True", "ResolvedRefs", namespace, parent_namespace)


def compare(a: Answer, path: str, method: str = "GET", statuses: tuple[int, ...] = (200,),
            backend_name: str = "", namespace: str = NS, sent: dict[str, str] | None = None,
            headers: dict[str, str] | None = None, valid: dict[str, list[str]] | None = None,
            absent: tuple[str, ...] = (), ignore_whitespace: bool = False, forwarded: bool = True) -> str:
    """What in the answer differs from the suite's expectation ("" when nothing does), as its
    CompareRoundTrip judges: 408 and 504 are one timeout; on a 200 or 204, the request the
    workload saw (none, when `forwarded` is False: a preflight the sidecar answers),
    who answered and the response's headers."""
    if a.status in (408, 504) and any(s in (408, 504) for s in statuses):
        return ""
    if a.status not in statuses:
        return f"status {a.status}, expected one of {statuses}"
    if a.status not in (200, 204):
        return ""
    if not forwarded:
        if a.echo is not None:
            return f"the workload got the request: {a.echo}"
    else:
        if a.echo is None:
            return "no echo of the request"
        if a.echo["path"] != path or a.echo["method"] != method or a.echo["namespace"] != namespace:
            return f"the workload saw {a.echo['method']} {a.echo['path']} in {a.echo['namespace']}"
        for name, value in (sent or {}).items():
            if a.request_header(name) != value:
                return f"the workload saw {name}: {a.request_header(name)}, expected {value}"
        if not str(a.pod).startswith(backend_name):
            return f"{a.pod} answered, expected {backend_name}"

    def strip(v: str) -> str:
        return v.replace(" ", "") if ignore_whitespace else v
    for name, values in (valid or {}).items():
        got = a.headers.get(name.lower())
        if got is None or strip(got) not in [strip(v) for v in values]:
            return f"response header {name}: {got}, expected one of {values}"
    for name, value in (headers or {}).items():
        got = a.headers.get(name.lower())
        if got is None or strip(got) != strip(value):
            return f"response header {name}: {got}, expected {value}"
    for name in absent:
        if name.lower() in a.headers:
            return f"response header {name}: {a.headers[name.lower()]}, expected none"
    return ""


def eventually(cases: Cases, name: str, send: Callable[[], Answer], judge: Callable[[Answer], str],
               timeout: float = 10) -> None:
    """The suite's eventually-consistent check: the expectation holds three times in a row."""
    last: list[object] = ["never tried"]

    def three_in_a_row() -> bool:
        for _ in range(3):
            a = send()
            problem = judge(a)
            if problem:
                last[0] = f"{problem}; {a}"
                return False
        return True
    cases.check(name, wait_until(three_in_a_row, timeout), last[0])


def request_case(cases: Cases, mesh: GammaMesh, path: str, method: str = "GET", sent: dict | None = None,
                 port: int | None = None, host: str = "echo", **expected) -> None:
    """One of the suite's request/expectation pairs, sent as the suite sends it."""
    eventually(cases, f"{method} {path} {sent or ''}",
               lambda: mesh.call(host, path, method=method, headers=sent, port=port),
               lambda a: compare(a, path, method, sent=sent, **expected))


def grant(name: str, namespace: str, from_namespace: str = NS, to_name: str = "echo-v1",
          from_group: str = "gateway.networking.k8s.io", from_kind: str = "HTTPRoute",
          to_group: str = "", to_kind: str = "Service") -> dict:
    return {"apiVersion": GRANT_API, "kind": "ReferenceGrant", "metadata": {"name": name, "namespace": namespace},
            "spec": {"from": [{"group": from_group, "kind": from_kind, "namespace": from_namespace}],
                     "to": [{"group": to_group, "kind": to_kind, "name": to_name}]}}


# ---- invalid references ---------------------------------------------------------

def test_http_route_invalid_backend_ref_unknown_kind(mesh):
    """HTTPRouteInvalidBackendRefUnknownKind (features Gateway, HTTPRoute)."""
    mesh.apply(route("invalid-backend-ref-unknown-kind", ECHO, [{"backendRefs": [
        {"group": "unknownkind.example.com", "kind": "NonExistent", "name": "echo-v1", "port": 80}]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "invalid-backend-ref-unknown-kind")
    must_have_condition(cases, mesh, "invalid-backend-ref-unknown-kind", "ResolvedRefs", "False", "InvalidKind")
    request_case(cases, mesh, "/v2", statuses=(500,))
    cases.done()


def test_http_route_invalid_non_existent_backend_ref(mesh):
    """HTTPRouteInvalidNonExistentBackendRef (features Gateway, HTTPRoute)."""
    mesh.apply(route("invalid-nonexistent-backend-ref", ECHO,
                     [{"backendRefs": [backend("nonexistent", 80, namespace=NS)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "invalid-nonexistent-backend-ref")
    must_have_condition(cases, mesh, "invalid-nonexistent-backend-ref", "ResolvedRefs", "False", "BackendNotFound")
    request_case(cases, mesh, "/", statuses=(500,))
    cases.done()


def test_http_route_invalid_cross_namespace_backend_ref(mesh):
    """HTTPRouteInvalidCrossNamespaceBackendRef (features Gateway, HTTPRoute,
    ReferenceGrant): web-backend, in another namespace, with no grant."""
    mesh.apply(route("invalid-cross-namespace-backend-ref", ECHO,
                     [{"backendRefs": [backend("echo-v1", 80, namespace=CONSUMER)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "invalid-cross-namespace-backend-ref")
    must_have_condition(cases, mesh, "invalid-cross-namespace-backend-ref", "ResolvedRefs", "False",
                        "RefNotPermitted")
    request_case(cases, mesh, "/", statuses=(500,))
    cases.done()


# ---- ReferenceGrant -------------------------------------------------------------

def test_http_route_reference_grant(mesh):
    """HTTPRouteReferenceGrant (features Gateway, HTTPRoute, ReferenceGrant):
    web-backend reached with the grant, and no longer once it is deleted."""
    mesh.apply(grant("reference-grant", CONSUMER),
               route("reference-grant", ECHO, [{"backendRefs": [backend("echo-v1", 80, namespace=CONSUMER)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "reference-grant")
    resolved_refs(cases, mesh, "reference-grant")
    request_case(cases, mesh, "/", backend_name="echo-v1", namespace=CONSUMER)

    code, body = mesh.control.request("DELETE", f"/v1/resources/referencegrants/{CONSUMER}/reference-grant")
    assert code in (200, 204), body
    mesh.routes.remove(("referencegrants", CONSUMER, "reference-grant"))
    mesh.settle()
    request_case(cases, mesh, "/", statuses=(500,))
    cases.done()


def test_http_route_partially_invalid_via_invalid_reference_grant(mesh, infra):
    """HTTPRoutePartiallyInvalidViaInvalidReferenceGrant (features Gateway,
    HTTPRoute, ReferenceGrant): a grant for app-backend-v1 only; the rule to
    app-backend-v2 answers 500, the one to app-backend-v1 is served."""
    mesh.apply(grant("invalid-reference-grant", CONSUMER), route("invalid-reference-grant", ECHO, [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
         "backendRefs": [backend("echo-v2", 80, namespace=CONSUMER)]},
        {"backendRefs": [backend("echo-v1", 80, namespace=CONSUMER)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "invalid-reference-grant")
    must_have_condition(cases, mesh, "invalid-reference-grant", "ResolvedRefs", "False", "RefNotPermitted")
    request_case(cases, mesh, "/v2", statuses=(500,))
    request_case(cases, mesh, "/", backend_name="echo-v1", namespace=CONSUMER)
    cases.done()


def test_http_route_invalid_reference_grant(mesh):
    """HTTPRouteInvalidReferenceGrant (features Gateway, HTTPRoute,
    ReferenceGrant): seven grants, each wrong in one way, and none lets the
    route reach web-backend. Trellis refuses, when applied, grants whose
    `from` or `to` names a kind that allows nothing in the mesh (its
    documented rule); a refusal must be a validation error of that field."""
    grants = [grant("reference-grant-wrong-namespace", NS),
              grant("reference-grant-wrong-from-group", CONSUMER, from_group="not-the-group-youre-looking-for"),
              grant("reference-grant-wrong-from-kind", CONSUMER, from_kind="Gateway"),
              grant("reference-grant-wrong-from-namespace", CONSUMER,
                    from_namespace="not-the-namespace-youre-looking-for"),
              grant("reference-grant-wrong-to-group", CONSUMER, to_group="not-the-group-youre-looking-for"),
              grant("reference-grant-wrong-to-kind", CONSUMER, to_kind="Secret"),
              grant("reference-grant-wrong-to-name", CONSUMER, to_kind="Secret",
                    to_name="not-the-service-youre-looking-for")]
    for g in grants:
        code, body = mesh.control.apply(g)
        if code in (200, 201):
            mesh.routes.append(("referencegrants", g["metadata"]["namespace"], g["metadata"]["name"]))
        else:
            refused = code == 400 and re.search(r"spec\.(from|to)\[0\]\.(group|kind)", json.dumps(body))
            assert refused, (g["metadata"], code, body)
    mesh.apply(route("reference-grant", ECHO, [{"backendRefs": [backend("echo-v1", 80, namespace=CONSUMER)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "reference-grant")
    must_have_condition(cases, mesh, "reference-grant", "ResolvedRefs", "False", "RefNotPermitted")
    request_case(cases, mesh, "/", statuses=(500,))
    cases.done()


# ---- backendRefs ----------------------------------------------------------------

def test_http_route_no_backend_refs(mesh):
    """HTTPRouteNoBackendRefs (features Gateway, HTTPRoute): rules with
    backendRefs left out or empty answer 500."""
    mesh.apply(route("omitted-backendrefs", ECHO, [
        {"matches": [{"path": {"type": "Exact", "value": "/omitted-no-forward"}}]},
        {"matches": [{"path": {"type": "Exact", "value": "/empty-no-forward"}}], "backendRefs": []},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [backend("echo-v1", 80)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "omitted-backendrefs")
    resolved_refs(cases, mesh, "omitted-backendrefs")
    request_case(cases, mesh, "/forward", backend_name="echo-v1")
    request_case(cases, mesh, "/omitted-no-forward", statuses=(500,))
    request_case(cases, mesh, "/empty-no-forward", statuses=(500,))
    cases.done()


def test_http_route_named_rule(mesh):
    """HTTPRouteNamedRule (features Gateway, HTTPRoute, HTTPRouteNamedRouteRule)."""
    mesh.apply(route("http-named-rules", ECHO, [
        {"name": "named-rule", "matches": [{"path": {"type": "PathPrefix", "value": "/named"}}],
         "backendRefs": [backend("echo-v1", 80)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/unnamed"}}], "backendRefs": [backend("echo-v2", 80)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "http-named-rules")
    resolved_refs(cases, mesh, "http-named-rules")
    request_case(cases, mesh, "/named")
    request_case(cases, mesh, "/unnamed")
    cases.done()


def test_http_route_cross_namespace(mesh):
    """HTTPRouteCrossNamespace (features Gateway, HTTPRoute): a route in the
    web-backend namespace attached to a parent in another namespace. On a
    Service that is a consumer route: it takes the requests of clients in its
    own namespace, so they are sent by that namespace's client."""
    mesh.apply(route("cross-namespace", {**ECHO, "namespace": NS}, [{"backendRefs": [backend("echo-v1", 80)]}],
                     namespace=CONSUMER))
    cases = Cases()
    must_be_accepted(cases, mesh, "cross-namespace", namespace=CONSUMER)
    resolved_refs(cases, mesh, "cross-namespace", namespace=CONSUMER)
    request_case(cases, mesh, "/", port=mesh.consumer, host=f"echo.{NS}", backend_name="echo-v1", namespace=CONSUMER)
    cases.done()


def test_http_route_weight(mesh, infra):
    """HTTPRouteWeight (features Gateway, HTTPRoute): 70/30/0 over echo-v1,
    echo-v2 and echo-v3; in one of up to 10 batches of 500 requests, exactly
    the two backends of non-zero weight answer, each share within 0.05 of
    its weight."""
    mesh.apply(route("weighted-backends", ECHO, [{"backendRefs": [
        backend("echo-v1", 80, weight=70), backend("echo-v2", 80, weight=30), backend("echo-v3", 80, weight=0)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "weighted-backends")
    resolved_refs(cases, mesh, "weighted-backends")
    request_case(cases, mesh, "/")

    weights = {"echo-v1": 0.7, "echo-v2": 0.3, "echo-v3": 0.0}
    batches = []
    for attempt in range(10):
        batches.append(weighted_batch(mesh, weights, attempt))
        if not batches[-1]:
            break
    cases.check("distribution 70/30/0 within 0.05", not batches[-1], batches)
    cases.done()


def weighted_batch(mesh: GammaMesh, weights: dict[str, float], attempt: int) -> str:
    """What is wrong with one batch of 500 requests, as the suite judges it ("" when nothing)."""
    seen: dict[str, int] = {}
    for i in range(500):
        sent = {"X-Jitter": str(i)} if (attempt + i) % 2 else None
        a = mesh.call("echo", "/", headers=sent)
        problem = compare(a, "/", sent=sent) or ("" if a.pod in weights else f"{a.pod} answered")
        if problem:
            return problem
        seen[a.pod] = seen.get(a.pod, 0) + 1
    active = sum(1 for w in weights.values() if w > 0)
    off = {b: seen.get(b, 0) / 500 for b, w in weights.items() if abs(seen.get(b, 0) / 500 - w) > 0.05}
    if len(seen) != active or off:
        return f"{seen}"
    return ""


# ---- timeouts -------------------------------------------------------------------

def timeout_scenario(mesh: GammaMesh, name: str, field: str, prefix: str) -> None:
    mesh.apply(route(name, ECHO, [
        {"matches": [{"path": {"type": "PathPrefix", "value": f"/{prefix}"}}],
         "backendRefs": [backend("echo-v3", 80)], "timeouts": {field: "500ms"}},
        {"matches": [{"path": {"type": "PathPrefix", "value": f"/disable-{prefix}"}}],
         "backendRefs": [backend("echo-v3", 80)], "timeouts": {field: "0s"}}]))
    cases = Cases()
    must_be_accepted(cases, mesh, name)
    resolved_refs(cases, mesh, name)
    request_case(cases, mesh, f"/{prefix}")
    request_case(cases, mesh, f"/{prefix}?delay=1s", statuses=(504,))
    request_case(cases, mesh, f"/disable-{prefix}?delay=1s")
    cases.done()


def test_http_route_timeout_request(mesh, infra):
    """HTTPRouteTimeoutRequest (features Gateway, HTTPRoute, HTTPRouteRequestTimeout)."""
    timeout_scenario(mesh, "request-timeout", "request", "request-timeout")


def test_http_route_timeout_backend_request(mesh, infra):
    """HTTPRouteTimeoutBackendRequest (features Gateway, HTTPRoute, HTTPRouteBackendTimeout)."""
    timeout_scenario(mesh, "backend-request-timeout", "backendRequest", "backend-timeout")


# ---- backend protocol -----------------------------------------------------------

def h2c_call(mesh: GammaMesh, path: str = "/") -> Answer:
    """A request in HTTP/2 with prior knowledge to the client's sidecar."""
    try:
        out = h2_request(mesh.client, [(":method", "GET"), (":scheme", "http"), (":authority", "echo"),
                                       (":path", path)])
    except (OSError, h2.exceptions.H2Error):
        return Answer(0, {}, b"")
    return Answer(out["status"] or 0, {}, out["body"])


def test_http_route_backend_protocol_h2c(mesh, infra):
    """HTTPRouteBackendProtocolH2C (features Gateway, HTTPRoute,
    HTTPRouteBackendProtocolH2C): the backend's port 8081 is declared h2c,
    and its server answers HTTP/2 with prior knowledge only."""
    mesh.apply(route("backend-protocol-h2c", ECHO, [{"backendRefs": [backend("echo-v1", H2C_PORT)]}]))
    cases = Cases()
    must_be_accepted(cases, mesh, "backend-protocol-h2c")
    eventually(cases, "GET / over h2c", lambda: h2c_call(mesh),
               lambda a: compare(a, "/", backend_name="echo-v1") or
               ("" if a.echo["proto"] == "HTTP/2.0" else f"the workload got {a.echo['proto']}"))
    cases.done()


# ---- CORS -----------------------------------------------------------------------

def cors_route(name: str, rules: list[tuple[str, dict]]) -> dict:
    return route(name, ECHO, [{"filters": [{"type": "CORS", "cors": cors}],
                               "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                               "backendRefs": [backend("echo-v1", 80)]} for prefix, cors in rules])


def test_http_route_cors(mesh):
    """HTTPRouteCORS (features Gateway, HTTPRoute, HTTPRouteCORS): preflights
    are answered before any backend (the suite expects no echo of them), and
    other requests go on with the CORS response headers."""
    mesh.apply(
        cors_route("cors-multiple-origins-methods-headers", [("/cors-1", {
            "allowOrigins": ["https://www.foo.com", "https://*.bar.com"], "allowMethods": ["GET", "OPTIONS"],
            "allowHeaders": ["x-header-1", "x-header-2"], "exposeHeaders": ["x-header-3", "x-header-4"],
            "allowCredentials": True, "maxAge": 3600})]),
        cors_route("cors-wildcard-methods", [("/cors-2", {"allowOrigins": ["https://www.foo.com"],
                                                          "allowMethods": ["*"]})]),
        cors_route("cors-wildcard-origin", [("/cors-wildcard-origin", {
            "allowOrigins": ["*"], "allowMethods": ["PUT"], "allowCredentials": False})]),
        cors_route("cors-wildcard-methods-headers", [
            ("/cors-wildcard-methods-headers", {"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"],
                                                "allowCredentials": True}),
            ("/cors-wildcard-methods-headers-unauth", {"allowOrigins": ["*"], "allowMethods": ["*"],
                                                       "allowHeaders": ["*"], "allowCredentials": False})]))
    cases = Cases()
    must_be_accepted(cases, mesh, "cors-multiple-origins-methods-headers")
    must_be_accepted(cases, mesh, "cors-wildcard-methods")
    for name in ("cors-multiple-origins-methods-headers", "cors-wildcard-methods", "cors-wildcard-origin",
                 "cors-wildcard-methods-headers"):
        resolved_refs(cases, mesh, name)

    def preflight(path: str, origin: str, method: str, request_headers: str | None = None,
                  statuses: tuple[int, ...] = (200, 204), **expected) -> None:
        sent = {"Origin": origin, "access-control-request-method": method}
        if request_headers:
            sent["access-control-request-headers"] = request_headers
        eventually(cases, f"preflight {path} from {origin} for {method}",
                   lambda: mesh.call("echo", path, method="OPTIONS", headers=sent),
                   lambda a: compare(a, path, "OPTIONS", statuses, forwarded=False, **expected))

    allowed_1 = {"access-control-allow-methods": ["GET, OPTIONS", "OPTIONS, GET"],
                 "access-control-allow-headers": ["x-header-1, x-header-2", "x-header-2, x-header-1"],
                 "access-control-expose-headers": ["x-header-3, x-header-4", "x-header-4, x-header-3"],
                 "access-control-max-age": ["3600"], "access-control-allow-credentials": ["true"]}
    for origin in ("https://www.foo.com", "https://www.bar.com", "https://xpto.www.bar.com"):
        preflight("/cors-1", origin, "GET", "x-header-1, x-header-2", ignore_whitespace=True,
                  valid={"access-control-allow-origin": [origin], **allowed_1})
    preflight("/cors-1", "https://foobar.com", "GET", statuses=(200, 204, 403),
              absent=("access-control-allow-origin",))
    asking = {"access-control-request-method": "GET", "access-control-request-headers": "x-header-1, x-header-2"}
    for origin in ("https://www.foo.com", "https://www.bar.com"):
        request_case(cases, mesh, "/cors-1", sent={"Origin": origin, **asking},
                     headers={"access-control-allow-origin": origin})
    request_case(cases, mesh, "/cors-1", sent={"Origin": "https://foobar.com", "access-control-request-method": "GET"},
                 absent=("access-control-allow-origin",))
    preflight("/cors-2", "https://www.foo.com", "POST", valid={"access-control-allow-methods": ["POST", "*"]},
              headers={"access-control-allow-origin": "https://www.foo.com"},
              absent=("access-control-allow-credentials",))
    preflight("/cors-2", "https://www.foo.com", "POST", absent=("Access-Control-Allow-Credentials",))
    for origin in ("https://foobar.com", "https://foobar.com:12345"):
        preflight("/cors-wildcard-origin", origin, "PUT",
                  valid={"access-control-allow-origin": [origin, "*"], "access-control-allow-methods": ["PUT"]},
                  absent=("Access-Control-Allow-Credentials",))
    request_case(cases, mesh, "/cors-wildcard-origin", "PUT", sent={"Origin": "https://foobar.com:12345"},
                 valid={"access-control-allow-origin": ["https://foobar.com:12345", "*"]})
    request_case(cases, mesh, "/cors-wildcard-origin", "PUT", sent={"Origin": "https://foobar.com"},
                 valid={"access-control-allow-origin": ["https://foobar.com", "*"]},
                 absent=("Access-Control-Allow-Credentials",))
    both = ["x-header-1, x-header-2", "x-header-2, x-header-1"]
    preflight("/cors-wildcard-methods-headers", "https://other.foo.com", "PUT", "x-header-1, x-header-2",
              ignore_whitespace=True, valid={"access-control-allow-origin": ["https://other.foo.com"],
                                             "access-control-allow-methods": ["PUT"],
                                             "access-control-allow-headers": both,
                                             "access-control-allow-credentials": ["true"]})
    preflight("/cors-wildcard-methods-headers-unauth", "https://other.foo.com", "PUT", "x-header-1, x-header-2",
              ignore_whitespace=True, valid={"access-control-allow-origin": ["https://other.foo.com", "*"],
                                             "access-control-allow-methods": ["PUT", "*"],
                                             "access-control-allow-headers": [*both, "*"]},
              absent=("access-control-allow-credentials",))
    request_case(cases, mesh, "/cors-wildcard-methods-headers", sent={"Origin": "https://other.foo.com"},
                 valid={"access-control-allow-origin": ["https://other.foo.com"],
                        "access-control-allow-credentials": ["true"]})
    request_case(cases, mesh, "/cors-wildcard-methods-headers-unauth", sent={"Origin": "https://other.foo.com"},
                 valid={"access-control-allow-origin": ["https://other.foo.com", "*"]},
                 absent=("access-control-allow-credentials",))
    cases.done()
