"""Distributed tracing as a user sees it in their collector: requests
through three services, each behind its sidecar, make one tree of spans
(client span on the caller's sidecar, server span on the callee's) with the
right parents, kinds and timings, exported over OTLP/HTTP to a small
receiver; W3C and B3 contexts continued; parent-based sampling and the
sampling ratio over 10,000 requests."""

import http.client
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import (LOCALHOST, call, cluster, free_port, http_listener, http_response, http_responder, metric,
                     proxy_config, route, sidecar_config, wait_until)

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


class OtlpReceiver:
    """POST /v1/traces (OTLP/HTTP, JSON): keeps every span with its service."""

    def __init__(self):
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = self.path == "/v1/traces" and self.headers["Content-Type"] == "application/json"
                if ok:
                    for rs in json.loads(body)["resourceSpans"]:
                        service = {a["key"]: a["value"]["stringValue"] for a in rs["resource"]["attributes"]}
                        for ss in rs["scopeSpans"]:
                            with receiver.lock:
                                receiver.spans += [dict(s, service=service["service.name"]) for s in ss["spans"]]
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def of_trace(self, trace_id: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if s["traceId"] == trace_id]

    def count(self) -> int:
        with self.lock:
            return len(self.spans)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = OtlpReceiver()
    yield r
    r.close()


def attributes(span: dict) -> dict:
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


def test_three_services_make_one_tree_of_spans(fleet, nginx, receiver):
    control = fleet.control_plane()
    # Set for the whole mesh; only what the caller samples is traced.
    status, body = control.apply({"apiVersion": "trellis.dev/v1alpha1", "kind": "MeshConfig",
                                  "metadata": {"name": "default"},
                                  "spec": {"tracing": {"collector": receiver.address, "samplingPercent": 0}}})
    assert status == 201, body
    db_port = free_port()
    fleet.proxy(sidecar_config(control, "db", instance={"address": f"{LOCALHOST}:{db_port}",
                                                        "app_address": nginx.address(0)}))
    api_out = free_port()
    seen = []

    def api_app(req) -> bytes:
        # The application passes the context on, as instrumented code does.
        seen.append(req.header("traceparent"))
        conn = http.client.HTTPConnection(LOCALHOST, api_out, timeout=5)
        conn.request("GET", "/hello", headers={"Host": "db", "traceparent": req.header("traceparent") or ""})
        status = conn.getresponse().status
        conn.close()
        return http_response(200 if status == 200 else 502, b"api\n")

    app = fleet.upstream(http_responder(api_app))
    api_in = free_port()
    fleet.proxy(sidecar_config(control, "api", instance={"address": f"{LOCALHOST}:{api_in}",
                                                         "app_address": app.address},
                               outbound_port=api_out, upstream_services=["db"]))
    web_out = free_port()
    web = fleet.proxy(sidecar_config(control, "web", outbound_port=web_out, upstream_services=["api"]))
    assert wait_until(lambda: call(web_out, "/ready", host="api")[0] == 200, 10)

    parent = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
    assert call(web_out, "/orders?id=7", host="api", headers={"traceparent": parent}) == (200, b"api\n")
    assert wait_until(lambda: len(receiver.of_trace(PARENT_TRACE)) >= 4, 10), receiver.spans
    spans = receiver.of_trace(PARENT_TRACE)
    assert len(spans) == 4, spans
    by_parent = {s.get("parentSpanId"): s for s in spans}
    assert len(by_parent) == 4, "two spans share a parent"
    # web's client span -> api's server span -> api's client span -> db's server span.
    chain, at = [], PARENT_SPAN
    while at in by_parent:
        chain.append(by_parent[at])
        at = chain[-1]["spanId"]
    assert [(s["service"], s["kind"]) for s in chain] == [("web", 3), ("api", 2), ("api", 3), ("db", 2)], chain
    for outer, inner in zip(chain, chain[1:]):
        assert int(outer["startTimeUnixNano"]) <= int(inner["startTimeUnixNano"]), (outer, inner)
        assert int(inner["endTimeUnixNano"]) <= int(outer["endTimeUnixNano"]), (outer, inner)
    first = attributes(chain[0])
    assert first["http.request.method"] == "GET" and first["url.path"] == "/orders"
    assert first["http.response.status_code"] == "200" and first["trellis.destination.service"] == "api"
    assert attributes(chain[1])["trellis.source.service"] == "web"  # from web's certificate
    assert attributes(chain[3])["trellis.destination.service"] == "db"
    assert all(s["status"]["code"] == 0 for s in chain)
    # The application saw its own sidecar's server span as its parent.
    assert seen[-1] == f"00-{PARENT_TRACE}-{chain[1]['spanId']}-01"
    stats = web.stats()
    assert metric(stats, "trellis_tracing_spans_total", outcome="exported") >= 1
    # An unsampled parent is never traced.
    assert call(web_out, "/x", host="api", headers={"traceparent": parent[:-2] + "00"})[0] == 200
    other = "00-11111111111111111111111111111111-2222222222222222-00"
    assert call(web_out, "/x", host="api", headers={"traceparent": other})[0] == 200
    assert not wait_until(lambda: receiver.of_trace("1" * 32), 2)


