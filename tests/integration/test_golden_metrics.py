"""Golden metrics as a user reads them from /stats: each request counted by
both sidecars it crossed with who called whom (the caller known from its
certificate on the inbound side), the route, status and classification;
failures told from successes (gRPC ones in test_grpc.py); TCP connections
and bytes; nothing a request carries ever becomes a label."""

import socket

from harness import (LOCALHOST, call, cluster, free_port, http_listener, metric, metric_samples, proxy_config,
                     route, sidecar_config, tcp_listener, wait_until)

SERVICES = dict(source_service="productpage", source_namespace="default", destination_service="details",
                destination_namespace="default")


def test_each_request_is_counted_by_both_sidecars_with_who_called_whom(fleet, nginx):
    control = fleet.control_plane()
    inbound_port = free_port()
    details = fleet.proxy(sidecar_config(
        control, "details", instance={"address": f"{LOCALHOST}:{inbound_port}", "app_address": nginx.address(0)}))
    outbound_port = free_port()
    productpage = fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound_port,
                                             upstream_services=["details"]))
    status, body = control.apply({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "details-hello"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "details"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/hello"}}],
                            "backendRefs": [{"name": "details", "port": 80}]}]}})
    assert status in (200, 201), body

    def routed() -> bool:
        call(outbound_port, "/hello", host="details")
        return metric(productpage.stats(), "trellis_requests_total", route="default/details-hello") > 0

    assert wait_until(routed, 10), "the HTTPRoute never showed in the route label"
    out_before, in_before = productpage.stats(), details.stats()
    for _ in range(20):
        assert call(outbound_port, "/hello", host="details")[0] == 200
    for _ in range(5):  # a Service with routes is served by them alone: no rule matches, 404
        assert call(outbound_port, "/other", host="details") == (404, b"no route\n")

    def delta(proxy, before, name, **labels) -> float:
        return metric(proxy.stats(), name, **labels) - metric(before, name, **labels)

    outbound = dict(direction="outbound", tls="true", **SERVICES)
    inbound = dict(direction="inbound", tls="true", **SERVICES)
    assert wait_until(lambda: delta(details, in_before, "trellis_requests_total", **inbound) == 20, 5)
    assert delta(productpage, out_before, "trellis_requests_total", route="default/details-hello", status_code="200",
                 classification="success", **outbound) == 20
    assert delta(details, in_before, "trellis_requests_total", status_code="200", classification="success",
                 **inbound) == 20
    for proxy, before, labels in ((productpage, out_before, outbound), (details, in_before, inbound)):
        assert delta(proxy, before, "trellis_request_duration_seconds_count", classification="success",
                     **labels) == 20
        assert delta(proxy, before, "trellis_request_duration_seconds_bucket", le="+Inf", **labels) == 20
        assert delta(proxy, before, "trellis_request_bytes_total", **labels) > 20 * len("GET /hello HTTP/1.1")
        assert delta(proxy, before, "trellis_response_bytes_total", **labels) > 20 * len("hello world\n")
    # Each sidecar counts only its own side of the hop.
    assert metric(productpage.stats(), "trellis_requests_total", direction="inbound") == 0
    assert metric(details.stats(), "trellis_requests_total", direction="outbound") == 0


def test_failures_are_classified_and_nothing_from_a_request_becomes_a_label(fleet, nginx):
    closed = free_port()  # nothing listens there
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("down", prefix="/down"), {**route("up"), "name": "catch-all"}])],
        [cluster("up", nginx), cluster("down", closed, service="payments", namespace="shop")]))
    port = proxy.port()
    for i in range(3):
        assert call(port, f"/down/x{i}?user=u{i}", headers={"x-user": f"secret-{i}"})[0] == 503
    for i in range(4):
        assert call(port, f"/path-{i}", host=f"host-{i}.example")[0] == 200
    stats = proxy.stats()
    failed = dict(direction="outbound", destination_service="payments", destination_namespace="shop", route="")
    assert metric(stats, "trellis_requests_total", status_code="503", classification="failure", **failed) == 3
    assert metric(stats, "trellis_request_duration_seconds_count", classification="failure", **failed) == 3
    assert metric(stats, "trellis_requests_total", destination_service="up", route="catch-all",
                  source_service="unknown", status_code="200", classification="success") == 4
    values = {v for name in ("trellis_requests_total", "trellis_request_duration_seconds_bucket")
              for labels in metric_samples(stats, name) for _, v in labels}
    assert not any(s in v for v in values for s in ("/down", "/path", "user", "secret", "host-")), values
    # One series per status and label set, not one per request.
    assert len(metric_samples(stats, "trellis_requests_total")) == 2


def test_tcp_connections_and_their_bytes_are_counted(fleet, nginx):
    proxy = fleet.proxy(proxy_config([tcp_listener("db", "postgres")],
                                     [cluster("postgres", nginx, service="postgres", namespace="data")]))
    request = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers = []
    for _ in range(2):
        with socket.create_connection((LOCALHOST, proxy.port("db")), timeout=5) as s:
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            answers.append(data)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
    labels = dict(direction="outbound", destination_service="postgres", destination_namespace="data", tls="false")

    def closed() -> bool:
        return metric(proxy.stats(), "trellis_tcp_connections_closed_total", **labels) == 2

    assert wait_until(closed, 5)
    stats = proxy.stats()
    assert metric(stats, "trellis_tcp_connections_opened_total", **labels) == 2
    assert metric(stats, "trellis_tcp_received_bytes_total", **labels) == 2 * len(request)
    assert metric(stats, "trellis_tcp_sent_bytes_total", **labels) == sum(len(a) for a in answers)
    assert metric(stats, "trellis_requests_total") == 0
