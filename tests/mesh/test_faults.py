"""Faults injected for real into a mesh of network namespaces (layer 3 of
the testing design): one client calling `backend`, three instances of it on
their own hosts, each fronted by its sidecar, and the control plane on a
fifth host. `trellis load` sends an open-loop load through the client's
sidecar and a fault hits one instance (or the control plane) two seconds
in; the client must not notice (retries), and the broken instance must be
ejected (outlier detection) within five seconds.

The rate is TRELLIS_MESH_RPS (default 2000 req/s) for 8 s over 16
connections. Each test builds its own mesh (under a second) and takes about
9 s; the file about 75 s. Needs root (network namespaces); skipped without."""

import os
import signal
import time

import pytest

from mesh import ECHO_MODULE, FIGURES, UPSTREAMS, Mesh, Outcome, destination_policy, run_load

RATE = int(os.environ.get("TRELLIS_MESH_RPS", "2000"))
DURATION = 8.0
FAULT_AFTER = 2.0
MIN_SUCCESS = 0.999
EJECTION_WITHIN = 5.0
BAD = "up2"  # the instance the fault hits


def report(out: Outcome, extra: str = "") -> None:
    """Prints the run's figures (shown on failure) and keeps them for the
    session's summary (always shown)."""
    line = out.figures() + (f"\n    {extra}" if extra else "")
    print(line)
    FIGURES.append(line)


def check_success(out: Outcome) -> None:
    assert out.success_rate >= MIN_SUCCESS, f"the client noticed the fault: {out.figures()}"


def check_ejected(out: Outcome) -> None:
    assert out.ejected_after is not None and out.ejected_after <= EJECTION_WITHIN, (
        f"the broken instance was not ejected within {EJECTION_WITHIN}s of the fault: {out.figures()}; "
        f"client /stats samples (s from fault: ejected/available/ejections_total): "
        f"{[(round(s['t'] - out.fault_at, 2), s['ejected'], s['available'], s['ejections']) for s in out.samples][::5]}")


def served_after(mesh: Mesh, name: str, wall: float) -> list[int]:
    """Statuses nginx on `name` answered from `wall` on."""
    return [status for t, status in mesh.apps[name].served() if t >= wall]


def wait_logged(mesh: Mesh, out: Outcome) -> None:
    """nginx logs an answer just after sending it: waits until every 200 the
    client got is in some instance's log (retried answers add lines)."""
    start = out.fault_wall - FAULT_AFTER - 1
    ok = out.report["status"].get("200", 0)

    def logged() -> int:
        return sum(1 for name in UPSTREAMS for status in served_after(mesh, name, start) if status == 200)
    deadline = time.monotonic() + 10
    while logged() < ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged() >= ok, f"the client got {ok} answers of 200, the nginx logs show {logged()}"


@pytest.fixture
def mesh(network):
    return Mesh(network, destination_policy("RoundRobin"))


@pytest.fixture
def ewma_mesh(network):
    if not ECHO_MODULE.exists():
        pytest.skip(f"a slow nginx needs {ECHO_MODULE} (Debian: libnginx-mod-http-echo)")
    return Mesh(network, destination_policy("PeakEWMA"))


def test_baseline_without_fault(mesh):
    out = run_load(mesh, "no fault", None, RATE, DURATION, FAULT_AFTER)
    report(out)
    check_success(out)
    assert out.report["achieved_rate"] >= 0.97 * RATE and out.report["requests"]["missed"] == 0, \
        f"the mesh cannot sustain {RATE} req/s on this machine (set TRELLIS_MESH_RPS): {out.figures()}"
    assert out.ejected_after is None, f"an instance was ejected without a fault: {out.figures()}"
    wait_logged(mesh, out)
    shares = {name: len(served_after(mesh, name, out.fault_wall - FAULT_AFTER)) for name in UPSTREAMS}
    assert min(shares.values()) >= 0.3 * sum(shares.values()), f"round robin uneven: {shares}"


def check_retries_stop(out: Outcome, settle: float = 1.0) -> None:
    """Once the broken instance is out, nothing needs retrying any more: had
    a healthy one been ejected instead, retries would go on."""
    after = out.fault_at + out.ejected_after + settle
    late = out.retries_since(after)
    assert late <= 5, f"{late:.0f} retries more than {settle}s after the ejection: the broken instance " \
                      f"is still being picked; {out.figures()}"


