"""The admin interface (/ready, /healthz, /stats, /config_dump), what it
refuses (another Host: DNS rebinding; OPTIONS, writes) and config validation
(--validate, refusing to start on a bad file)."""

import http.client
import re

import pytest

from harness import (
    PROXY_BIN, HttpClient, build_request, cluster, config_summary, free_port, get, http_listener,
    metric, metric_samples, port_accepts, proxy_config, route, run, simple_config, tcp_listener,
    wait_until,
)




def test_admin_endpoints(proxy):
    for path, status in (("/healthz", 200), ("/ready", 200), ("/no-such-page", 404)):
        got = proxy.admin(path)[0]
        assert got == status, f"GET {path} answered {got}, expected {status}"


def admin_raw(proxy, method: str, path: str, headers: dict) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.admin_port, timeout=5)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_admin_answers_only_its_own_host(proxy):
    """A page whose name was rebound to 127.0.0.1 sends its own name as Host:
    /config_dump must not be read that way."""
    for host in ("attacker.example", f"attacker.example:{proxy.admin_port}", f"127.0.0.2:{proxy.admin_port}"):
        for path in ("/config_dump", "/stats", "/ready"):
            status, _, body = admin_raw(proxy, "GET", path, {"Host": host})
            assert status == 421, f"GET {path} with Host {host}: {status}"
            assert b"listeners" not in body and b"trellis_" not in body, body[:200]
    for host in (f"127.0.0.1:{proxy.admin_port}", f"localhost:{proxy.admin_port}"):
        assert admin_raw(proxy, "GET", "/config_dump", {"Host": host})[0] == 200, host
    status, headers, _ = admin_raw(proxy, "OPTIONS", "/config_dump", {"Origin": "http://attacker.example",
                                                                     "Access-Control-Request-Method": "GET"})
    assert status == 405 and headers.get("allow") == "GET, HEAD", (status, headers)
    assert not [h for h in headers if h.startswith("access-control-")], headers
    assert admin_raw(proxy, "POST", "/config_dump", {"Content-Type": "application/json"})[0] == 405


# -------------------------------------------------------------------- /stats

REQUIRED_METRICS = {
    "trellis_downstream_connections_active": "gauge",
    "trellis_downstream_connections_total": "counter",
    "trellis_downstream_bytes_received_total": "counter",
    "trellis_downstream_bytes_sent_total": "counter",
    "trellis_http_requests_total": "counter",
    "trellis_http_request_duration_seconds": "histogram",
    "trellis_upstream_connects_total": "counter",
    "trellis_upstream_connect_failures_total": "counter",
    "trellis_upstream_connections_active": "gauge",
}


def declared_types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def test_stats_format(proxy):
    assert get(proxy.port(), "/hello").status == 200
    status, headers, body = proxy.admin("/stats")
    assert status == 200, f"/stats answered {status}"
    content_type = headers.get("content-type", "")
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type, \
        f"content type {content_type!r}"
    types = declared_types(body.decode())
    wrong = {name: types.get(name) for name, kind in REQUIRED_METRICS.items() if types.get(name) != kind}
    assert not wrong, f"metric families missing or of the wrong type: {wrong}"


