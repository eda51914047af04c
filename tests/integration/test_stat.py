"""`trellis stat` as a user reads it: per service (as each service's own
sidecar sees its callers), per route (as the callers see them) and per
workload, the success rate, requests per second, latency percentiles and
mTLS share of the requests made within its window."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from harness import BIN_DIR, LOCALHOST, call, details_and_caller, http_response, http_responder

TRELLIS = BIN_DIR / "cli" / "trellis"
WINDOW = 6  # seconds: the requests below are all made well inside it
OK, FAILED = 30, 10


def details_app(req) -> bytes:
    return http_response(503 if req.target.startswith("/fail") else 200, b"details\n")


@pytest.fixture
def sidecars(fleet):
    control = fleet.control_plane()
    details, _, outbound = details_and_caller(fleet, control, fleet.upstream(http_responder(details_app)).address)
    return control, outbound, details


@pytest.fixture
def mesh(sidecars):
    control, outbound, _ = sidecars
    return control, outbound


def stat(control, *args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")}
    env.update(TRELLIS_TOKEN_FILE=str(control.admin_token_path), TRELLIS_CA_FILE=str(control.trust_bundle),
               XDG_CONFIG_HOME=str(control.dir / "cli-config"))
    return subprocess.Popen([TRELLIS, "stat", *args, "--window", str(WINDOW), "--server",
                             f"{LOCALHOST}:{control.http_port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def traffic_during(control, outbound, *args) -> tuple[str, str]:
    """Runs trellis stat and, once it took its first reading, makes the
    requests; its output once it took the second."""
    proc = stat(control, *args)
    time.sleep(1.5)  # the first reading is one API call
    for _ in range(OK):
        assert call(outbound, "/ok", host="details")[0] == 200
    for _ in range(FAILED):
        assert call(outbound, "/fail", host="details")[0] == 503
    out, err = proc.communicate(timeout=WINDOW + 30)
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


def test_stat_services_routes_and_workloads(mesh):
    control, outbound = mesh
    out, _ = traffic_during(control, outbound, "services", "-o", "json")
    rows = {r["service"]: r for r in json.loads(out)}
    details = rows["details"]
    assert details["namespace"] == "default" and details["requests"] == OK + FAILED, rows
    assert details["success_rate"] == pytest.approx(OK / (OK + FAILED))
    assert details["rps"] == pytest.approx((OK + FAILED) / WINDOW)
    assert details["tls_share"] == 1.0  # sidecar to sidecar: mutual TLS
    assert 0 < details["p50_seconds"] <= details["p95_seconds"] <= details["p99_seconds"]

    out, _ = traffic_during(control, outbound, "routes")
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "SERVICE", "ROUTE", "SUCCESS", "RPS", "P50", "P95", "P99", "TLS"]
    row = next(line.split() for line in lines[1:] if "details" in line)
    assert row[:5] == ["default", "details", "[default]", "75.00%", f"{(OK + FAILED) / WINDOW:.1f}"], out
    assert row[-1] == "100.00%"

    out, _ = traffic_during(control, outbound, "workloads", "-o", "json")
    assert [(r["workload"], r["requests"]) for r in json.loads(out)] == [("details-1", OK + FAILED)]


def test_stat_without_traffic_says_so(mesh):
    control, _ = mesh
    proc = stat(control, "services", "-n", "elsewhere")
    out, err = proc.communicate(timeout=WINDOW + 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode() == f"No traffic to any service in the last {WINDOW}s.\n"


def test_a_hung_proxy_holds_up_neither_the_api_nor_the_others_numbers(sidecars):
    """details' proxy stopped (SIGSTOP): its admin endpoint takes connections
    and never answers. Gathering the metrics waits for it up to its deadline,
    off the API's thread: other calls are answered meanwhile."""
    control, outbound, details = sidecars
    assert call(outbound, "/ok", host="details")[0] == 200
    details.service.send_signal(signal.SIGSTOP)
    try:
        golden = {}
        asking = threading.Thread(target=lambda: golden.update(answer=control.request("GET", "/v1/golden")))
        asking.start()
        time.sleep(0.2)  # the question is out
        assert control.request("GET", "/v1/status")[0] == 200
        assert asking.is_alive(), "the API answered only once the hung proxy's deadline had passed"
        asking.join(10)
        status, body = golden["answer"]
        assert status == 200, body
        by_node = {p["node_id"]: p for p in body["proxies"]}
        assert "error" in by_node["details-1"], by_node["details-1"]
        assert by_node["productpage-1"]["series"], by_node["productpage-1"]
    finally:
        details.service.send_signal(signal.SIGCONT)
