"""gRPC end to end with a real gRPC server and client (python3-grpcio):
unary and the three streaming kinds through two sidecars talking mTLS, the
destination sidecar restoring HTTP/2 for the application; deadlines; retries
on UNAVAILABLE while one of three servers is killed under load; gRPC health
checks taking a NOT_SERVING server out of rotation and back."""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from harness import (LOCALHOST, Pki, call, cluster, free_port, http_listener, http_responder, metric,
                     proxy_config, route, sidecar_config, wait_until)

TD = "cluster.local"
CLIENT = f"spiffe://{TD}/ns/default/sa/frontend"
SERVER = f"spiffe://{TD}/ns/default/sa/echo"
SERVER_SCRIPT = Path(__file__).with_name("grpc_server.py")


class GrpcServer:
    """tests/integration/grpc_server.py in its own process, so it can be killed."""

    def __init__(self, fleet, name: str):
        self.name = name
        self.port = free_port()
        self.service = fleet.spawn(f"grpc-{name}", [sys.executable, SERVER_SCRIPT, self.port, name])
        wait_until(lambda: "ready" in self.service.stdout() or not self.service.running(), 20)
        assert self.service.running(), self.service.stderr()

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def set_serving(self, serving: bool) -> None:
        with grpc.insecure_channel(self.address) as channel:
            assert channel.unary_unary("/test.Echo/SetServing")(b"1" if serving else b"0", timeout=5) == b"ok"


def apply(control, resource: dict) -> None:
    status, body = control.apply(resource)
    assert status in (200, 201), f"apply {resource['kind']}: {status} {body}"


def channel_to(port: int, authority: str = "echo") -> grpc.Channel:
    return grpc.insecure_channel(f"{LOCALHOST}:{port}", options=[("grpc.default_authority", authority)])


def two_sidecars(fleet, app_address: str):
    """client -> client sidecar -> mTLS, HTTP/2 -> server sidecar -> app, in the
    protocol the client spoke."""
    pki = Pki(fleet.dir / "pki")
    inbound = http_listener("inbound", [route("app")])
    inbound["tls"] = {"mode": "STRICT"}
    server_cfg = proxy_config([inbound], [cluster("app", app_address, protocol="downstream")])
    server_cfg["mtls"] = pki.issue("echo", SERVER)
    server = fleet.proxy(server_cfg)
    client_cfg = proxy_config(
        [http_listener("outbound", [route("echo", timeout="2s")])],
        [cluster("echo", {"address": f"{LOCALHOST}:{server.port('inbound')}", "identity": SERVER})])
    client_cfg["mtls"] = pki.issue("frontend", CLIENT)
    client = fleet.proxy(client_cfg)
    return client, server


@pytest.fixture
def mesh(fleet):
    return two_sidecars(fleet, GrpcServer(fleet, "a").address)


def test_http1_requests_reach_the_application_in_http1_across_the_mesh(fleet):
    app = fleet.upstream(http_responder())
    client, server = two_sidecars(fleet, app.address)
    status, body = call(client.port("outbound"), "/x", host="echo")
    assert status == 200, body
    request = app.requests()[-1]
    assert request.version == "HTTP/1.1" and request.target == "/x"
    assert request.header("trellis-original-protocol") is None, "the mesh's own field stays in the mesh"


def test_unary_and_every_streaming_kind_through_two_sidecars(mesh):
    client, server = mesh
    with channel_to(client.port("outbound")) as channel:
        assert channel.unary_unary("/test.Echo/Unary")(b"hello", timeout=5) == b"a:hello"
        # 2,000 messages from the server, flow-controlled along the way.
        got = list(channel.unary_stream("/test.Echo/ServerStream")(b"2000", timeout=10))
        assert got == [str(i).encode() for i in range(2000)]
        parts = [b"x" * 1000 + str(i).encode() for i in range(300)]
        assert channel.stream_unary("/test.Echo/ClientStream")(iter(parts), timeout=10) == b",".join(parts)

        # Bidirectional: each answer comes before the next message is sent.
        outgoing: list[bytes] = []
        ready = threading.Semaphore(0)

        def messages():
            for i in range(50):
                ready.acquire(timeout=5)
                message = f"m{i}".encode()
                outgoing.append(message)
                yield message

        ready.release()
        answers = []
        for answer in channel.stream_stream("/test.Echo/Bidi")(messages(), timeout=10):
            answers.append(answer)
            ready.release()
        assert answers == [m.upper() for m in outgoing] and len(answers) == 50

        # An error status crosses both sidecars as it was sent.
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary("/test.Echo/Unary")(b"fail:5", timeout=5)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert failed.value.details() == "failed as asked"

    for proxy, listener in ((client, "outbound"), (server, "inbound")):
        stats = proxy.stats()
        assert metric(stats, "trellis_grpc_requests_total", listener=listener, grpc_status="0") == 4
        assert metric(stats, "trellis_grpc_requests_total", listener=listener, grpc_status="5") == 1


