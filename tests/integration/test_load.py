"""`trellis load`: its figures checked against wrk and h2load on the same nginx,
open-loop rate and counts, the JSON report, errors by kind, and that a stalled
server shows in the percentiles (no coordinated omission). About 30 s in all."""

import json
import re
import statistics
import threading
import time

import pytest

from harness import (
    BIN_DIR, Peer, Stream, cluster, free_port, http_listener, http_responder, http_response, metric, proxy_config,
    read_request, route, run, self_signed_certificate, silent, simple_config, tail,
)

TRELLIS = BIN_DIR / "cli" / "trellis"

# Fields every JSON report has (docs/load.md).
TOP_FIELDS = {"target", "rate", "duration_s", "connections", "threads", "requests", "status", "errors",
              "achieved_rate", "latency_us"}
LATENCY_FIELDS = {"min", "mean", "p50", "p90", "p99", "p999", "max"}
ERROR_KINDS = {"connect", "reset", "timeout", "protocol"}


def trellis_load(*args, timeout: float = 60):
    if not TRELLIS.exists():
        pytest.fail(f"{TRELLIS} does not exist: build the trellis target first "
                    f"(or point TRELLIS_BIN_DIR at the build's src folder)")
    return run([TRELLIS, "load", *args], timeout=timeout)


def load_report(*args, timeout: float = 60) -> tuple[int, dict]:
    """Runs with --json; returns the exit code and the parsed report."""
    result = trellis_load(*args, "--json", timeout=timeout)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"trellis load printed no JSON (exit {result.returncode}):\n"
                    f"stdout: {tail(result.stdout.decode(errors='replace'))}\n"
                    f"stderr: {tail(result.stderr.decode(errors='replace'))}")
    return result.returncode, report


def check_schema(report: dict) -> None:
    assert TOP_FIELDS <= report.keys(), f"missing fields: {TOP_FIELDS - report.keys()}"
    assert isinstance(report["target"], str)
    for key in ("rate", "duration_s", "achieved_rate"):
        assert isinstance(report[key], (int, float)), f"{key}: {report[key]!r}"
    for key in ("connections", "threads"):
        assert isinstance(report[key], int), f"{key}: {report[key]!r}"
    assert {"sent", "completed", "errors"} <= report["requests"].keys()
    assert all(isinstance(v, int) for v in report["requests"].values())
    assert report["errors"].keys() == ERROR_KINDS
    assert all(isinstance(v, int) for v in report["errors"].values())
    assert all(re.fullmatch(r"\d{3}", code) and isinstance(n, int) for code, n in report["status"].items())
    assert report["latency_us"].keys() == LATENCY_FIELDS
    values = report["latency_us"]
    if report["requests"]["completed"]:
        assert values["min"] <= values["p50"] <= values["p90"] <= values["p99"] <= values["p999"] <= values["max"]
        assert values["min"] <= values["mean"] <= values["max"]


@pytest.fixture(scope="module")
def target(module_fleet):
    """One nginx for the whole file; /hello answers a 12-byte body."""
    server = module_fleet.nginx()
    return f"http://127.0.0.1:{server.port}/hello"


# ------------------------------------------------------- against other tools


def wrk_median_us(url: str) -> float:
    result = run(["wrk", "-t1", "-c1", "-d3s", "--latency", url], timeout=30)
    out = result.stdout.decode()
    m = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    assert result.returncode == 0 and m, f"wrk failed or printed no median:\n{out}{result.stderr.decode()}"
    return float(m[1]) * {"us": 1, "ms": 1e3, "s": 1e6}[m[2]]


