"""The Gateway API's mesh conformance scenarios (conformance/tests/mesh of
the Gateway API, GAMMA), run against a real mesh: trellis-control, a sidecar
in front of each echo workload, and client sidecars the requests go through.

The base is the suite's: namespace gateway-conformance-mesh with workloads
echo-v1 and echo-v2, each serving ports 80 (http) and 8080 (http-alt);
Services echo-v1, echo-v2, and echo (both workloads); and a consumer
namespace. Each scenario applies the suite's route, sends the suite's
requests and checks the suite's expectations: status, which workload
answered, the request as the workload saw it, and the response's headers.
The echo workload answers with what it received, as the suite's echo does."""

import http.client
import json

import pytest

from harness import LOCALHOST, Fleet, free_port, http_responder, http_response, sidecar_config, wait_until

NS = "gateway-conformance-mesh"
CONSUMER = "gateway-conformance-mesh-consumer"
ROUTE_API = "gateway.networking.k8s.io/v1"


def echo_app(pod: str, namespace: str, port: int):
    """Answers every request with a JSON account of it, as the suite's echo."""

    def respond(req) -> bytes:
        headers: dict[str, list[str]] = {}
        for name, value in req.headers:
            headers.setdefault(name.lower(), []).append(value)
        body = json.dumps({"pod": pod, "namespace": namespace, "port": port, "method": req.method,
                           "path": req.target, "host": req.header("host"), "headers": headers}).encode()
        return http_response(200, body, [("Content-Type", "application/json")])
    return http_responder(respond)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.echo = json.loads(body) if body.startswith(b"{") else None
        except ValueError:
            self.echo = None

    @property
    def pod(self) -> str | None:
        return self.echo["pod"] if self.echo else None

    def request_header(self, name: str) -> str | None:
        values = (self.echo or {}).get("headers", {}).get(name.lower())
        return ",".join(values) if values else None

    def __repr__(self) -> str:
        return f"{self.status} {self.headers} {self.body[:300]!r}"


class GammaMesh:
    """The suite's base manifests, as a Trellis mesh."""

    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.control = fleet.control_plane()
        self.routes: list[tuple[str, str, str]] = []
        for namespace in (NS, CONSUMER):
            versions = ("v1", "v2") if namespace == NS else ("v1",)
            for version in versions:
                http_app = fleet.upstream(echo_app(f"echo-{version}", namespace, 80))
                alt_app = fleet.upstream(echo_app(f"echo-{version}", namespace, 8080))
                ports = [{"name": "http", "port": 80, "target_port": http_app.port, "protocol": "http"},
                         {"name": "http-alt", "port": 8080, "target_port": alt_app.port, "protocol": "http"}]
                fleet.proxy(sidecar_config(self.control, f"echo-{version}", node_id=f"echo-{version}.{namespace}",
                                           namespace=namespace, instance={
                    "address": f"{LOCALHOST}:{free_port()}", "app_address": http_app.address,
                    "ports": ports, "labels": {"app": "echo", "version": version}}))
                # The same workload is an endpoint of Service echo (selector app: echo).
                self.control.register("echo", http_app.address, namespace=namespace, ttl_seconds=3600,
                                      labels={"app": "echo", "version": version}, ports=ports)
        upstreams = [f"{s}.{NS}" for s in ("echo", "echo-v1", "echo-v2")]
        self.client = free_port()
        fleet.proxy(sidecar_config(self.control, "client", node_id="client." + NS, namespace=NS,
                                   outbound_port=self.client,
                                   upstream_services=upstreams))
        self.consumer = free_port()
        fleet.proxy(sidecar_config(self.control, "client", node_id="client." + CONSUMER, namespace=CONSUMER,
                                   outbound_port=self.consumer,
                                   upstream_services=upstreams + [f"echo.{CONSUMER}"]))
        for port in (self.client, self.consumer):
            assert wait_until(lambda: self.call(f"echo-v1.{NS}", port=port).pod == "echo-v1", 15), \
                self.call(f"echo-v1.{NS}", port=port)

    def call(self, host: str, path: str = "/", method: str = "GET", headers: dict | None = None,
             port: int | None = None) -> Answer:
        conn = http.client.HTTPConnection(LOCALHOST, port or self.client, timeout=5)
        try:
            conn.request(method, path, headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        except (OSError, http.client.HTTPException):
            return Answer(0, {}, b"")
        finally:
            conn.close()

    def apply(self, *routes: dict) -> None:
        for r in routes:
            r = {"apiVersion": ROUTE_API, **r}
            status, body = self.control.apply(r)
            assert status in (200, 201), f"{r['metadata']['name']}: {status} {body}"
            meta = r["metadata"]
            self.routes.append(("httproutes" if r["kind"] == "HTTPRoute" else "grpcroutes",
                                meta.get("namespace", "default"), meta["name"]))

    def clear(self) -> None:
        for plural, namespace, name in self.routes:
            self.control.request("DELETE", f"/v1/resources/{plural}/{namespace}/{name}")
        self.routes.clear()


@pytest.fixture(scope="module")
def gamma():
    fleet = Fleet()
    try:
        yield GammaMesh(fleet)
    finally:
        fleet.close()


@pytest.fixture
def mesh(gamma):
    """The base mesh, with the routes a scenario applies removed after it."""
    yield gamma
    gamma.clear()
    # Routes gone: the client sidecars are back on the Services themselves.
    assert wait_until(lambda: gamma.call(f"echo-v2.{NS}", "/v1").pod == "echo-v2", 10)


def route(name: str, parent: dict, rules: list[dict], namespace: str = NS, hostnames=None) -> dict:
    spec = {"parentRefs": [{"group": "", "kind": "Service", **parent}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"kind": "HTTPRoute", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def backend(name: str, port: int = 80, weight: int | None = None, **extra) -> dict:
    out = {"name": name, "port": port, **extra}
    if weight is not None:
        out["weight"] = weight
    return out


def until(mesh: GammaMesh, check, what: str) -> None:
    assert wait_until(check, 10), f"the route never applied: {what}"


# ---- MeshBasic -------------------------------------------------------------------

def test_mesh_basic(mesh):
    """Requests to a Service reach its workloads, with no route."""
    seen = {mesh.call(f"echo.{NS}").pod for _ in range(20)}
    assert seen <= {"echo-v1", "echo-v2"} and seen, seen
    for svc in ("echo-v1", "echo-v2"):
        a = mesh.call(f"{svc}.{NS}")
        assert a.status == 200 and a.pod == svc, a