def test_request_metrics_count_every_request(proxy):
    sent = received = 0
    connections = 0

    def exchange(client, path):
        nonlocal sent, received
        data = build_request("GET", path)
        client.send(data)
        resp = client.read_response()
        assert resp.status == 200, f"GET {path}: {resp}"
        sent += len(data)
        received += len(resp.raw_head) + len(resp.body)

    with HttpClient(proxy.port()) as client:
        connections += 1
        for _ in range(10):
            exchange(client, "/hello")
    for _ in range(15):
        with HttpClient(proxy.port()) as client:
            connections += 1
            exchange(client, "/hello")
    n = 25

    def requests_2xx():
        return metric(proxy.stats(), "trellis_http_requests_total", listener="web", code_class="2xx")
    wait_until(lambda: requests_2xx() >= n, 5)
    stats = proxy.stats()

    by_class = {dict(labels)["code_class"]: v for labels, v in
                metric_samples(stats, "trellis_http_requests_total", listener="web").items() if v}
    assert by_class == {"2xx": n}, f"requests by code class: {by_class}, expected {{'2xx': {n}}}"

    count = metric(stats, "trellis_http_request_duration_seconds_count", listener="web")
    assert count == n, f"histogram _count {count}, expected {n}"
    buckets = sorted((float(dict(labels)["le"]), v) for labels, v in
                     metric_samples(stats, "trellis_http_request_duration_seconds_bucket",
                                    listener="web").items())
    assert buckets and buckets[-1] == (float("inf"), n), f"buckets {buckets}"
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"bucket counts are not cumulative: {buckets}"
    assert metric(stats, "trellis_http_request_duration_seconds_sum", listener="web") > 0

    upstream_connects = metric(stats, "trellis_upstream_connects_total", cluster="web")
    assert 1 <= upstream_connects <= n, f"upstream connects {upstream_connects} for {n} requests"
    assert metric(stats, "trellis_upstream_connect_failures_total", cluster="web") == 0

    got = {
        "connections": metric(stats, "trellis_downstream_connections_total", listener="web"),
        "bytes_received": metric(stats, "trellis_downstream_bytes_received_total", listener="web"),
        "bytes_sent": metric(stats, "trellis_downstream_bytes_sent_total", listener="web"),
    }
    want = {"connections": connections, "bytes_received": sent, "bytes_sent": received}
    assert got == want, f"downstream counters {got}, expected {want}"


def test_active_connections_gauge(proxy):
    def active():
        return metric(proxy.stats(), "trellis_downstream_connections_active", listener="web")
    clients = [HttpClient(proxy.port()) for _ in range(3)]
    try:
        for client in clients:
            assert client.request("GET", "/hello").status == 200
        assert wait_until(lambda: active() == 3, 5), f"active connections {active()}, expected 3"
    finally:
        for client in clients:
            client.close()
    assert wait_until(lambda: active() == 0, 5), f"active connections {active()} after closing all"


def test_connect_failures_are_counted(fleet, nginx):
    config = proxy_config([http_listener("web", [route("dead", prefix="/dead"), route("web")])],
                          [cluster("web", nginx), cluster("dead", free_port())])
    proxy = fleet.proxy(config)
    resp = get(proxy.port(), "/dead")
    assert resp.status == 503, f"got {resp}"

    def failures():
        return metric(proxy.stats(), "trellis_upstream_connect_failures_total", cluster="dead")
    assert wait_until(lambda: failures() >= 1, 5), f"connect failures for cluster dead: {failures()}"
    stats = proxy.stats()
    errors = metric(stats, "trellis_http_requests_total", listener="web", code_class="5xx")
    assert errors == 1, f"5xx count {errors}, expected 1"


# -------------------------------------------------------------- /config_dump


def test_config_dump_matches_the_file(fleet, nginx):
    upstream = fleet.upstream()
    config = proxy_config(
        [http_listener("web", [route("db", exact="/db"), route("web", timeout="5s")]),
         tcp_listener("raw", "db")],
        [cluster("web", nginx, connect_timeout="250ms"), cluster("db", upstream)],
        access_log=fleet.subdir("logs") / "access.log", drain_timeout="7s")
    proxy = fleet.proxy(config)
    status, headers, body = proxy.admin("/config_dump")
    assert status == 200 and "json" in headers.get("content-type", ""), \
        f"/config_dump answered {status} with {headers.get('content-type')!r}"
    dump = proxy.config_dump()
    assert dump["listeners"][0]["name"] == "web", f"dump: {dump}"
    assert config_summary(dump) == config_summary(proxy.config), \
        f"/config_dump {config_summary(dump)}\ndiffers from the file {config_summary(proxy.config)}"
    assert dump["access_log"]["path"] == config["access_log"]["path"], f"dump: {dump}"


# ------------------------------------------------------------------ validation