def h2load_median_us(url: str, workdir) -> float:
    # h2load prints no median; its per-request log has the elapsed µs in column 3.
    log = workdir / "h2load.log"
    result = run(["h2load", "--h1", "-c1", "-n", "20000", f"--log-file={log}", url], timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    elapsed = [int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip()]
    assert len(elapsed) == 20000, f"h2load logged {len(elapsed)} requests"
    return statistics.median(elapsed)


def test_closed_loop_median_agrees_with_wrk_and_h2load(target, fleet):
    # One connection, back to back: all three time the same request/response
    # round trip on loopback, tens of µs. The tolerance (50% or 100 µs,
    # whichever is larger) is wide because such a median moves by tens of µs
    # with scheduling on a shared two-core machine and the tools start and
    # stop their clocks at slightly different points; it is still far below
    # what a measurement error of the generator would add (a millisecond
    # timer, a connect, or a wait per request).
    code, report = load_report(target, "--rate", "0", "--connections", "1", "--duration", "3s")
    assert code == 0, report
    ours = report["latency_us"]["p50"]
    theirs = {"wrk": wrk_median_us(target), "h2load": h2load_median_us(target, fleet.subdir("h2load"))}
    print(f"closed-loop medians: trellis load {ours} µs, " + ", ".join(f"{t} {m} µs" for t, m in theirs.items()))
    for tool, median in theirs.items():
        tolerance = max(0.5 * median, 100)
        assert abs(ours - median) <= tolerance, (
            f"trellis load median {ours} µs vs {tool} {median} µs (tolerance {tolerance} µs)")


# ---------------------------------------------------------------- open loop


def test_open_loop_holds_the_rate_and_counts_every_request(target):
    rate, seconds = 2000, 2
    code, report = load_report(target, "--rate", str(rate), "--duration", f"{seconds}s",
                               "--connections", "10", "--threads", "2")
    check_schema(report)
    requests = report["requests"]
    expected = rate * seconds
    assert abs(requests["sent"] - expected) <= 0.01 * expected, requests
    assert requests["completed"] == requests["sent"] and requests["errors"] == 0, report
    assert abs(report["achieved_rate"] - rate) <= 0.05 * rate, report["achieved_rate"]
    assert report["status"] == {"200": requests["completed"]}
    assert (report["rate"], report["connections"], report["threads"]) == (rate, 10, 2)
    assert report["duration_s"] == pytest.approx(seconds)
    assert code == 0


def test_warmup_requests_are_sent_but_not_measured(fleet):
    upstream = fleet.upstream(http_responder())
    url = f"http://127.0.0.1:{upstream.port}/"
    code, report = load_report(url, "--rate", "100", "--warmup", "1s", "--duration", "1s",
                               "--connections", "2")
    assert code == 0, report
    assert abs(report["requests"]["sent"] - 100) <= 1, report["requests"]
    served = len(upstream.requests())
    assert abs(served - 200) <= 2, f"the server saw {served} requests, expected warm-up + window = 200"


def test_summary_is_printed_and_json_written_to_output_file(target, fleet):
    path = fleet.subdir("report") / "load.json"
    result = trellis_load(target, "--duration", "500ms", "--connections", "2", "--output", path)
    assert result.returncode == 0, result.stderr.decode()
    summary = result.stdout.decode()
    for label in ("target", "requests", "status", "errors", "latency"):
        assert re.search(rf"^{label}\s", summary, re.M), f"no {label} line in:\n{summary}"
    report = json.loads(path.read_text())
    check_schema(report)
    assert str(report["requests"]["sent"]) in summary


# ------------------------------------------------------------------- errors


def test_refused_connections_are_counted_as_connect_errors(fleet):
    url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    code, report = load_report(url, "--rate", "100", "--duration", "1s")
    check_schema(report)
    assert code == 1
    assert report["errors"]["connect"] > 0, report["errors"]
    assert report["requests"]["completed"] == 0
    assert report["requests"]["errors"] == sum(report["errors"].values())
    assert report["latency_us"]["p50"] is None


def test_a_target_that_never_accepts_is_an_error_even_within_the_timeout(fleet):
    # SYNs are dropped, and the run ends long before the 5 s connect timeout:
    # the connections that never came up still count, and the exit says so.
    hole = fleet.blackhole()
    code, report = load_report(f"http://{hole.address}/", "--rate", "20", "--duration", "500ms",
                               "--connections", "2")
    assert code == 1
    assert report["errors"]["connect"] == 2, report["errors"]
    assert report["requests"]["sent"] == 0 and report["requests"]["missed"] == 10, report["requests"]


def test_unanswered_requests_time_out_and_their_connections_are_reset(fleet):
    upstream = fleet.upstream(silent)
    url = f"http://127.0.0.1:{upstream.port}/"
    code, report = load_report(url, "--rate", "20", "--duration", "1s", "--connections", "2",
                               "--timeout", "200ms")
    assert code == 1
    assert report["errors"]["timeout"] >= 4, report["errors"]
    assert report["requests"]["completed"] == 0
    # Each timeout closes its connection and, until the run ends, opens a
    # fresh one: the two first connections plus one per timeout but the last
    # of each connection.
    assert upstream.connections() >= report["errors"]["timeout"], upstream.connections()


def test_statuses_are_counted_by_code_and_requests_carry_the_flags(fleet):
    upstream = fleet.upstream(http_responder(http_response(503, b"busy", reason="Service Unavailable")))
    url = f"http://127.0.0.1:{upstream.port}/submit?x=1"
    code, report = load_report(url, "--rate", "50", "--duration", "1s", "--connections", "1",
                               "--method", "POST", "--body-size", "100", "-H", "X-Test: yes",
                               "-H", "Host: example.test")
    assert code == 1, "a non-2xx/3xx answer must make the exit code 1"
    assert report["status"] == {"503": report["requests"]["completed"]}
    assert report["requests"]["completed"] == 50
    requests = upstream.requests()
    assert requests, "the server saw no requests"
    first = requests[0]
    assert (first.method, first.target) == ("POST", "/submit?x=1")
    assert first.header("x-test") == "yes" and first.header("host") == "example.test"
    assert first.header("content-length") == "100" and len(first.body) == 100


@pytest.mark.parametrize("args, message", [
    (["h2c://127.0.0.1:80/"], "--protocol h2"),
    (["http://127.0.0.1:80/", "--streams", "4"], "--streams is for --protocol h2"),
    (["http://127.0.0.1:80/", "--protocol", "h3"], "unknown --protocol"),
    (["http://127.0.0.1:80/", "--protocol", "h2", "--streams", "1001"], "--streams"),
    (["http://127.0.0.1:80/", "--cacert", "/etc/hostname"], "--cacert is for https:// URLs"),
    (["https://127.0.0.1:443/", "--cacert", "/no/such/file"], "cannot read --cacert"),
    (["http://example.com/"], "not resolved"),
    (["http://127.0.0.1:80/", "--duration", "ten"], "--duration"),
    (["http://127.0.0.1:80/", "--connections", "2", "--threads", "4"], "--threads"),
    (["http://127.0.0.1:80/", "--header", "no colon"], "Name: value"),
    (["http://127.0.0.1:80/", "--grpc", "NoMethod"], "SERVICE/METHOD"),
    (["http://127.0.0.1:80/", "--grpc", "a.B/C", "--protocol", "http/1.1"], "over HTTP/2"),
    (["http://127.0.0.1:80/", "--grpc", "a.B/C", "--method", "GET"], "leave --method"),
    (["http://127.0.0.1:80/x", "--grpc", "a.B/C"], "names the path"),
    (["http://127.0.0.1:80/", "--grpc", "a.B/C", "--payload", "/no/such/file"], "cannot read --payload"),
    (["http://127.0.0.1:80/", "--payload", "/etc/hostname"], "--payload is the message of a --grpc call"),
    ([], "url is required"),
])
def test_usage_errors_exit_2_with_a_message(args, message):
    result = trellis_load(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert message in result.stderr.decode(), result.stderr.decode()


# ------------------------------------------------------------------- HTTP/2


def test_h2_open_loop_holds_the_rate_with_streams_multiplexed(fleet):
    nginx = fleet.nginx(http2=True)
    rate, seconds = 2000, 2
    code, report = load_report(f"http://127.0.0.1:{nginx.port}/hello", "--protocol", "h2", "--streams", "10",
                               "--rate", str(rate), "--duration", f"{seconds}s", "--connections", "2")
    check_schema(report)
    requests = report["requests"]
    assert abs(requests["sent"] - rate * seconds) <= 0.01 * rate * seconds, requests
    assert requests["completed"] == requests["sent"] and requests["errors"] == 0, report
    assert report["status"] == {"200": requests["completed"]}
    assert (report["protocol"], report["streams"]) == ("h2c", 10)
    assert code == 0


def test_h2_streams_share_one_connection_and_carry_the_flags(fleet):
    upstream = fleet.upstream(http_responder(http_response(200, b"ok")))
    proxy = fleet.proxy(simple_config(upstream.address))
    code, report = load_report(f"http://127.0.0.1:{proxy.port()}/submit?x=1", "--protocol", "h2",
                               "--streams", "8", "--connections", "1", "--duration", "1s", "--method", "POST",
                               "--body-size", "100", "-H", "X-Test: yes", "-H", "Host: example.test")
    assert code == 0, report
    completed = report["requests"]["completed"]
    assert completed > 100 and report["requests"]["errors"] == 0, report
    stats = proxy.stats()
    assert metric(stats, "trellis_downstream_connections_total", listener="web") == 1, "one HTTP/2 connection"
    assert metric(stats, "trellis_http_requests_total", listener="web", code_class="2xx") >= completed
    first = upstream.requests()[0]
    assert (first.method, first.target) == ("POST", "/submit?x=1")
    assert first.header("x-test") == "yes" and first.header("host") == "example.test"
    assert len(first.body) == 100


def test_h2_unanswered_streams_time_out_one_by_one_on_their_connection(fleet):
    upstream = fleet.upstream(silent)
    code, report = load_report(f"http://127.0.0.1:{upstream.port}/", "--protocol", "h2", "--streams", "4",
                               "--connections", "1", "--rate", "20", "--duration", "1s", "--timeout", "200ms")
    assert code == 1
    assert report["errors"]["timeout"] >= 15, report["errors"]
    assert report["requests"]["completed"] == 0
    # A stream that times out is reset; its connection carries on.
    assert upstream.connections() == 1, upstream.connections()


# ------------------------------------------------------ coordinated omission


class StallingServer:
    """Holds every request that arrives in the first `stall` seconds (counted
    from the first connection) until then, and answers at once afterwards."""

    def __init__(self, stall: float):
        self.stall = stall
        self.stall_end: float | None = None
        self.lock = threading.Lock()

    def __call__(self, peer: Peer) -> None:
        with self.lock:
            if self.stall_end is None:
                self.stall_end = time.monotonic() + self.stall
        stream = Stream(fill=peer.recv)
        while True:
            read_request(stream)
            wait = self.stall_end - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not peer.send(http_response(body=b"ok")):
                return


def test_a_stall_shows_in_the_median_not_only_in_the_max(fleet):
    # 200 req/s for 2 s over 10 connections, and a server that answers nothing
    # for the first 1.5 s. Measured from the intended send time, a request
    # meant for time t waits until the stall ends: its latency is 1.5 s - t.
    # Three quarters of the requests fall in the stall, so the median is the
    # request meant for t = 1 s: about 500 ms. A generator that measures from
    # when it actually sent (coordinated omission) sees ten slow requests,
    # one per connection, and a median of a millisecond or less. (With a stall
    # of exactly half the run the median would sit on the boundary between
    # the slow and the fast half, so the stall covers three quarters.)
    upstream = fleet.upstream(StallingServer(stall=1.5))
    url = f"http://127.0.0.1:{upstream.port}/"
    code, report = load_report(url, "--rate", "200", "--duration", "2s", "--connections", "10")
    assert code == 0, report
    latency = report["latency_us"]
    requests = report["requests"]
    assert abs(requests["sent"] - 400) <= 4, requests  # the backlog went out after the stall
    assert requests["completed"] == requests["sent"]
    assert 300_000 <= latency["p50"] <= 800_000, latency
    assert latency["p90"] >= 1_000_000, latency
    assert 1_300_000 <= latency["max"] <= 1_700_000, latency


# --------------------------------------------------------------------- gRPC


def test_grpc_unary_calls_carry_the_payload_and_count_by_grpc_status(fleet, tmp_path):
    from test_grpc_mesh import GrpcServer
    server = GrpcServer(fleet, "echo")
    url = f"http://{server.address}"
    payload = tmp_path / "request.bin"
    payload.write_bytes(b"hello")
    code, report = load_report(url, "--grpc", "test.Echo/Unary", "--payload", str(payload), "--streams", "4",
                               "--connections", "2", "--duration", "1s")
    check_schema(report)
    completed = report["requests"]["completed"]
    assert code == 0 and completed > 50 and report["requests"]["errors"] == 0, report
    assert report["grpc"] == "test.Echo/Unary" and report["method"] == "POST" and report["protocol"] == "h2c"
    assert report["status"] == {"200": completed} and report["grpc_status"] == {"0": completed}, report
    # The server fails the calls its payload asks it to: a gRPC error is not
    # a success, whatever the HTTP status says.
    payload.write_bytes(b"fail:14")
    code, report = load_report(url, "--grpc", "test.Echo/Unary", "--payload", str(payload), "--duration", "1s",
                               "--connections", "1")
    completed = report["requests"]["completed"]
    assert code == 1 and completed > 0 and report["grpc_status"] == {"14": completed}, report
    # A method the server does not have.
    result = trellis_load(url, "--grpc", "test.Echo/Nope", "--duration", "500ms", "--connections", "1")
    assert result.returncode == 1 and b"12 UNIMPLEMENTED" in result.stdout, result.stdout


# ---------------------------------------------------------------------- TLS


def test_https_with_http1_and_h2_by_alpn_checks_the_servers_certificate(fleet):
    nginx = fleet.nginx()
    cert, key = self_signed_certificate(fleet.subdir("certs"), "localhost")
    cfg = proxy_config([http_listener("web", [route("app")])], [cluster("app", nginx)])
    cfg["listeners"][0]["tls"] = {"mode": "SIMPLE", "certificates": [{"certificate_chain": cert,
                                                                      "private_key": key}]}
    proxy = fleet.proxy(cfg)
    url = f"https://localhost:{proxy.port()}/hello"
    code, report = load_report(url, "--cacert", cert, "--duration", "1s", "--connections", "2")
    check_schema(report)
    completed = report["requests"]["completed"]
    assert code == 0 and completed > 50 and report["status"] == {"200": completed}, report
    assert (report["protocol"], report["tls"]) == ("http/1.1", True)
    code, report = load_report(url, "--cacert", cert, "--protocol", "h2", "--streams", "4", "--duration", "1s",
                               "--connections", "2")
    completed = report["requests"]["completed"]
    assert code == 0 and completed > 50 and report["status"] == {"200": completed}, report
    assert report["protocol"] == "h2"
    # Two TLS connections for each run: HTTP/2 was chosen by ALPN, not a
    # connection per request.
    assert metric(proxy.stats(), "trellis_downstream_connections_total", listener="web") == 4
    # Without the root that signed it, the certificate is refused: no request goes out.
    served = metric(proxy.stats(), "trellis_http_requests_total", listener="web", code_class="2xx")
    code, report = load_report(url, "--duration", "500ms", "--connections", "1")
    assert code == 1 and report["requests"]["completed"] == 0 and report["errors"]["connect"] >= 1, report
    assert metric(proxy.stats(), "trellis_http_requests_total", listener="web", code_class="2xx") == served