def test_deadlines_are_kept_and_capped_by_the_route(mesh):
    client, _ = mesh
    with channel_to(client.port("outbound")) as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        with pytest.raises(grpc.RpcError) as failed:
            unary(b"sleep:3000", timeout=0.3)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The client allows 10 s; the route's 2 s timeout ends the call first.
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            unary(b"sleep:4000", timeout=10)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3.5
        assert unary(b"sleep:100", timeout=5) == b"a:sleep:100"


def test_retries_on_unavailable_while_one_of_three_servers_is_killed(fleet):
    servers = [GrpcServer(fleet, name) for name in ("a", "b", "c")]
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("echo")])],
        [cluster("echo", *(s.address for s in servers), protocol="http2",
                 retry={"attempts": 3, "retry_on": ["unavailable"], "backoff": {"base": "10ms", "max": "50ms"}},
                 outlier_detection={"consecutive_gateway_errors": 2, "always_eject_one": True,
                                    "base_ejection_time": "60s"})]))
    total, kill_after, workers = 3000, 1000, 8
    done = 0
    failures: list[str] = []
    by_server: dict[bytes, int] = {}
    lock = threading.Lock()
    killed = threading.Event()

    def worker(n: int) -> None:
        nonlocal done
        with channel_to(proxy.port("web")) as channel:
            unary = channel.unary_unary("/test.Echo/Unary")
            for _ in range(n):
                try:
                    answer = unary(b"x", timeout=5)
                    with lock:
                        by_server[answer[:1]] = by_server.get(answer[:1], 0) + 1
                except grpc.RpcError as e:
                    with lock:
                        failures.append(f"{e.code()}: {e.details()}")
                with lock:
                    done += 1
                    if done == kill_after:
                        servers[2].service.kill()
                        killed.set()

    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(worker, total // workers) for _ in range(workers)]:
            f.result(timeout=120)
    assert killed.is_set()
    assert len(failures) <= total // 1000, f"{len(failures)} of {total} calls failed: {failures[:5]}"
    assert by_server.get(b"a", 0) > 500 and by_server.get(b"b", 0) > 500
    stats = proxy.stats()
    assert metric(stats, "trellis_upstream_retries_total", cluster="echo") >= 1


def test_grpc_health_checks_take_a_not_serving_server_out_and_back(fleet):
    servers = [GrpcServer(fleet, name) for name in ("a", "b")]
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("echo")])],
        [cluster("echo", *(s.address for s in servers), protocol="http2", lb_policy="round_robin",
                 health_check={"grpc": {"service": "test.Echo"}, "interval": "200ms", "timeout": "150ms",
                               "unhealthy_threshold": 1, "healthy_threshold": 1, "jitter_percent": 0})]))

    def answering(channel) -> set[bytes]:
        unary = channel.unary_unary("/test.Echo/Unary")
        return {unary(b"x", timeout=5)[:1] for _ in range(20)}

    with channel_to(proxy.port("web")) as channel:
        assert answering(channel) == {b"a", b"b"}
        servers[1].set_serving(False)
        wait_until(lambda: answering(channel) == {b"a"}, 10)
        servers[1].set_serving(True)
        wait_until(lambda: answering(channel) == {b"a", b"b"}, 10)
    assert "NOT_SERVING" in proxy.output()


