"""gRPC calls through the proxy: the grpc-status each ends with (from the
upstream's trailers, or a trailers-only response) is logged and counted, and
the proxy's own answers to a gRPC client are gRPC responses (HTTP 200 with
grpc-status and grpc-message), not HTML or plain text."""

import json
import socket
import time

import h2.config
import h2.connection
import h2.events

from harness import (LOCALHOST, chunked_response, cluster, http_listener, http_response, http_responder,
                     metric, named_responder, proxy_config, route, wait_until)

GRPC_FRAME = b"\x00\x00\x00\x00\x03abc"  # one uncompressed message of 3 bytes


def grpc_call(port: int, path: str = "/pkg.Service/Method", timeout: float = 5, extra=()) -> dict:
    """One unary call over h2c; returns the response's headers, data and trailers."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True,
                                                                       header_encoding="utf-8"))
    out = {"headers": {}, "data": b"", "trailers": {}, "ended": False}
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", f"{LOCALHOST}:{port}"),
                              (":path", path), ("content-type", "application/grpc"), ("te", "trailers"),
                              *extra])
        conn.send_data(1, GRPC_FRAME, end_stream=True)
        sock.sendall(conn.data_to_send())
        while not out["ended"]:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    out["headers"] = dict(event.headers)
                elif isinstance(event, h2.events.TrailersReceived):
                    out["trailers"] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    out["data"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    out["ended"] = True
            if conn.data_to_send():
                sock.sendall(conn.data_to_send())
    return out


def test_the_proxys_own_answers_to_grpc_clients_are_grpc_responses(fleet):
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("empty", prefix="/pkg.Empty/")])],
        [cluster("empty")]))
    port = proxy.port()
    # No route: UNIMPLEMENTED, trailers-only, HTTP 200.
    answer = grpc_call(port, "/pkg.Unknown/Method")
    assert answer["headers"][":status"] == "200", answer
    assert answer["headers"]["content-type"] == "application/grpc"
    assert answer["headers"]["grpc-status"] == "12" and answer["headers"]["grpc-message"] == "no route", answer
    assert answer["data"] == b""
    # No healthy upstream: UNAVAILABLE.
    answer = grpc_call(port, "/pkg.Empty/Method")
    assert answer["headers"][":status"] == "200" and answer["headers"]["grpc-status"] == "14", answer
    assert answer["headers"]["grpc-message"] == "no healthy upstream"
    stats = proxy.stats()
    assert metric(stats, "trellis_grpc_requests_total", listener="web", grpc_status="12") == 1
    assert metric(stats, "trellis_grpc_requests_total", listener="web", grpc_status="14") == 1


def test_the_grpc_status_of_each_call_is_logged_and_counted(fleet):
    def respond(req):
        method = req.target.rsplit("/", 1)[-1]
        if method == "Ok":
            return chunked_response([b"\x00\x00\x00\x00\x01z"], trailers=[("grpc-status", "0")],
                                    headers=[("Content-Type", "application/grpc")])
        if method == "NotFound":
            return chunked_response([], trailers=[("grpc-status", "5"), ("grpc-message", "no such thing")],
                                    headers=[("Content-Type", "application/grpc")])
        # Trailers-only: the status in the headers, no body.
        return http_response(200, b"", headers=[("Content-Type", "application/grpc"), ("grpc-status", "14")])
    upstream = fleet.upstream(http_responder(respond))
    log = fleet.dir / "access.log"
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("app")])], [cluster("app", upstream)],
                                     access_log=log))
    port = proxy.port()
    ok = grpc_call(port, "/pkg.Service/Ok")
    assert ok["headers"][":status"] == "200" and ok["trailers"].get("grpc-status") == "0", ok
    missing = grpc_call(port, "/pkg.Service/NotFound")
    assert missing["trailers"].get("grpc-status") == "5", missing
    unavailable = grpc_call(port, "/pkg.Service/Down")
    assert unavailable["headers"].get("grpc-status") == "14", unavailable
    assert wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, 5)
    statuses = {json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line).get("grpc_status")
                for line in log.read_text().splitlines()}
    assert statuses == {"Ok": 0, "NotFound": 5, "Down": 14}, statuses
    stats = proxy.stats()
    # All three are HTTP 200; two of them are gRPC errors.
    assert metric(stats, "trellis_http_requests_total", listener="web", code_class="2xx") == 3
    for code, count in (("0", 1), ("5", 1), ("14", 1)):
        assert metric(stats, "trellis_grpc_requests_total", listener="web", grpc_status=code) == count
    # In the golden metrics, the two gRPC errors are failures despite their 200.
    for code, classification in (("0", "success"), ("5", "failure"), ("14", "failure")):
        assert metric(stats, "trellis_requests_total", destination_service="app", status_code="200",
                      grpc_status=code, classification=classification) == 1, (code, classification)
    assert metric(stats, "trellis_request_duration_seconds_count", destination_service="app",
                  classification="failure") == 2


def test_grpc_timeout_is_the_calls_deadline_capped_by_the_route(fleet):
    slow = fleet.upstream(named_responder("late", delay=3))
    proxy = fleet.proxy(proxy_config(
        [http_listener("web", [route("app", prefix="/pkg.Capped/", timeout="300ms"), route("app")])],
        [cluster("app", slow)]))
    port = proxy.port()
    started = time.monotonic()
    answer = grpc_call(port, "/pkg.Service/Slow", extra=[("grpc-timeout", "200m")])
    elapsed = time.monotonic() - started
    assert answer["headers"].get("grpc-status") == "4", answer  # DEADLINE_EXCEEDED
    assert elapsed < 2, elapsed
    # A longer grpc-timeout than the route's timeout: the route's wins.
    started = time.monotonic()
    answer = grpc_call(port, "/pkg.Capped/Slow", extra=[("grpc-timeout", "10S")])
    assert answer["headers"].get("grpc-status") == "4" and time.monotonic() - started < 2, answer
    # A malformed grpc-timeout is no deadline: the call waits for its answer.
    answer = grpc_call(port, "/pkg.Service/Slow", extra=[("grpc-timeout", "soon")], timeout=10)
    assert answer["headers"].get(":status") == "200" and answer["data"] == b"late", answer
