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

import grpc

from harness import LOCALHOST, Fleet, free_port, http_responder, http_response, sidecar_config, wait_until
from test_grpc_mesh import GrpcServer

NS = "gateway-conformance-mesh"
CONSUMER = "gateway-conformance-mesh-consumer"
ROUTE_API = "gateway.networking.k8s.io/v1"


# Every request an echo workload received: (pod, namespace, path), mirrored copies included.
RECEIVED: list[tuple[str, str, str]] = []


def echo_app(pod: str, namespace: str):
    """Answers every request with a JSON account of it, as the suite's echo,
    and sets the response headers a request names in X-Echo-Set-Header
    ("Name:value,Name:value"), as the suite's echo does."""

    def respond(req) -> bytes:
        RECEIVED.append((pod, namespace, req.target))
        headers: dict[str, list[str]] = {}
        for name, value in req.headers:
            headers.setdefault(name.lower(), []).append(value)
        body = json.dumps({"pod": pod, "namespace": namespace, "method": req.method,
                           "path": req.target, "host": req.header("host"), "headers": headers}).encode()
        extra = []
        for pair in (req.header("x-echo-set-header") or "").split(","):
            name, sep, value = pair.partition(":")
            if sep and name.strip():
                extra.append((name.strip(), value.strip()))
        return http_response(200, body, [("Content-Type", "application/json"), *extra])
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
                # The suite's Services: http 80 and http-alt 8080, both to the
                # workload's port 8080 (here wherever it listens).
                app = fleet.upstream(echo_app(f"echo-{version}", namespace))
                grpc_app = GrpcServer(fleet, f"echo-{version}")
                ports = [{"name": "http", "port": 80, "target_port": app.port, "protocol": "http"},
                         {"name": "http-alt", "port": 8080, "target_port": app.port, "protocol": "http"},
                         {"name": "grpc", "port": 7070, "target_port": grpc_app.port, "protocol": "grpc"}]
                fleet.proxy(sidecar_config(self.control, f"echo-{version}", node_id=f"echo-{version}.{namespace}",
                                           namespace=namespace, instance={
                    "address": f"{LOCALHOST}:{free_port()}", "app_address": app.address,
                    "ports": ports, "labels": {"app": "echo", "version": version}}))
                if namespace == NS:  # the same workload is an endpoint of Service echo (selector app: echo)
                    self.control.register("echo", app.address, namespace=namespace, ttl_seconds=3600,
                                          labels={"app": "echo", "version": version}, ports=ports)
        upstreams = [f"{s}.{NS}" for s in ("echo", "echo-v1", "echo-v2")]
        self.client = free_port()
        fleet.proxy(sidecar_config(self.control, "client", node_id="client." + NS, namespace=NS,
                                   outbound_port=self.client,
                                   upstream_services=upstreams))
        self.consumer = free_port()
        fleet.proxy(sidecar_config(self.control, "client", node_id="client." + CONSUMER, namespace=CONSUMER,
                                   outbound_port=self.consumer, upstream_services=upstreams))
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

    def grpc_call(self, authority: str = "echo:7070") -> str:
        """The server that answered a unary call through the client's sidecar ("" when none did)."""
        with grpc.insecure_channel(f"{LOCALHOST}:{self.client}",
                                   options=[("grpc.default_authority", authority)]) as channel:
            try:
                return channel.unary_unary("/test.Echo/Unary")(b"x", timeout=5).decode().split(":")[0]
            except grpc.RpcError:
                return ""

    def grpc_metadata(self, metadata: dict[str, str], authority: str = "echo:7070") -> dict | None:
        """Who answered a call to test.Echo/Metadata and the metadata it saw; None when the call failed."""
        with grpc.insecure_channel(f"{LOCALHOST}:{self.client}",
                                   options=[("grpc.default_authority", authority)]) as channel:
            try:
                answer = channel.unary_unary("/test.Echo/Metadata")(b"", timeout=5, metadata=list(metadata.items()))
                return json.loads(answer)
            except grpc.RpcError:
                return None

    def apply(self, *routes: dict) -> None:
        for r in routes:
            r = {"apiVersion": ROUTE_API, **r}
            status, body = self.control.apply(r)
            assert status in (200, 201), f"{r['metadata']['name']}: {status} {body}"
            meta = r["metadata"]
            self.routes.append((r["kind"].lower() + "s", meta.get("namespace", "default"), meta["name"]))
        self.settle()

    def clear(self) -> None:
        for plural, namespace, name in self.routes:
            self.control.request("DELETE", f"/v1/resources/{plural}/{namespace}/{name}")
        self.routes.clear()
        self.settle()

    def settle(self) -> None:
        """Until every proxy runs the configuration of the mesh as it is now."""
        def in_sync() -> bool:
            st = self.control.status() or {}
            return (st.get("pushed_revision") == st.get("revision") and
                    all(p.get("in_sync") for p in st.get("proxies", [])))
        assert wait_until(in_sync, 15), self.control.status()


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
    for host in ("echo-v1", "echo-v2"):
        assert wait_until(lambda: gamma.call(host, "/x").status == 200 and
                          "x-header-set" not in gamma.call(host, "/x").headers, 10)


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


