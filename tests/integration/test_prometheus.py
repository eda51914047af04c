"""A real Prometheus (Debian's package) finding the sidecars of a small mesh
through trellis-control's service discovery and scraping them, asked in
PromQL what a user asks: the request rate and success rate from one service
to another, and p99 latency from the histogram."""

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import (BIN_DIR, LOCALHOST, call, free_port, http_response, http_responder, sidecar_config, wait_until,
                     write_private_file)

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
FAST, SLOW, FAILED = 30, 10, 10
SLOW_SECONDS = 0.2  # in the (0.1 s, 0.25 s] bucket
PAIR = 'source_service="productpage",destination_service="details"'


class Prometheus:
    def __init__(self, fleet, control):
        """Scraping every proxy trellis-control lists, with a read-only token."""
        self.port = free_port()
        workdir = fleet.subdir("prometheus")
        status, body = control.request("POST", "/v1/tokens", {"kind": "read-only", "description": "prometheus"})
        assert status == 201, body
        token = write_private_file(workdir / "token", body["secret"])
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: trellis\n    http_sd_configs:\n"
            f"      - url: {control.api}/v1/prometheus/targets\n        refresh_interval: 1s\n"
            f"        authorization: {{type: Bearer, credentials_file: {json.dumps(str(token))}}}\n"
            f"        tls_config: {{ca_file: {json.dumps(str(control.trust_bundle))}}}\n"
            "    relabel_configs:\n"
            "      - {source_labels: [__meta_trellis_node_id], target_label: node}\n"
            "  - job_name: trellis-control\n    scheme: https\n"
            f"    authorization: {{type: Bearer, credentials_file: {json.dumps(str(token))}}}\n"
            f"    tls_config: {{ca_file: {json.dumps(str(control.trust_bundle))}}}\n"
            f"    static_configs: [{{targets: [\"{LOCALHOST}:{control.http_port}\"]}}]\n")
        self.service = fleet.spawn("prometheus", [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LOCALHOST}:{self.port}", "--log.level=warn"])
        assert wait_until(self.ready, 30), self.service.stderr()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOCALHOST}:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql: str, at: float | None = None) -> list:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"http://{LOCALHOST}:{self.port}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def scalar(self, promql: str, at: float | None = None) -> float | None:
        result = self.query(promql, at)
        return float(result[0]["value"][1]) if result else None


