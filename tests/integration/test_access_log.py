"""Access logs as an operator uses them: a text template with response
flags that say why requests failed, JSON with chosen fields, the file
opened again on SIGUSR1 after a rotation, a log that nobody reads never
holding up requests (lines dropped and counted), and MeshConfig turning
logging on for every proxy of the mesh."""

import json
import os
import signal
import subprocess
import time

from harness import (LOCALHOST, call, cluster, details_and_caller, free_port, http_listener, metric, proxy_config,
                     route, validate_config, wait_until)

TEMPLATE = '$method $path $status [$response_flags] $cluster "$client_identity"'


def lines_of(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_text_template_says_why_requests_failed(fleet, nginx):
    log = fleet.dir / "access.log"
    closed = free_port()
    routes = [route("down", prefix="/down"), {**route("limited", prefix="/limited"), "rate_limits": [
        {"name": "tiny", "token_bucket": {"requests_per_unit": 1, "unit": "hour"}}]}, route("up", prefix="/up")]
    cfg = proxy_config([http_listener("web", routes)],
                       [cluster("up", nginx), cluster("down", closed), cluster("limited", nginx)])
    cfg["access_log"] = {"path": str(log), "format": "text", "template": TEMPLATE}
    port = fleet.proxy(cfg).port()
    assert call(port, "/up/x")[0] == 200
    assert call(port, "/nowhere")[0] == 404
    assert call(port, "/down")[0] == 503
    assert call(port, "/limited")[0] == 200
    assert call(port, "/limited")[0] == 429
    assert call(port, '/up/"quoted"%0a')[0] == 200
    assert wait_until(lambda: len(lines_of(log)) == 6, 5), lines_of(log)
    # Each worker writes its own lines: in order within a worker only.
    assert sorted(lines_of(log)) == sorted([
        'GET /up/x 200 [-] up "-"',
        "GET /nowhere 404 [NR] - \"-\"",
        'GET /down 503 [UF] down "-"',
        'GET /limited 200 [-] limited "-"',
        'GET /limited 429 [RL] - "-"',
        'GET /up/\\x22quoted\\x22%0a 200 [-] up "-"',
    ])


def test_json_lines_have_exactly_the_chosen_fields(fleet, nginx):
    log = fleet.dir / "access.log"
    cfg = proxy_config([http_listener("web", [route("up")])], [cluster("up", nginx)])
    cfg["access_log"] = {"path": str(log), "fields": ["status", "method", "response_flags", "grpc_status"]}
    port = fleet.proxy(cfg).port()
    assert call(port, "/hello")[0] == 200
    assert wait_until(lambda: lines_of(log), 5)
    assert [json.loads(line) for line in lines_of(log)] == [
        {"status": 200, "method": "GET", "response_flags": "", "grpc_status": None}]


def test_a_bad_format_is_refused_with_its_field(fleet, nginx):
    cfg = proxy_config([http_listener("web", [route("up")])], [cluster("up", nginx)])
    cfg["admin"]["address"] = f"{LOCALHOST}:{free_port()}"
    cfg["listeners"][0]["address"] = f"{LOCALHOST}:{free_port()}"
    cfg["access_log"] = {"path": str(fleet.dir / "a.log"), "format": "text", "template": "$method $nope"}
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0
    assert "access_log.template: unknown field \"nope\"" in (result.stdout + result.stderr).decode()
    cfg["access_log"] = {"path": str(fleet.dir / "a.log"), "fields": ["status", "status"]}
    result = validate_config(fleet.dir, cfg)
    assert "access_log.fields[1]: field \"status\" is listed twice" in (result.stdout + result.stderr).decode()


def test_sigusr1_opens_the_file_again_after_a_rotation(fleet, nginx):
    log = fleet.dir / "access.log"
    cfg = proxy_config([http_listener("web", [route("up")])], [cluster("up", nginx)], access_log=log)
    proxy = fleet.proxy(cfg)
    port = proxy.port()
    assert call(port, "/before")[0] == 200
    assert wait_until(lambda: len(lines_of(log)) == 1, 5)
    rotated = fleet.dir / "access.log.1"
    os.rename(log, rotated)
    proxy.signal(signal.SIGUSR1)
    assert wait_until(log.exists, 5), "the file was not opened again"
    assert call(port, "/after")[0] == 200
    assert wait_until(lambda: len(lines_of(log)) == 1, 5)
    assert json.loads(lines_of(rotated)[0])["path"] == "/before"
    assert json.loads(lines_of(log)[0])["path"] == "/after"


def test_a_log_nobody_reads_never_holds_up_requests(fleet, nginx):
    fifo = fleet.dir / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open, never read
    try:
        cfg = proxy_config([http_listener("web", [route("up")])], [cluster("up", nginx)], access_log=fifo)
        proxy = fleet.proxy(cfg)
        run = subprocess.run(["h2load", "--h1", "-n", "40000", "-c", "8", f"http://{LOCALHOST}:{proxy.port()}/hello"],
                             capture_output=True, text=True, timeout=120)
        assert "40000 succeeded" in run.stdout, run.stdout
        stats = proxy.stats()
        assert metric(stats, "trellis_access_log_lines_total", outcome="dropped") > 0
        assert call(proxy.port(), "/still")[0] == 200
    finally:
        os.close(reader)


def mesh_config(access_log: dict) -> dict:
    return {"apiVersion": "trellis.dev/v1alpha1", "kind": "MeshConfig", "metadata": {"name": "default"},
            "spec": {"accessLog": access_log}}


def test_meshconfig_turns_on_access_logs_for_every_proxy(fleet, nginx):
    control = fleet.control_plane()
    status, body = control.apply(mesh_config({"enabled": True, "format": "text",
                                              "template": "mesh-log $source_service>$destination_service $status"}))
    assert status == 201, body
    details, productpage, outbound = details_and_caller(fleet, control, nginx.address(0))
    want = "mesh-log productpage>details 200"
    assert wait_until(lambda: want in productpage.service.stdout(), 5), productpage.service.stdout()[-2000:]
    assert wait_until(lambda: want in details.service.stdout(), 5), details.service.stdout()[-2000:]


def test_meshconfig_sets_access_logs_per_service(fleet, nginx):
    """Off for the mesh, on for details alone, in a format of its own."""
    control = fleet.control_plane()
    status, body = control.apply(mesh_config({"enabled": False, "format": "json", "fields": ["status"],
                                              "services": [{"service": "details", "enabled": True, "format": "text",
                                                            "template": "details-log $method $status"}]}))
    assert status == 201, body
    details, productpage, outbound = details_and_caller(fleet, control, nginx.address(0))
    assert wait_until(lambda: "details-log GET 200" in details.service.stdout(), 5), details.service.stdout()[-2000:]
    # productpage's sidecar follows the mesh: no access log.
    assert call(outbound, "/hello", host="details")[0] == 200
    assert wait_until(lambda: details.service.stdout().count("details-log GET 200") >= 2, 5)
    assert '"status"' not in productpage.service.stdout() and "details-log" not in productpage.service.stdout()

    # Turned off for details too, the next requests are not logged.
    status, body = control.apply(mesh_config({"enabled": False}))
    assert status == 200, body
    assert wait_until(lambda: control.status()["pushed_revision"] >= control.status()["revision"] and all(
        p["in_sync"] for p in control.status()["proxies"]), 10)
    logged = details.service.stdout().count("details-log")
    for _ in range(3):
        assert call(outbound, "/hello", host="details")[0] == 200
    time.sleep(0.5)  # the writer thread's flush
    assert details.service.stdout().count("details-log") == logged