# Line numbers below are part of the test: 12 is the route's cluster, 18 the
# endpoint address.
CONFIG_TEXT = """\
admin:
  address: 127.0.0.1:{admin}
listeners:
  - name: web
    address: 127.0.0.1:{listener}
    protocol: http
    virtual_hosts:
      - name: default
        domains: ["*"]
        routes:
          - match: {{ prefix: / }}
            cluster: {route_cluster}
            timeout: 15s
clusters:
  - name: web
    connect_timeout: 1s
    endpoints:
      - address: {endpoint}
"""


def write_config(fleet, *, route_cluster="web", endpoint="127.0.0.1:8081", admin=None, listener=None):
    path = fleet.subdir("config") / "trellis.yaml"
    path.write_text(CONFIG_TEXT.format(admin=admin or 9901, listener=listener or 10000,
                                       route_cluster=route_cluster, endpoint=endpoint))
    return path


def validate(path):
    return run([PROXY_BIN, "--config", path, "--validate"], timeout=20)


@pytest.fixture
def binary():
    if not PROXY_BIN.exists():
        pytest.fail(f"{PROXY_BIN} does not exist: build trellis-proxy first")
    return PROXY_BIN


def test_validate_accepts_a_valid_file(fleet, binary):
    result = validate(write_config(fleet))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), \
        f"rc={result.returncode} stdout={result.stdout!r} stderr={result.stderr!r}"


def error_lines(path, stderr: bytes) -> list[tuple[int, int, str, str]]:
    """(line, column, field path, message) of each `FILE:LINE:COL: path: message` line."""
    pattern = re.compile(re.escape(str(path)) + r":(\d+):(\d+): (\S*): (.+)")
    lines = stderr.decode(errors="replace").splitlines()
    parsed = [pattern.fullmatch(line) for line in lines]
    assert lines and all(parsed), f"stderr lines not in FILE:LINE:COL: path: message form:\n{stderr.decode()}"
    return [(int(m[1]), int(m[2]), m[3], m[4]) for m in parsed]


def test_validate_reports_every_error_with_line_and_path(fleet, binary):
    path = write_config(fleet, route_cluster="missing", endpoint="127.0.0.1:notaport")
    result = validate(path)
    assert result.returncode == 1, f"rc={result.returncode} stderr={result.stderr!r}"
    assert result.stdout == b"", f"stdout={result.stdout!r}"
    errors = {(line, field) for line, _, field, _ in error_lines(path, result.stderr)}
    for wanted in ((12, "listeners[0].virtual_hosts[0].routes[0].cluster"),
                   (18, "clusters[0].endpoints[0].address")):
        assert wanted in errors, f"no error {wanted} among {sorted(errors)}"


def test_validate_reports_yaml_syntax_error_with_line(fleet, binary):
    path = fleet.subdir("config") / "broken.yaml"
    path.write_text("admin:\n  address: 127.0.0.1:9901\nlisteners: [\n  {name: web\n")
    result = validate(path)
    assert result.returncode == 1, f"rc={result.returncode} stderr={result.stderr!r}"
    assert re.search(re.escape(str(path)) + r":\d+:\d+: ", result.stderr.decode(errors="replace")), \
        f"stderr={result.stderr!r}"


def test_validate_missing_file_fails(fleet, binary):
    result = validate(fleet.dir / "no-such-file.yaml")
    assert result.returncode != 0 and result.stderr, f"rc={result.returncode} stderr={result.stderr!r}"


def test_bad_config_at_startup_exits_and_listens_nowhere(fleet, binary):
    admin, listener = free_port(), free_port()
    path = write_config(fleet, route_cluster="missing", admin=admin, listener=listener)
    proxy = fleet.spawn("proxy", [binary, "--config", path, "--workers", "2"])
    rc = proxy.wait(10)
    assert rc not in (None, 0), f"exit code {rc} with a bad config; stderr={proxy.stderr()!r}"
    output = proxy.stdout() + proxy.stderr()
    assert "missing" in output, f"output does not name the problem: {output!r}"
    listening = [p for p in (admin, listener) if port_accepts(p)]
    assert not listening, f"something listens on {listening}"