def metric_names(text: str) -> set[str]:
    """Every metric a page declares (# TYPE), with a histogram's series."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


def details_app(req) -> bytes:
    if req.target.startswith("/slow"):
        time.sleep(SLOW_SECONDS)
    if req.target.startswith("/fail"):
        return http_response(503, b"down\n")
    return http_response(200, b"ok\n")


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is installed by scripts/setup.sh")
def test_prometheus_answers_rate_success_rate_and_p99_between_two_services(fleet):
    control = fleet.control_plane()
    app = fleet.upstream(http_responder(details_app))
    inbound_port = free_port()
    details = fleet.proxy(sidecar_config(
        control, "details", instance={"address": f"{LOCALHOST}:{inbound_port}", "app_address": app.address}))
    outbound_port = free_port()
    productpage = fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound_port,
                                             upstream_services=["details"]))
    assert wait_until(lambda: call(outbound_port, "/ready", host="details")[0] == 200, 10)
    # trellis-control lists both proxies for Prometheus' HTTP service discovery.
    status, targets = control.request("GET", "/v1/prometheus/targets")
    assert status == 200, targets
    assert {t["labels"]["__meta_trellis_service"]: (t["targets"], t["labels"]["__metrics_path__"])
            for t in targets} == {"details": ([f"{LOCALHOST}:{details.admin_port}"], "/stats"),
                                  "productpage": ([f"{LOCALHOST}:{productpage.admin_port}"], "/stats")}
    prometheus = Prometheus(fleet, control)
    up = 'sum(up{job="trellis",node=~"details-1|productpage-1"})'
    assert wait_until(lambda: prometheus.scalar(up) == 2, 30), (prometheus.query("up"), prometheus.service.stderr()[-3000:])

    # A steady trickle while Prometheus scrapes, for the request rate.
    stop = threading.Event()

    def trickle() -> None:
        for _ in range(400):  # at most 20 s
            if stop.wait(0.05):
                return
            call(outbound_port, "/trickle", host="details")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        for path, count in (("/fast", FAST), ("/slow", SLOW), ("/fail", FAILED)):
            for _ in range(count):
                call(outbound_port, path, host="details")
        total = f'sum(trellis_requests_total{{direction="outbound",{PAIR}}})'
        assert wait_until(lambda: (prometheus.scalar(total) or 0) >= 1 + FAST + SLOW + FAILED + 20, 20), \
            prometheus.query(total)
        # The request rate: Prometheus' own irate() (once each series has two
        # samples) against the two last raw samples it holds of each series,
        # at one instant.
        irate = f'sum(irate(trellis_requests_total{{direction="outbound",{PAIR}}}[10s]))'

        def rated():
            at = time.time()
            rate = prometheus.scalar(irate, at)
            return (at, rate) if rate else None

        measured = wait_until(rated, 20)
        assert measured, "no request rate while requests flowed"
        at, rate = measured
        expected = 0.0
        for series in prometheus.query(f'trellis_requests_total{{direction="outbound",{PAIR}}}[10s]', at):
            samples = [(float(t), float(v)) for t, v in series["values"]]
            if len(samples) >= 2:
                (t0, v0), (t1, v1) = samples[-2:]
                expected += (v1 - v0) / (t1 - t0) if v1 >= v0 else v1 / (t1 - t0)
        assert rate == pytest.approx(expected), (rate, expected)
    finally:
        stop.set()
        trickler.join(10)

    # Nothing moves any more: the last scrape of both proxies has it all.
    def settled() -> bool:
        counts = {direction: prometheus.scalar(
            f'sum(trellis_requests_total{{direction="{direction}",{PAIR}}})') for direction in ("outbound", "inbound")}
        stats = sum(v for (n, labels), v in productpage.stats().items()
                    if n == "trellis_requests_total" and ("direction", "outbound") in labels)
        return counts["outbound"] == counts["inbound"] == stats

    assert wait_until(settled, 20)
    # The success rate, as either side reports it: the failures are exactly /fail's.
    for direction in ("outbound", "inbound"):
        total = prometheus.scalar(f'sum(trellis_requests_total{{direction="{direction}",{PAIR}}})')
        success = prometheus.scalar(
            f'sum(trellis_requests_total{{direction="{direction}",{PAIR},classification="success"}})'
            f' / sum(trellis_requests_total{{direction="{direction}",{PAIR}}})')
        assert success == pytest.approx((total - FAILED) / total), (direction, success, total)
        failed = prometheus.scalar(
            f'sum(trellis_requests_total{{direction="{direction}",{PAIR},status_code="503"}})')
        assert failed == FAILED
    # p99 from the histogram: a slow request's bucket, as computed from the
    # buckets Prometheus holds.
    p99 = prometheus.scalar('histogram_quantile(0.99, sum by (le) (trellis_request_duration_seconds_bucket'
                            f'{{direction="inbound",{PAIR}}}))')
    buckets = sorted((float(s["metric"]["le"]), float(s["value"][1])) for s in prometheus.query(
        f'sum by (le) (trellis_request_duration_seconds_bucket{{direction="inbound",{PAIR}}})'))
    rank = 0.99 * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            expected = lower + (le - lower) * (rank - below) / (cumulative - below)
            break
        lower, below = le, cumulative
    assert p99 == pytest.approx(expected), (p99, buckets)
    assert 0.1 < p99 <= 0.25, f"p99 {p99} is not the slow requests' bucket: {buckets}"

    # trellis stat reading this Prometheus: the last two minutes at once, by
    # service (each one's own proxies) and by workload.
    # Prometheus' increase() misses what a series counted before its first
    # scrape and extrapolates to the window's edges: stat shows what it says.
    window = f'trellis_requests_total{{direction="inbound",{PAIR}}}[120s]'
    window_ok = f'trellis_requests_total{{direction="inbound",{PAIR},classification="success"}}[120s]'
    for what, name in (("services", "details"), ("workloads", "details-1")):
        run = subprocess.run([BIN_DIR / "cli" / "trellis", "stat", what, "-o", "json", "-w", "120",
                              "--prometheus", f"http://{LOCALHOST}:{prometheus.port}"],
                             capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
        assert run.returncode == 0, run.stderr
        rows = {r["service" if what == "services" else "workload"]: r for r in json.loads(run.stdout)}
        row = rows[name]
        increase = prometheus.scalar(f"sum(increase({window}))")
        succeeded = prometheus.scalar(f"sum(increase({window_ok}))")
        assert row["requests"] == pytest.approx(increase, rel=0.05), (row, increase)
        assert row["success_rate"] == pytest.approx(succeeded / increase, abs=0.02), (row, succeeded, increase)
        assert row["tls_share"] == pytest.approx(1.0), row
        assert 0.1 < row["p99_seconds"] <= 0.25, row
        assert row["rps"] == pytest.approx(row["requests"] / 120), row

    # trellis-control's own metrics, scraped with the same read-only token.
    for promql, want in (("trellis_control_proxies_connected", 2), ("trellis_control_proxies_in_sync", 2),
                         ("trellis_control_registry_instances", 1)):
        assert wait_until(lambda: prometheus.scalar(promql) == want, 10), (promql, prometheus.query(promql))
    for promql in ("trellis_control_push_duration_seconds_count", "trellis_control_certificates_issued_total",
                   'trellis_control_store_call_duration_seconds_count{call="upsert_instance"}',
                   'trellis_control_config_answers_total{answer="ack"}'):
        assert (prometheus.scalar(promql) or 0) >= 1, (promql, prometheus.query(promql))

    # The Grafana dashboards: every query parses in this Prometheus and
    # names only metrics the proxies and trellis-control serve.
    status, control_page = control.request("GET", "/metrics")
    assert status == 200, control_page
    served = set()
    for text in (productpage.admin("/stats")[2].decode(), details.admin("/stats")[2].decode(), control_page):
        served |= metric_names(text)
    variables = {"$__rate_interval": "1m", "$service": "details", "$node": "details-1"}
    checked = 0
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        queries += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
        for query in queries:
            for name in re.findall(r"\btrellis_[a-z0-9_]+", query):
                assert name in served, f"{path.name}: {name} is not a metric anyone serves"
            label_values = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
            promql = label_values.group(1) if label_values else query
            for var, value in variables.items():
                promql = promql.replace(var, value)
            assert "$" not in promql, f"{path.name}: unknown variable in {query}"
            prometheus.query(promql)  # a parse error is a 400
            checked += 1
    assert checked >= 30, checked
    # The overview shows the traffic of this test.
    overview = json.loads((DASHBOARDS / "mesh-overview.json").read_text())
    for panel in overview["panels"][:4]:
        promql = panel["targets"][0]["expr"].replace("$__rate_interval", "1m")
        assert prometheus.query(promql), f"{panel['title']}: no data"