def test_mesh_http_route_simple_same_namespace(mesh):
    mesh.apply(route("gateway-conformance-mesh-test", {"name": "echo", "port": 80},
                     [{"backendRefs": [backend("echo-v1", 8080)]}]))
    until(mesh, lambda: all(mesh.call("echo").pod == "echo-v1" for _ in range(5)), "echo to echo-v1")
    assert all(mesh.call("echo").pod == "echo-v1" for _ in range(20))


# ---- parentRef semantics ----------------------------------------------------------

def set_header(value: str) -> dict:
    return {"type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "X-Header-Set", "value": value}]}}


def test_mesh_frontend(mesh):
    """A route on echo-v2 applies to requests to Service echo-v2. (The suite
    also sends to the workload's address directly, past the Service; with
    Trellis a caller names a Service, so that case has no equivalent.)"""
    mesh.apply(route("mesh-split-v1", {"name": "echo-v2"},
                     [{"filters": [set_header("set")], "backendRefs": [backend("echo-v2", 80)]}]))
    until(mesh, lambda: mesh.call("echo-v2").headers.get("x-header-set") == "set", "the header")
    a = mesh.call("echo-v2")
    assert a.status == 200 and a.pod == "echo-v2", a
    a = mesh.call("echo-v1")
    assert a.pod == "echo-v1" and "x-header-set" not in a.headers, a


def test_mesh_ports(mesh):
    mesh.apply(route("mesh-split-v1", {"name": "echo-v1", "port": 80},
                     [{"filters": [set_header("v1")], "backendRefs": [backend("echo-v1", 80)]}]),
               route("mesh-split-v2", {"name": "echo-v2"},
                     [{"filters": [set_header("v2")], "backendRefs": [backend("echo-v2", 80)]}]))
    until(mesh, lambda: mesh.call("echo-v2:8080").headers.get("x-header-set") == "v2", "the v2 route")
    cases = [("echo-v1", "echo-v1", "v1"), ("echo-v1:8080", "echo-v1", None),
             ("echo-v2", "echo-v2", "v2"), ("echo-v2:8080", "echo-v2", "v2")]
    for host, pod, header in cases:
        a = mesh.call(host)
        assert a.status == 200 and a.pod == pod and a.headers.get("x-header-set") == header, (host, a)


def test_mesh_consumer_route(mesh):
    mesh.apply(route("mesh-echo-add-header", {"name": "echo-v1", "namespace": NS},
                     [{"filters": [set_header("set")], "backendRefs": [backend("echo-v1", 80, namespace=NS)]}],
                     namespace=CONSUMER))
    # Its backend is its parent, in another namespace: no ReferenceGrant is
    # needed for that (nor does the suite apply one).
    host = f"echo-v1.{NS}"
    until(mesh, lambda: mesh.call(host, port=mesh.consumer).headers.get("x-header-set") == "set", "consumer route")
    a = mesh.call(host, port=mesh.consumer)
    assert a.status == 200 and a.pod == "echo-v1" and a.echo["namespace"] == NS, a
    a = mesh.call(host)  # the producer namespace's client
    assert a.status == 200 and a.pod == "echo-v1" and "x-header-set" not in a.headers, a


def test_mesh_traffic_split(mesh):
    mesh.apply(route("mesh-split", {"name": "echo"}, [
        {"matches": [{"path": {"type": "Exact", "value": "/v1"}}], "backendRefs": [backend("echo-v1", 80)]},
        {"matches": [{"path": {"type": "Exact", "value": "/v2"}}], "backendRefs": [backend("echo-v2", 80)]}]))
    until(mesh, lambda: mesh.call("echo", "/v2").pod == "echo-v2" and mesh.call("echo", "/v1").pod == "echo-v1",
          "the split")
    for _ in range(10):
        assert mesh.call("echo", "/v1").pod == "echo-v1" and mesh.call("echo", "/v2").pod == "echo-v2"


# ---- matching ---------------------------------------------------------------------

def test_mesh_http_route_matching(mesh):
    mesh.apply(route("mesh-matching", {"name": "echo", "port": 80}, [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}, {"headers": [{"name": "version", "value": "one"}]}],
         "backendRefs": [backend("echo-v1", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}, {"headers": [{"name": "version", "value": "two"}]}],
         "backendRefs": [backend("echo-v2", 8080)]}]))
    until(mesh, lambda: mesh.call("echo", "/v2").pod == "echo-v2" and mesh.call("echo", "/").pod == "echo-v1",
          "the matches")
    cases = [("/", {}, "echo-v1"), ("/example", {}, "echo-v1"), ("/", {"Version": "one"}, "echo-v1"),
             ("/v2", {}, "echo-v2"), ("/v2/example", {}, "echo-v2"), ("/", {"Version": "two"}, "echo-v2"),
             ("/v2/", {}, "echo-v2"), ("/v2example", {}, "echo-v1"), ("/foo/v2/example", {}, "echo-v1")]
    for path, headers, pod in cases:
        a = mesh.call("echo", path, headers=headers)
        assert a.status == 200 and a.pod == pod, (path, headers, a)