def test_killed_app(mesh):
    """nginx behind up2's sidecar dies (SIGKILL): its sidecar answers 503 for
    it; the client retries on another instance and ejects up2."""
    out = run_load(mesh, "nginx SIGKILL", mesh.apps[BAD].kill, RATE, DURATION, FAULT_AFTER)
    report(out)
    check_success(out)
    check_ejected(out)
    check_retries_stop(out)


def test_killed_sidecar(mesh):
    """up2's sidecar dies (SIGKILL): connections to it are reset, then refused."""
    out = run_load(mesh, "sidecar SIGKILL", lambda: mesh.sidecars[BAD].signal(signal.SIGKILL),
                   RATE, DURATION, FAULT_AFTER)
    report(out)
    check_success(out)
    check_ejected(out)
    check_retries_stop(out)


def test_frozen_sidecar(mesh):
    """up2's sidecar is stopped (SIGSTOP): the kernel still accepts
    connections, nothing answers; tries time out after perTryTimeout."""
    sidecar = mesh.sidecars[BAD]
    try:
        out = run_load(mesh, "sidecar SIGSTOP", lambda: sidecar.signal(signal.SIGSTOP), RATE, DURATION, FAULT_AFTER)
    finally:
        sidecar.signal(signal.SIGCONT)
    report(out)
    check_success(out)
    check_ejected(out)
    check_retries_stop(out)


def test_host_cut_off(mesh):
    """Every packet in and out of up2 is dropped (iptables in its namespace):
    tries in flight time out, new connections time out after connectTimeout."""
    host = mesh.host_of(BAD)
    try:
        out = run_load(mesh, "host cut off (iptables DROP)", host.cut, RATE, DURATION, FAULT_AFTER)
    finally:
        host.reconnect()
    report(out)
    check_success(out)
    check_ejected(out)
    check_retries_stop(out)


def test_app_answers_500(mesh):
    """up2's nginx is reloaded to answer 500: not retried (not a gateway
    error), so the few answered before the ejection reach the client."""
    out = run_load(mesh, "nginx answers 500", lambda: mesh.apps[BAD].behave("error"), RATE, DURATION, FAULT_AFTER)
    report(out)
    check_success(out)
    check_ejected(out)
    wait_logged(mesh, out)
    late = served_after(mesh, BAD, out.fault_wall + out.ejected_after + 0.5)
    assert not late, f"up2 still got {len(late)} requests after its ejection: {out.figures()}"


def test_slow_instance(ewma_mesh):
    """The busiest instance's nginx is reloaded to answer after 300 ms:
    PeakEWMA steers away from it within a few requests, without errors."""
    mesh = ewma_mesh
    before: dict[str, int] = {}

    def slow_down():
        # PeakEWMA may leave an instance idle (see Mesh._wait_ready): slow
        # down the one carrying the most, so that steering has work to do.
        now = time.time()
        before.update({name: len(served_after(mesh, name, now - FAULT_AFTER)) for name in UPSTREAMS})
        mesh.apps[max(before, key=before.get)].behave("slow")

    out = run_load(mesh, "nginx 300ms slower (PeakEWMA)", slow_down, RATE, DURATION, FAULT_AFTER)
    slow = max(before, key=before.get)
    wait_logged(mesh, out)
    after = {name: len(served_after(mesh, name, out.fault_wall + 1.0)) for name in UPSTREAMS}
    share = after[slow] / max(1, sum(after.values()))
    report(out, f"{slow} made slow; served in the {FAULT_AFTER:g}s before the fault: {before}, "
                f"from 1s after it on: {after} (the slow one: {100 * share:.2f}%)")
    check_success(out)
    assert before[slow] >= 0.25 * sum(before.values()), f"no instance carried much before the fault: {before}"
    assert share <= 0.05, f"the slow instance kept {100 * share:.1f}% of the traffic: {after}"


def test_control_plane_killed(mesh):
    """trellis-control dies (SIGKILL): the sidecars keep serving on their last
    configuration, with all three instances."""
    out = run_load(mesh, "control plane SIGKILL", mesh.control.kill, RATE, DURATION, FAULT_AFTER)
    wait_logged(mesh, out)
    shares = {name: len(served_after(mesh, name, out.fault_wall + 1.0)) for name in UPSTREAMS}
    report(out, f"served from 1s after the fault on: {shares}")
    check_success(out)
    assert min(shares.values()) >= 0.25 * sum(shares.values()), f"an instance was dropped: {shares}"