def test_a_grpc_health_check_of_an_unknown_service_fails(fleet):
    servers = [GrpcServer(fleet, name) for name in ("a", "b")]
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("echo")])],
        [cluster("echo", servers[0].address, protocol="http2", lb_policy="round_robin",
                 health_check={"grpc": {"service": "other.Service"}, "interval": "200ms", "timeout": "150ms",
                               "unhealthy_threshold": 1, "jitter_percent": 0}),
         cluster("echo2", servers[1].address, lb_policy="round_robin",
                 health_check={"grpc": {}, "interval": "200ms", "timeout": "150ms", "unhealthy_threshold": 1,
                               "jitter_percent": 0})]))
    wait_until(lambda: "SERVICE_UNKNOWN" in proxy.output(), 10)
    # The whole server is SERVING: the second cluster's endpoint stays healthy,
    # over HTTP/2 though the cluster sends its requests in HTTP/1.1.
    time.sleep(1)
    assert "echo2 endpoint" not in proxy.output()


def test_a_grpcroute_from_the_control_plane_routes_calls_by_method_through_sidecars(fleet):
    """Each gRPC server behind its own sidecar, registered by it; the
    frontend's sidecar routes by the GRPCRoute and checks the instances with
    the DestinationPolicy's gRPC health check."""
    control = fleet.control_plane()
    servers, inbound = {}, {}
    for version in ("v1", "v2"):
        app = GrpcServer(fleet, version)
        inbound[version] = f"{LOCALHOST}:{free_port()}"
        fleet.proxy(sidecar_config(control, "cart", node_id=f"cart-{version}",
                                   instance={"address": inbound[version], "app_address": app.address,
                                             "labels": {"version": version}}))
        servers[version] = app
    outbound = free_port()
    frontend = fleet.proxy(sidecar_config(control, "frontend", outbound_port=outbound, upstream_services=["cart"]))
    apply(control, {"apiVersion": "trellis.dev/v1alpha1", "kind": "DestinationPolicy", "metadata": {"name": "cart"},
                    "spec": {"targetRef": {"kind": "Service", "name": "cart"},
                             "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                         {"name": "v2", "labels": {"version": "v2"}}],
                             "retries": {"attempts": 2, "retryOn": ["unavailable"]},
                             "healthCheck": {"grpc": {"service": "test.Echo"}, "interval": "300ms",
                                             "timeout": "200ms", "unhealthyThreshold": 1,
                                             "healthyThreshold": 1}}})
    apply(control, {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
                    "metadata": {"name": "cart"},
                    "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "cart"}], "rules": [
                        {"matches": [{"method": {"service": "test.Echo", "method": "Unary"},
                                      "headers": [{"name": "x-canary", "value": "1"}]}],
                         "backendRefs": [{"group": "trellis.dev", "kind": "Subset", "name": "cart/v2",
                                          "port": 9090}]},
                        {"backendRefs": [{"group": "trellis.dev", "kind": "Subset", "name": "cart/v1",
                                          "port": 9090}]}]}})

    def unary_answer() -> bytes:
        try:
            with channel_to(outbound, "cart") as channel:
                return channel.unary_unary("/test.Echo/Unary")(b"x", timeout=2)
        except grpc.RpcError:
            return b""

    assert wait_until(lambda: unary_answer() == b"v1:x", 15), "the GRPCRoute never applied"
    with channel_to(outbound, "cart") as channel:
        assert all(channel.unary_unary("/test.Echo/Unary")(b"x", timeout=5) == b"v1:x" for _ in range(20))
        assert list(channel.unary_stream("/test.Echo/ServerStream")(b"3", timeout=5)) == [b"0", b"1", b"2"]
        canary = channel.unary_unary("/test.Echo/Unary")
        assert all(canary(b"x", timeout=5, metadata=[("x-canary", "1")]) == b"v2:x" for _ in range(20))
    # v1 says NOT_SERVING: the frontend's check, made over mTLS through
    # v1's sidecar, sees it. (Alone in its subset, v1 still gets the calls:
    # with no healthy endpoint a cluster spreads over all, panic mode.)
    # (Before, v2's first check may have failed while its sidecar was still
    # taking its configuration: only what follows the flip counts.)
    before = len(frontend.output())
    servers["v1"].set_serving(False)
    assert wait_until(lambda: f"{inbound['v1']} is unhealthy (NOT_SERVING)" in frontend.output()[before:], 10), \
        frontend.output()[-2000:]
    assert f"{inbound['v2']} is unhealthy" not in frontend.output()[before:], "v2 serves and must stay healthy"
    servers["v1"].set_serving(True)
    assert wait_until(lambda: f"{inbound['v1']} is healthy again" in frontend.output()[before:], 10)