def test_mesh_http_route_query_param_matching(mesh):
    def q(name, value):
        return {"name": name, "value": value}
    mesh.apply(route("mesh-query-param-matching", {"name": "echo", "port": 80}, [
        {"matches": [{"queryParams": [q("animal", "whale")]}], "backendRefs": [backend("echo-v1", 8080)]},
        {"matches": [{"queryParams": [q("animal", "dolphin")]}], "backendRefs": [backend("echo-v2", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/path1"}, "queryParams": [q("animal", "whale")]}],
         "backendRefs": [backend("echo-v1", 8080)]},
        {"matches": [{"headers": [q("version", "one")], "queryParams": [q("animal", "whale")]}],
         "backendRefs": [backend("echo-v2", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/path3"}, "queryParams": [q("animal", "shark")]},
                     {"path": {"type": "PathPrefix", "value": "/path4"}, "headers": [q("version", "three")],
                      "queryParams": [q("animal", "kraken")]}],
         "backendRefs": [backend("echo-v1", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/path5"}}], "backendRefs": [backend("echo-v1", 8080)]},
        {"matches": [{"queryParams": [q("animal", "hydra")]}], "backendRefs": [backend("echo-v2", 8080)]}]))
    until(mesh, lambda: mesh.call("echo", "/?animal=dolphin").pod == "echo-v2", "the query matches")
    cases = [("/?animal=whale", {}, 200, "echo-v1"), ("/?animal=dolphin", {}, 200, "echo-v2"),
             ("/?animal=whale&otherparam=irrelevant", {}, 200, "echo-v1"),
             ("/?animal=dolphin&color=yellow", {}, 200, "echo-v2"),
             ("/?color=blue", {}, 404, None), ("/?animal=dog", {}, 404, None),
             ("/?animal=whaledolphin", {}, 404, None), ("/", {}, 404, None),
             ("/path1?animal=whale", {}, 200, "echo-v1"), ("/?animal=whale", {"version": "one"}, 200, "echo-v2"),
             ("/path3?animal=shark", {}, 200, "echo-v1"),
             ("/path4?animal=kraken", {"version": "three"}, 200, "echo-v1"),
             ("/?animal=shark", {}, 404, None), ("/path4?animal=kraken", {}, 404, None),
             ("/path5?animal=hydra", {}, 200, "echo-v1")]
    for path, headers, status, pod in cases:
        a = mesh.call("echo", path, headers=headers)
        assert a.status == status and a.pod == pod, (path, headers, a)


def test_mesh_http_route_named_rule(mesh):
    mesh.apply(route("mesh-http-named-rules", {"name": "echo", "port": 80}, [
        {"name": "named-rule", "matches": [{"path": {"type": "PathPrefix", "value": "/named"}}],
         "backendRefs": [backend("echo-v1", 8080)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/unnamed"}}], "backendRefs": [backend("echo-v2", 8080)]}]))
    until(mesh, lambda: mesh.call("echo", "/unnamed").pod == "echo-v2", "the rules")
    a = mesh.call("echo", "/named")
    assert a.pod == "echo-v1" and a.echo["path"] == "/named", a
    a = mesh.call("echo", "/unnamed")
    assert a.pod == "echo-v2" and a.echo["path"] == "/unnamed", a


# ---- request headers and rewrites -------------------------------------------------

def modifier(set_=(), add=(), remove=()) -> dict:
    out = {}
    if set_:
        out["set"] = [{"name": n, "value": v} for n, v in set_]
    if add:
        out["add"] = [{"name": n, "value": v} for n, v in add]
    if remove:
        out["remove"] = list(remove)
    return {"type": "RequestHeaderModifier", "requestHeaderModifier": out}


HEADER_RULES = [
    ("/set", modifier(set_=[("X-Header-Set", "set-overwrites-values")])),
    ("/add", modifier(add=[("X-Header-Add", "add-appends-values")])),
    ("/remove", modifier(remove=["X-Header-Remove"])),
    ("/multiple", modifier(set_=[("X-Header-Set-1", "header-set-1"), ("X-Header-Set-2", "header-set-2")],
                           add=[("X-Header-Add-1", "header-add-1"), ("X-Header-Add-2", "header-add-2"),
                                ("X-Header-Add-3", "header-add-3")],
                           remove=["X-Header-Remove-1", "X-Header-Remove-2"])),
    ("/case-insensitivity", modifier(set_=[("X-Header-Set", "header-set")], add=[("X-Header-Add", "header-add")],
                                     remove=["X-Header-Remove"])),
]

# (path, request headers, headers the backend sees, headers it must not see)
HEADER_CASES = [
    ("/set", {"Some-Other-Header": "val"}, {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}, []),
    ("/set", {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
     {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}, []),
    ("/add", {"Some-Other-Header": "val"}, {"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}, []),
    ("/add", {"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
     {"Some-Other-Header": "val", "X-Header-Add": "some-other-value,add-appends-values"}, []),
    ("/remove", {"X-Header-Remove": "val"}, {}, ["X-Header-Remove"]),
    ("/multiple", {"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2", "X-Header-Remove-2": "remove-val-2",
                   "Another-Header": "another-header-val"},
     {"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2", "X-Header-Add-1": "header-add-1",
      "X-Header-Add-2": "add-val-2,header-add-2", "X-Header-Add-3": "header-add-3",
      "Another-Header": "another-header-val"}, ["X-Header-Remove-1", "X-Header-Remove-2"]),
    ("/case-insensitivity", {"x-header-set": "original-val-set", "x-header-add": "original-val-add",
                             "x-header-remove": "original-val-remove", "Another-Header": "another-header-val"},
     {"X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add", "Another-Header": "another-header-val"},
     ["x-header-remove"]),
]


def check_header_cases(mesh) -> None:
    until(mesh, lambda: mesh.call("echo", "/set").request_header("X-Header-Set") == "set-overwrites-values",
          "the header filters")
    for path, headers, seen, absent in HEADER_CASES:
        a = mesh.call("echo", path, headers=headers)
        assert a.status == 200 and a.pod == "echo-v1", (path, a)
        for name, value in seen.items():
            assert a.request_header(name) == value, (path, name, a.echo["headers"])
        for name in absent:
            assert a.request_header(name) is None, (path, name, a.echo["headers"])


@pytest.mark.parametrize("on_backend", [False, True], ids=["rule", "backend"])
def test_mesh_http_route_request_header_modifier(mesh, on_backend):
    """MeshHTTPRouteRequestHeaderModifier, and with the filters on the
    backendRef MeshHTTPRouteBackendRequestHeaderModifier."""
    rules = []
    for path, f in HEADER_RULES:
        rule = {"matches": [{"path": {"type": "PathPrefix", "value": path}}]}
        if on_backend:
            rule["backendRefs"] = [backend("echo-v1", 8080, filters=[f])]
        else:
            rule["filters"] = [f]
            rule["backendRefs"] = [backend("echo-v1", 8080)]
        rules.append(rule)
    mesh.apply(route("mesh-request-header-modifier", {"name": "echo", "port": 80}, rules))
    check_header_cases(mesh)


def test_mesh_http_route_rewrite_path(mesh):
    def rewrite(kind: str, value: str) -> dict:
        field = "replacePrefixMatch" if kind == "ReplacePrefixMatch" else "replaceFullPath"
        return {"type": "URLRewrite", "urlRewrite": {"path": {"type": kind, field: value}}}
    headers = modifier(set_=[("X-Header-Set", "set-overwrites-values")],
                       add=[("X-Header-Add", "header-val-1"), ("X-Header-Add-Append", "header-val-2")],
                       remove=["X-Header-Remove"])

    def rule(prefix: str, filters: list[dict]) -> dict:
        return {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}], "filters": filters,
                "backendRefs": [backend("echo-v1", 80)]}
    mesh.apply(route("mesh-rewrite-path", {"name": "echo", "port": 80}, [
        rule("/prefix/one", [rewrite("ReplacePrefixMatch", "/one")]),
        rule("/strip-prefix", [rewrite("ReplacePrefixMatch", "/")]),
        rule("/full/one", [rewrite("ReplaceFullPath", "/one")]),
        rule("/full/rewrite-path-and-modify-headers", [rewrite("ReplaceFullPath", "/test"), headers]),
        rule("/prefix/rewrite-path-and-modify-headers", [rewrite("ReplacePrefixMatch", "/prefix"), headers])]))
    until(mesh, lambda: (mesh.call("echo", "/prefix/one/two").echo or {}).get("path") == "/one/two", "the rewrites")
    for path, want in [("/prefix/one/two", "/one/two"), ("/strip-prefix/three", "/three"), ("/strip-prefix", "/"),
                       ("/full/one/two", "/one")]:
        a = mesh.call("echo", path)
        assert a.status == 200 and a.pod == "echo-v1" and a.echo["path"] == want, (path, a)
    sent = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1", "X-Header-Set": "set-val"}
    for path, want in [("/full/rewrite-path-and-modify-headers/test", "/test"),
                       ("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one")]:
        a = mesh.call("echo", path, headers=sent)
        assert a.status == 200 and a.echo["path"] == want, (path, a)
        assert a.request_header("X-Header-Add") == "header-val-1"
        assert a.request_header("X-Header-Add-Append") == "append-val-1,header-val-2"
        assert a.request_header("X-Header-Set") == "set-overwrites-values"
        assert a.request_header("X-Header-Remove") is None


# ---- redirects --------------------------------------------------------------------

def redirect_rule(prefix: str, **redirect) -> dict:
    return {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "filters": [{"type": "RequestRedirect", "requestRedirect": redirect}]}


def check_redirects(mesh, rules: list[dict], cases: list[tuple[str, int, str]]) -> None:
    mesh.apply(route("mesh-redirect", {"name": "echo", "port": 80}, rules))
    first_path, first_status, _ = cases[0]
    until(mesh, lambda: mesh.call("echo", first_path).status == first_status, "the redirects")
    for path, status, location in cases:
        a = mesh.call("echo", path)
        assert a.status == status and a.headers.get("location") == location, (path, a)


def test_mesh_http_route_redirect_host_and_status(mesh):
    check_redirects(mesh, [redirect_rule("/hostname-redirect", hostname="example.org"),
                           redirect_rule("/host-and-status", statusCode=301, hostname="example.org")],
                    [("/hostname-redirect", 302, "http://example.org/hostname-redirect"),
                     ("/host-and-status", 301, "http://example.org/host-and-status")])


def test_mesh_http_route_scheme_redirect(mesh):
    check_redirects(mesh, [redirect_rule("/scheme", scheme="https"),
                           redirect_rule("/scheme-and-host", hostname="example.org", scheme="https"),
                           redirect_rule("/scheme-and-status", scheme="https", statusCode=301),
                           redirect_rule("/scheme-and-host-and-status", scheme="https", statusCode=302,
                                         hostname="example.org")],
                    [("/scheme", 302, "https://echo/scheme"),
                     ("/scheme-and-host", 302, "https://example.org/scheme-and-host"),
                     ("/scheme-and-status", 301, "https://echo/scheme-and-status"),
                     ("/scheme-and-host-and-status", 302, "https://example.org/scheme-and-host-and-status")])


def test_mesh_http_route_redirect_port(mesh):
    check_redirects(mesh, [redirect_rule("/port", port=8083),
                           redirect_rule("/port-and-host", hostname="example.org", port=8083),
                           redirect_rule("/port-and-status", port=8083, statusCode=301),
                           redirect_rule("/port-and-host-and-status", port=8083, hostname="example.org",
                                         statusCode=302)],
                    [("/port", 302, "http://echo:8083/port"),
                     ("/port-and-host", 302, "http://example.org:8083/port-and-host"),
                     ("/port-and-status", 301, "http://echo:8083/port-and-status"),
                     ("/port-and-host-and-status", 302, "http://example.org:8083/port-and-host-and-status")])


def test_mesh_http_route_redirect_path(mesh):
    def prefix(v):
        return {"type": "ReplacePrefixMatch", "replacePrefixMatch": v}

    def full(v):
        return {"type": "ReplaceFullPath", "replaceFullPath": v}
    check_redirects(mesh, [redirect_rule("/original-prefix", path=prefix("/replacement-prefix")),
                           redirect_rule("/full", path=full("/full-path-replacement")),
                           redirect_rule("/path-and-host", hostname="example.org", path=prefix("/replacement-prefix")),
                           redirect_rule("/path-and-status", path=prefix("/replacement-prefix"), statusCode=301),
                           redirect_rule("/full-path-and-host", hostname="example.org", path=full("/replacement-full")),
                           redirect_rule("/full-path-and-status", path=full("/replacement-full"), statusCode=301)],
                    [("/original-prefix/lemon", 302, "http://echo/replacement-prefix/lemon"),
                     ("/full/path/original", 302, "http://echo/full-path-replacement"),
                     ("/path-and-host", 302, "http://example.org/replacement-prefix"),
                     ("/path-and-status", 301, "http://echo/replacement-prefix"),
                     ("/full-path-and-host", 302, "http://example.org/replacement-full"),
                     ("/full-path-and-status", 301, "http://echo/replacement-full")])


@pytest.mark.parametrize("status,path", [(303, "/redirect"), (307, "/temporary"), (308, "/permanent")])
def test_mesh_http_route_30x_redirect(mesh, status, path):
    check_redirects(mesh, [redirect_rule(path, statusCode=status)], [(path, status, f"http://echo{path}")])


# ---- weights ----------------------------------------------------------------------

def test_mesh_http_route_weight(mesh):
    mesh.apply(route("mesh-weighted-backends", {"name": "echo", "port": 80}, [
        {"backendRefs": [backend("echo-v1", 8080, weight=70), backend("echo-v2", 8080, weight=30)]}]))

    def share() -> dict[str, float]:
        seen: dict[str, int] = {}
        for _ in range(500):
            pod = mesh.call("echo").pod
            seen[str(pod)] = seen.get(str(pod), 0) + 1
        return {k: v / 500 for k, v in seen.items()}

    # The suite's rule: each share within 0.05 of its weight, in one of up to 10 batches of 500.
    until(mesh, lambda: mesh.call("echo").status == 200, "the weights")
    batches = []
    for _ in range(10):
        batches.append(share())
        b = batches[-1]
        if set(b) == {"echo-v1", "echo-v2"} and abs(b["echo-v1"] - 0.7) <= 0.05 and abs(b["echo-v2"] - 0.3) <= 0.05:
            return
    pytest.fail(f"no batch of 500 split 70/30 within 0.05: {batches}")


def test_mesh_grpc_route_weight(mesh):
    """MeshGRPCRouteWeight: 70/30 between echo-v1 and echo-v2 on port 7070
    (grpc), and a third backend of weight 0 that does not exist."""
    mesh.apply({"kind": "GRPCRoute", "metadata": {"name": "mesh-grpc-weighted-backends", "namespace": NS},
                "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 7070}],
                         "rules": [{"backendRefs": [backend("echo-v1", 7070, weight=70),
                                                    backend("echo-v2", 7070, weight=30),
                                                    backend("echo-v3", 7070, weight=0)]}]}})
    until(mesh, lambda: mesh.grpc_call() in ("echo-v1", "echo-v2"), "the GRPCRoute")
    batches = []
    for _ in range(10):
        seen: dict[str, int] = {}
        for _ in range(500):
            who = mesh.grpc_call()
            seen[who] = seen.get(who, 0) + 1
        batches.append(seen)
        if set(seen) == {"echo-v1", "echo-v2"} and abs(seen["echo-v1"] / 500 - 0.7) <= 0.05:
            return
    pytest.fail(f"no batch of 500 calls split 70/30 within 0.05: {batches}")


# ---- filters on a backendRef -------------------------------------------------------
# The suite has scenarios for header modifiers on a backendRef only (above);
# this one holds the other filters a backendRef takes in Trellis to the same
# standard: each acts on the requests sent to its backend, and no other.

def test_mesh_backend_filters(mesh):
    fault = {"apiVersion": "trellis.dev/v1alpha1", "kind": "FaultInjection",
             "metadata": {"name": "teapot", "namespace": NS}, "spec": {"abort": {"httpStatus": 418, "percent": 100}}}

    def rewrite(prefix: str) -> dict:
        return {"type": "URLRewrite", "urlRewrite": {
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix}}}
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": backend("echo-v1", 8080)}}
    teapot = {"type": "ExtensionRef", "extensionRef": {"group": "trellis.dev", "kind": "FaultInjection",
                                                         "name": "teapot"}}
    mesh.apply(fault, route("mesh-backend-filters", {"name": "echo", "port": 80}, [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/split"}}],
         "backendRefs": [backend("echo-v1", 80, 1, filters=[rewrite("/one")]),
                         backend("echo-v2", 80, 1, filters=[rewrite("/two"), mirror])]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/faulty"}}],
         "backendRefs": [backend("echo-v1", 80, 1), backend("echo-v2", 80, 1, filters=[teapot])]}]))
    until(mesh, lambda: mesh.call("echo", "/split/x").echo is not None and
          mesh.call("echo", "/split/x").echo["path"] in ("/one/x", "/two/x"), "the rewrites")

    RECEIVED.clear()
    served: dict[str, str] = {}
    for i in range(24):
        a = mesh.call("echo", f"/split/{i}")
        assert a.status == 200, a
        want = {"echo-v1": f"/one/{i}", "echo-v2": f"/two/{i}"}[a.pod]
        assert a.echo["path"] == want, (i, a)
        served[str(i)] = a.pod
    assert set(served.values()) == {"echo-v1", "echo-v2"}, served
    # echo-v2's share is copied to echo-v1 (on its other port), as echo-v2 got it.
    copies = {(i, pod) for i, pod in served.items() if pod == "echo-v2"}
    assert wait_until(lambda: all((("echo-v1", NS, f"/two/{i}") in RECEIVED) for i, _ in copies), 5), RECEIVED
    for i, pod in served.items():
        paths = [p for who, ns, p in RECEIVED if p.endswith(f"/{i}")]
        want = [f"/one/{i}"] if pod == "echo-v1" else [f"/two/{i}", f"/two/{i}"]
        assert sorted(paths) == want, (i, pod, paths)

    # The fault is echo-v2's: its share is answered 418, echo-v1's is served.
    answers = [mesh.call("echo", "/faulty") for _ in range(24)]
    assert {(a.status, a.pod) for a in answers} == {(200, "echo-v1"), (418, None)}, answers
    assert not any(p == "/faulty" for who, ns, p in RECEIVED if who == "echo-v2"), RECEIVED

    # What such a route is, as `trellis get` shows it.
    status, body = mesh.control.request("GET", f"/v1/resources/httproutes/{NS}/mesh-backend-filters")
    assert status == 200, body
    conditions = {c["type"]: c["status"] for c in body["status"]["parents"][0]["conditions"]}
    assert conditions == {"Accepted": "True", "ResolvedRefs": "True"}, body


def test_mesh_grpc_route_missing_backend_is_unavailable(mesh):
    """Calls for a GRPCRoute backend that does not exist get UNAVAILABLE, as
    the GRPCRoute API says (an HTTPRoute's requests get 500)."""
    mesh.apply({"kind": "GRPCRoute", "metadata": {"name": "grpc-missing-backend", "namespace": NS},
                "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 7070}],
                         "rules": [{"backendRefs": [backend("nonexistent", 7070)]}]}})

    def code():
        with grpc.insecure_channel(f"{LOCALHOST}:{mesh.client}",
                                   options=[("grpc.default_authority", "echo:7070")]) as channel:
            try:
                channel.unary_unary("/test.Echo/Unary")(b"x", timeout=5)
                return grpc.StatusCode.OK
            except grpc.RpcError as e:
                return e.code()
    until(mesh, lambda: code() == grpc.StatusCode.UNAVAILABLE, "the GRPCRoute")
    status, body = mesh.control.request("GET", f"/v1/resources/grpcroutes/{NS}/grpc-missing-backend")
    assert status == 200, body
    resolved = body["status"]["parents"][0]["conditions"][1]
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound"), body
    assert "calls for these backends get UNAVAILABLE" in resolved["message"], body


def test_mesh_grpc_route_request_header_modifier(mesh):
    def rule(case: str, backend_name: str, **changes) -> dict:
        return {"matches": [{"headers": [{"name": "x-test-case", "value": case}]}],
                "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": changes}],
                "backendRefs": [backend(backend_name, 7070)]}
    mesh.apply({"kind": "GRPCRoute", "metadata": {"name": "grpc-request-header-modifier", "namespace": NS},
                "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 7070}], "rules": [
                    rule("set", "echo-v1", set=[{"name": "x-header-set", "value": "set-overwrites-values"}]),
                    rule("add", "echo-v1", add=[{"name": "x-header-add", "value": "add-appends-values"}]),
                    rule("remove", "echo-v1", remove=["x-header-remove"]),
                    rule("multi", "echo-v2",
                         set=[{"name": "x-header-set-1", "value": "header-set-1"},
                              {"name": "x-header-set-2", "value": "header-set-2"}],
                         add=[{"name": "x-header-add-1", "value": "header-add-1"},
                              {"name": "x-header-add-2", "value": "header-add-2"}],
                         remove=["x-header-remove-1", "x-header-remove-2"])]}})
    cases = [
        ("set", {"some-other-header": "this-header-should-be-set", "x-header-set": "this-value-should-be-overwritten"},
         "echo-v1", {"some-other-header": "this-header-should-be-set", "x-header-set": "set-overwrites-values"}, []),
        ("add", {"x-header-add": "this-value-should-be-appended"}, "echo-v1",
         {"x-header-add": "this-value-should-be-appended,add-appends-values"}, []),
        ("remove", {"x-header-remove": "this-should-be-removed"}, "echo-v1", {}, ["x-header-remove"]),
        ("multi", {"x-header-set-2": "set-header-2", "x-header-add-2": "add-header-2",
                   "x-header-remove-2": "should-be-removed-2"}, "echo-v2",
         {"x-header-set-1": "header-set-1", "x-header-set-2": "header-set-2", "x-header-add-1": "header-add-1",
          "x-header-add-2": "add-header-2,header-add-2"}, ["x-header-remove-1", "x-header-remove-2"]),
    ]
    until(mesh, lambda: (mesh.grpc_metadata({"x-test-case": "multi"}) or {}).get("name") == "echo-v2", "the GRPCRoute")
    for case, sent, who, seen, absent in cases:
        answer = mesh.grpc_metadata({"x-test-case": case, **sent})
        assert answer is not None and answer["name"] == who, (case, answer)
        got = {k: ",".join(v) for k, v in answer["metadata"].items()}
        assert got.get("x-test-case") == case, (case, got)
        for k, v in seen.items():
            assert got.get(k) == v, (case, k, got)
        for k in absent:
            assert k not in got, (case, k, got)
    assert mesh.grpc_metadata({}) is None, "no rule matches a call without x-test-case: 404, UNIMPLEMENTED"