def test_b3_contexts_are_continued_in_their_own_form(fleet, receiver):
    upstream = fleet.upstream(http_responder())
    cfg = proxy_config([http_listener("web", [route("app")])], [cluster("app", upstream)])
    cfg["tracing"] = {"collector": receiver.address, "sampling": 0}
    proxy = fleet.proxy(cfg)
    port = proxy.port()
    assert call(port, "/multi", headers={"X-B3-TraceId": PARENT_TRACE, "X-B3-SpanId": PARENT_SPAN,
                                         "X-B3-Sampled": "1"})[0] == 200
    assert call(port, "/single", headers={"b3": f"{PARENT_TRACE}-{PARENT_SPAN}-1"})[0] == 200
    assert wait_until(lambda: len(receiver.of_trace(PARENT_TRACE)) == 2, 10)
    spans = {attributes(s)["url.path"]: s for s in receiver.of_trace(PARENT_TRACE)}
    multi, single = upstream.requests()[-2:]
    assert multi.header("x-b3-traceid") == PARENT_TRACE
    assert multi.header("x-b3-spanid") == spans["/multi"]["spanId"]
    assert multi.header("x-b3-parentspanid") == PARENT_SPAN and multi.header("x-b3-sampled") == "1"
    assert single.header("b3") == f"{PARENT_TRACE}-{spans['/single']['spanId']}-1-{PARENT_SPAN}"
    for req, path in ((multi, "/multi"), (single, "/single")):
        assert spans[path]["parentSpanId"] == PARENT_SPAN
        assert req.header("traceparent") == f"00-{PARENT_TRACE}-{spans[path]['spanId']}-01"


def test_new_traces_are_sampled_at_the_configured_ratio(fleet, nginx, receiver):
    cfg = proxy_config([http_listener("web", [route("app")])], [cluster("app", nginx)])
    cfg["tracing"] = {"collector": receiver.address, "sampling": 30}
    proxy = fleet.proxy(cfg)
    run = subprocess.run(["h2load", "--h1", "-n", "10000", "-c", "10", f"http://{LOCALHOST}:{proxy.port()}/hello"],
                         capture_output=True, text=True, timeout=120)
    assert "10000 succeeded" in run.stdout, run.stdout

    def exported() -> float:
        stats = proxy.stats()
        return metric(stats, "trellis_tracing_spans_total", outcome="exported") + metric(
            stats, "trellis_tracing_spans_total", outcome="queue_full") + metric(
            stats, "trellis_tracing_spans_total", outcome="export_failed")

    assert wait_until(lambda: exported() > 0 and exported() == receiver.count(), 10)
    wait_until(lambda: False, 1.5)  # a last export pass
    stats = proxy.stats()
    assert metric(stats, "trellis_tracing_spans_total", outcome="queue_full") == 0
    assert metric(stats, "trellis_tracing_spans_total", outcome="export_failed") == 0
    sampled = receiver.count()
    assert 2800 <= sampled <= 3200, f"{sampled} of 10,000 sampled at 30%"
    assert all("parentSpanId" not in s for s in receiver.spans)  # each started a trace
