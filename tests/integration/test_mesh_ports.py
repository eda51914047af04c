"""Service ports, as the Gateway API's mesh profile (GAMMA) has them: a
Service's instances declare its ports, callers name a port in the Host,
routes attach to one port (parentRefs port or sectionName), backendRefs send
to a port, and the callee's sidecar delivers each port to its target port.
The scenarios follow the Gateway API conformance suite's MeshPorts case."""

import json

from harness import LOCALHOST, free_port, named_responder, sidecar_config, validate_config, wait_until
from test_mesh_traffic import Client, apply

ROUTE_API = "gateway.networking.k8s.io/v1"


def echo_route(name: str, parent: dict, rules: list[dict]) -> dict:
    return {"apiVersion": ROUTE_API, "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo", **parent}], "rules": rules}}


def status_of(control, name: str) -> list[tuple[str, str, str]]:
    """(type, status, reason) of each condition of the route's first parent."""
    code, body = control.request("GET", f"/v1/resources/httproutes/default/{name}")
    assert code == 200, body
    return [(c["type"], c["status"], c["reason"]) for c in body["status"]["parents"][0]["conditions"]]


def test_ports_route_by_the_hosts_port_and_reach_their_target_ports(fleet):
    control = fleet.control_plane()
    http = fleet.upstream(named_responder("echo-http"))
    alt = fleet.upstream(named_responder("echo-alt"))
    v2 = fleet.upstream(named_responder("echo-v2"))
    # echo: its sidecar serves port 80 from the application's http port and
    # 8080 from its alt port.
    inbound = free_port()
    fleet.proxy(sidecar_config(control, "echo", instance={
        "address": f"{LOCALHOST}:{inbound}", "app_address": http.address,
        "ports": [{"name": "http", "port": 80, "target_port": http.port},
                  {"name": "alt", "port": 8080, "target_port": alt.port}]}))
    # echo-v2: no sidecar, registered with its one port.
    control.register("echo-v2", v2.address, ttl_seconds=300,
                     ports=[{"name": "http", "port": 80, "target_port": v2.port}])
    outbound = free_port()
    fleet.proxy(sidecar_config(control, "caller", outbound_port=outbound, upstream_services=["echo", "echo-v2"]))
    client = Client(outbound)

    def body(host: str, path: str = "/") -> str:
        status, _, data = client.get(path, host=host)
        return f"{status} {data.decode()}"

    assert wait_until(lambda: body("echo:8080") == "200 echo-alt", 15), body("echo:8080")
    assert body("echo") == "200 echo-http", "a Host without a port is port 80"
    assert body("echo:80") == "200 echo-http"
    assert body("echo.default.svc.cluster.local:8080") == "200 echo-alt"
    assert body("echo-v2") == "200 echo-v2", "its only port: reached at its own target port"
    assert all(r.header("x-trellis-port") is None for r in http.requests() + alt.requests()), \
        "the port header stops at the callee's sidecar"

    # MeshPorts: a route on port 8080 changes nothing on port 80, and the
    # other way round for sectionName http.
    apply(control, echo_route("on-8080", {"port": 8080}, [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
         "backendRefs": [{"name": "echo-v2", "port": 80}]},
        {"backendRefs": [{"name": "echo", "port": 8080}]}]))
    apply(control, echo_route("on-http", {"sectionName": "http"}, [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/alt"}}],
         "backendRefs": [{"name": "echo", "port": 8080}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
         "backendRefs": [{"name": "echo", "port": 80}]}]))
    assert wait_until(lambda: body("echo:8080", "/v2/x") == "200 echo-v2", 10), body("echo:8080", "/v2/x")
    assert body("echo", "/v2/x") == "200 echo-http", "the port-8080 route took a request to port 80"
    assert body("echo", "/alt/x") == "200 echo-alt", "a backendRef's port is the port it reaches"
    assert body("echo:8080", "/alt/x") == "200 echo-alt", "no route there: the port itself"
    assert body("echo:8080", "/other") == "200 echo-alt"
    assert body("echo", "/other") == "404 no route\n", "port 80 has a route now, and no rule of it matches"
    assert status_of(control, "on-8080") == [("Accepted", "True", "Accepted"), ("ResolvedRefs", "True", "ResolvedRefs")]

    # A backendRef to a port the backend does not declare: its share is 500,
    # and the route's status says why.
    apply(control, echo_route("on-http", {"sectionName": "http"}, [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/alt"}}],
         "backendRefs": [{"name": "echo", "port": 8443}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
         "backendRefs": [{"name": "echo", "port": 80}]}]))
    assert wait_until(lambda: body("echo", "/alt/x").startswith("500"), 10), body("echo", "/alt/x")
    assert status_of(control, "on-http")[1] == ("ResolvedRefs", "False", "BackendNotFound")

    # A mirror's copy goes to the mirror's port, not to its route's backend's.
    apply(control, echo_route("mirrored", {"port": 8080}, [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/m"}}],
         "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "echo", "port": 80}}}],
         "backendRefs": [{"name": "echo", "port": 8080}]}]))
    assert wait_until(lambda: body("echo:8080", "/m/1") == "200 echo-alt" and
                      any(r.target == "/m/1" for r in http.requests()), 10), \
        [r.target for r in http.requests()]
    assert all(r.header("x-trellis-port") is None for r in http.requests() + alt.requests())

    # A parent port the Service does not declare: accepted by validation,
    # matching no parent, and traffic is untouched.
    apply(control, echo_route("on-9999", {"port": 9999}, [{"backendRefs": [{"name": "echo-v2", "port": 80}]}]))
    assert status_of(control, "on-9999")[0] == ("Accepted", "False", "NoMatchingParent")
    assert body("echo:8080", "/other") == "200 echo-alt"
    client.close()


def test_ports_are_checked_where_they_are_declared(fleet):
    control = fleet.control_plane()
    status, body = control.request("POST", "/v1/registry/instances", {
        "service": "echo", "address": f"{LOCALHOST}:9", "ports": [
            {"name": "http", "port": 80, "target_port": 8080, "protocol": "tcp"},
            {"name": "http", "port": 80}]})
    assert status == 400, body
    problems = {d["path"]: d["message"] for d in body.get("details", [])} or {"": body.get("error", "")}
    text = json.dumps(problems)
    assert "is not one of http, h2c or grpc" in text and "used twice" in text, text
    # The sidecar's own file is refused the same way, before it starts.
    bad = sidecar_config(control, "echo", instance={
        "address": f"{LOCALHOST}:{free_port()}", "app_address": f"{LOCALHOST}:9",
        "ports": [{"port": 80}, {"port": 81}]})
    result = validate_config(fleet.subdir("bad"), bad)
    assert result.returncode != 0, "a sidecar with two unnamed ports was accepted"
    err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert "instance.ports[0]: name: required when there is more than one port" in err, err
