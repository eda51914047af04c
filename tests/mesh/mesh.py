"""The mesh the fault tests run on, one namespace per host:

    control   trellis-control (gRPC and JSON API on its own address)
    client    the client's sidecar (outbound listener on 127.0.0.1, calls
              `backend`) and `trellis load` as the application
    up1..3    nginx answering "host-N" on 127.0.0.1, and its sidecar
              registering the instance (inbound on the host's address,
              TTL 2 s) with the control plane

plus what a fault test needs to watch it: a load run, a poller of the client
sidecar's /stats, and each nginx's access log (with times)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import (BIN_DIR, CONTROL_BIN, PROXY_BIN, Service, metric, parse_prometheus, tail, to_yaml, wait_until,
                     write_private_file)
from netns import Host, Network

TRELLIS_CLI = BIN_DIR / "cli" / "trellis"

GRPC_PORT = 15010
API_PORT = 15011
ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
APP_PORT = 8080

SERVICE = "backend"
CLUSTER = "backend.default"
UPSTREAMS = ("up1", "up2", "up3")
HOSTS = ["control", "client", *UPSTREAMS]

# One line per load run, printed at the end of the session (conftest.py).
FIGURES: list[str] = []

ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")


# ------------------------------------------------------------------------ nginx

_NGINX_CONF = r"""
@LOAD@
daemon off;
master_process on;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 4096; }
http {
  default_type text/plain;
  # The time each answer went out, for requests of the mesh only (the
  # test's own probes carry X-Probe).
  log_format timed '$msec $status';
  map $http_x_probe $from_mesh { "" 1; default 0; }
  access_log @DIR@/access.log timed if=$from_mesh;
  client_body_temp_path @DIR@/tmp/body;
  proxy_temp_path @DIR@/tmp/proxy;
  fastcgi_temp_path @DIR@/tmp/fastcgi;
  uwsgi_temp_path @DIR@/tmp/uwsgi;
  scgi_temp_path @DIR@/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:@PORT@;
    location / { @BEHAVIOUR@ }
  }
}
"""

BEHAVIOURS = {
    "ok": 'return 200 "@NAME@\\n";',
    "error": 'return 500 "@NAME@ broken\\n";',
    "slow": 'echo_sleep 0.3; echo "@NAME@";',
}


class App:
    """nginx on an upstream host: "ok" answers 200 with the host's name,
    "error" answers 500, "slow" answers after 300 ms (nginx's echo module).
    Run with a master process, so that a new behaviour is a real reload."""

    def __init__(self, host: Host, name: str):
        self.host = host
        self.name = name
        self.dir = host.dir / "nginx"
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "nginx.conf"
        self.mode = "ok"
        self.service: Service | None = None

    def _write(self, mode: str) -> None:
        load = f"load_module {ECHO_MODULE};" if ECHO_MODULE.exists() else ""
        text = (_NGINX_CONF.replace("@LOAD@", load).replace("@BEHAVIOUR@", BEHAVIOURS[mode])
                .replace("@DIR@", str(self.dir)).replace("@PORT@", str(APP_PORT)).replace("@NAME@", self.name))
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf)

    def start(self) -> "App":
        self._write("ok")
        self.service = self.host.spawn("nginx", ["nginx", "-p", self.dir, "-c", self.conf], self.dir)
        if not wait_until(lambda: not self.service.running() or self.answer()[0] == 200, 10) \
                or not self.service.running():
            raise RuntimeError(f"nginx on {self.host.name} did not start:\n{self.log()}")
        return self

    def answer(self) -> tuple[int, bytes]:
        """A request of the test's own, straight to nginx (not logged)."""
        return self.host.http("GET", "127.0.0.1", APP_PORT, "/", headers={"X-Probe": "1"}, timeout=2)

    def behave(self, mode: str) -> None:
        """Switches to `mode` with `nginx -s reload` semantics (SIGHUP to the
        master) and returns once a new request gets the new behaviour."""
        self._write(mode)
        self.service.send_signal(signal.SIGHUP)

        def switched() -> bool:
            start = time.monotonic()
            status, _ = self.answer()
            took = time.monotonic() - start
            return {"ok": status == 200 and took < 0.2, "error": status == 500,
                    "slow": status == 200 and took >= 0.29}[mode]

        if not wait_until(switched, 5, 0.02):
            raise AssertionError(f"nginx on {self.host.name} did not switch to {mode}:\n{self.log()}")
        self.mode = mode

    def kill(self) -> None:
        """SIGKILL to master and worker alike (they share a process group)."""
        os.killpg(self.service.pid, signal.SIGKILL)
        self.service.wait(5)

    def served(self) -> list[tuple[float, int]]:
        """(wall time, status) of every request the mesh sent."""
        path = self.dir / "access.log"
        out = []
        for line in path.read_text().splitlines() if path.exists() else []:
            parts = line.split()
            if len(parts) == 2:
                out.append((float(parts[0]), int(parts[1])))
        return out

    def log(self) -> str:
        error_log = self.dir / "error.log"
        text = error_log.read_text(errors="replace") if error_log.exists() else ""
        return tail((self.service.stderr() if self.service else "") + text)


# ------------------------------------------------------------------- processes


class Sidecar:
    """trellis-proxy on a host, configured by the control plane; its admin
    listener is on the host's loopback."""

    def __init__(self, host: Host, config: dict, workers: int):
        self.host = host
        self.config = config
        self.workers = workers
        self.dir = host.dir / "proxy"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.service: Service | None = None

    def start(self) -> "Sidecar":
        path = self.dir / "trellis.yaml"
        path.write_text(to_yaml(self.config))
        self.service = self.host.spawn("proxy", [PROXY_BIN, "--config", path, "--workers", self.workers], self.dir)
        ready = wait_until(lambda: not self.service.running() or self.admin("/ready")[0] == 200, 10)
        if not ready or not self.service.running():
            raise RuntimeError(f"trellis-proxy on {self.host.name} did not come up:\n{self.output()}")
        return self

    def admin(self, path: str, timeout: float = 2) -> tuple[int, bytes]:
        return self.host.http("GET", "127.0.0.1", ADMIN_PORT, path, timeout=timeout)

    def stats(self) -> dict | None:
        status, body = self.admin("/stats")
        return parse_prometheus(body.decode()) if status == 200 else None

    def config_dump(self) -> dict | None:
        status, body = self.admin("/config_dump")
        return json.loads(body) if status == 200 else None

    def signal(self, sig: int) -> None:
        os.kill(self.service.pid, sig)

    def output(self) -> str:
        return tail(self.service.stdout() + self.service.stderr()) if self.service else ""


class Control:
    """trellis-control on the control host, and its JSON API seen from there."""

    def __init__(self, host: Host):
        self.host = host
        self.dir = host.dir / "control"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.grpc_address = f"{host.ip}:{GRPC_PORT}"
        self.service: Service | None = None

    def start(self) -> "Control":
        self.service = self.host.spawn("control", [
            CONTROL_BIN, "--data-dir", self.dir / "data", "--grpc-address", self.grpc_address,
            "--http-address", f"{self.host.ip}:{API_PORT}"], self.dir)
        if not wait_until(lambda: not self.service.running() or self.request("GET", "/healthz")[0] == 200, 10) \
                or not self.service.running():
            raise RuntimeError(f"trellis-control did not come up:\n{tail(self.service.stderr())}")
        return self

    def request(self, method: str, path: str, body=None) -> tuple[int, object]:
        """With the admin token trellis-control wrote at its first start."""
        token_file = self.dir / "data" / "admin-token"
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"} if token_file.exists() else {}
        if not self.trust_bundle.exists():
            return 0, None
        # The API is served over TLS with a certificate from the mesh CA.
        tls = ssl.create_default_context(cafile=str(self.trust_bundle))
        status, raw = self.host.http(method, self.host.ip, API_PORT, path, body, headers=headers, tls=tls)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def apply(self, resource: dict) -> None:
        status, body = self.request("PUT", "/v1/resources", resource)
        assert status in (200, 201), f"apply {resource['kind']}/{resource['metadata']['name']}: {status} {body}"

    @property
    def trust_bundle(self) -> Path:
        return self.dir / "data" / "trust-bundle.pem"

    def join_token_file(self, name: str, service: str) -> Path:
        """A file (mode 0600) with a new join token for `service` in the default namespace."""
        status, body = self.request("POST", "/v1/tokens", {"kind": "join", "namespace": "default",
                                                           "serviceAccount": service, "ttl": "1h"})
        assert status == 201, f"join token for {service}: {status} {body}"
        return write_private_file(self.dir / f"{name}.token", body["secret"] + "\n")

    def proxies(self) -> dict[str, dict]:
        status, body = self.request("GET", "/v1/status")
        return {p["node_id"]: p for p in body.get("proxies", [])} if status == 200 else {}

    def kill(self) -> None:
        self.service.send_signal(signal.SIGKILL)
        self.service.wait(5)


# ------------------------------------------------------------------------ policy


def destination_policy(algorithm: str = "RoundRobin") -> dict:
    """The backend's DestinationPolicy for every fault test. The per-try
    timeout (500 ms) is what ends tries to a frozen or unreachable instance;
    a 300 ms slow answer stays within it. maxEjectionPercent 34 lets one of
    three instances be ejected (34 × 3 ≥ 100; DestinationPolicy has no
    alwaysEjectOne); panic is off so an ejection is never overruled.
    connectionPool.maxRetries is left at its default (3 retries in flight)."""
    retries = {"attempts": 2, "retryOn": ["connect-failure", "reset", "gateway-error"], "perTryTimeout": "500ms",
               "backoff": {"baseInterval": "5ms"}, "budget": {"percent": 50, "minRetriesPerSecond": 100}}
    return {
        "apiVersion": "trellis.dev/v1alpha1", "kind": "DestinationPolicy", "metadata": {"name": SERVICE},
        "spec": {
            "targetRef": {"kind": "Service", "name": SERVICE},
            "loadBalancer": {"algorithm": algorithm},
            "connectionPool": {"connectTimeout": "250ms"},
            "retries": retries,
            "outlierDetection": {"consecutiveGatewayErrors": 3, "consecutive5xx": 3, "interval": "1s",
                                 "baseEjectionTime": "30s", "maxEjectionPercent": 34,
                                 "panicThresholdPercent": 0},
        },
    }


# -------------------------------------------------------------------------- mesh


class Mesh:
    """The five hosts' processes, started in order (control plane, each
    upstream's nginx and sidecar, the client's sidecar), the policy applied,
    and ready for load."""

    def __init__(self, network: Network, policy: dict, client_workers: int = 2, upstream_workers: int = 1):
        self.network = network
        self.policy = policy
        self.control = Control(network["control"]).start()
        self.apps: dict[str, App] = {}
        self.sidecars: dict[str, Sidecar] = {}
        for i, name in enumerate(UPSTREAMS, 1):
            host = network[name]
            self.apps[name] = App(host, f"host-{i}").start()
            self.sidecars[name] = Sidecar(host, self._config({
                "id": f"{SERVICE}-{i}", "service": SERVICE}, instance={
                "address": f"{host.ip}:{INBOUND_PORT}", "app_address": f"127.0.0.1:{APP_PORT}", "ttl": "2s"}),
                upstream_workers).start()
        self.client_host = network["client"]
        self.client = Sidecar(self.client_host, self._config({"id": "client-1", "service": "client"},
                                                             outbound_address=f"127.0.0.1:{OUTBOUND_PORT}",
                                                             upstream_services=[SERVICE]), client_workers).start()
        self.control.apply(policy)
        self._wait_ready()

    def _config(self, node: dict, **control_plane) -> dict:
        return {"admin": {"address": f"127.0.0.1:{ADMIN_PORT}"}, "listeners": [], "clusters": [],
                "control_plane": {"address": self.control.grpc_address, "node": node,
                                  "trust_bundle": str(self.control.trust_bundle),
                                  "join_token_file": str(self.control.join_token_file(node["id"], node["service"])),
                                  **control_plane}}

    def host_of(self, name: str) -> Host:
        return self.network[name]

    def get(self) -> tuple[int, bytes]:
        """One request as the client application makes it."""
        return self.client_host.http("GET", "127.0.0.1", OUTBOUND_PORT, "/", headers={"Host": SERVICE}, timeout=2)

    def _wait_ready(self) -> None:
        """Every proxy in sync, the policy in force in the client's sidecar,
        each instance reachable from the client host, and the client's
        sidecar serving. (Not "every instance answers through the client's
        sidecar": with PeakEWMA an instance not picked at first keeps its
        30 ms default estimate, decaying over tens of seconds, and is
        rightly left alone while the others answer in well under 1 ms.)"""
        nodes = {"client-1", *(f"{SERVICE}-{i}" for i in range(1, len(UPSTREAMS) + 1))}
        algorithm = self.policy["spec"]["loadBalancer"]["algorithm"]
        lb_policy = {"RoundRobin": "round_robin", "PeakEWMA": "peak_ewma"}[algorithm]

        def in_sync():
            proxies = self.control.proxies()
            return set(proxies) == nodes and all(p.get("in_sync") for p in proxies.values())

        def policy_in_force():
            # /config_dump shows the retry policy but not outlier detection;
            # /stats has the cluster's ejection counter only while a detector
            # is in force.
            dump = self.client.config_dump() or {}
            clusters = {c["name"]: c for c in dump.get("clusters", [])}
            backend = clusters.get(CLUSTER, {})
            stats = self.client.stats() or {}
            return (len(backend.get("endpoints", [])) == len(UPSTREAMS) and backend.get("retry")
                    and backend.get("lb_policy") == lb_policy
                    and ("trellis_upstream_ejections_total", frozenset({("cluster", CLUSTER)})) in stats)

        if not wait_until(lambda: in_sync() and policy_in_force(), 15, 0.1):
            raise AssertionError(f"mesh not in sync: /v1/status {self.control.proxies()}\n"
                                 f"client /config_dump {json.dumps(self.client.config_dump())[:3000]}")
        for i, name in enumerate(UPSTREAMS, 1):
            answer = self.client_host.http("GET", self.network[name].ip, INBOUND_PORT, "/",
                                           headers={"Host": SERVICE}, timeout=2)
            assert answer == (200, f"host-{i}\n".encode()), f"{name}'s sidecar from the client host: {answer}"
        if not wait_until(lambda: self.get()[0] == 200, 10, 0.05):
            raise AssertionError(f"the client's sidecar does not serve: {self.get()}")


# ----------------------------------------------------------------- load and watch


class StatsWatch:
    """Polls the client sidecar's /stats every `interval` during a run:
    endpoints of the backend cluster by state, and its ejections."""

    def __init__(self, sidecar: Sidecar, interval: float = 0.1):
        self.sidecar = sidecar
        self.interval = interval
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stats-watch", daemon=True)

    def start(self) -> "StatsWatch":
        self._thread.start()
        return self

    def wait_first_sample(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.samples and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.samples:
            raise AssertionError(f"no /stats sample from the client sidecar in {timeout}s")

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                stats = self.sidecar.stats()
            except ValueError:
                stats = None
            if stats is not None:
                self.samples.append({
                    "t": t,
                    "ejected": metric(stats, "trellis_upstream_endpoints", cluster=CLUSTER, state="ejected"),
                    "available": metric(stats, "trellis_upstream_endpoints", cluster=CLUSTER, state="available"),
                    "ejections": metric(stats, "trellis_upstream_ejections_total", cluster=CLUSTER),
                    "retries": metric(stats, "trellis_upstream_retries_total", cluster=CLUSTER),
                    "timeouts": metric(stats, "trellis_upstream_timeouts_total", cluster=CLUSTER),
                    "connect_failures": metric(stats, "trellis_upstream_connect_failures_total", cluster=CLUSTER),
                    "budget_exhausted": metric(stats, "trellis_upstream_retry_budget_exhausted_total",
                                               cluster=CLUSTER),
                    "retry_overflow": metric(stats, "trellis_upstream_overflow_total", cluster=CLUSTER,
                                             limit="max_retries"),
                })
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Outcome:
    """What one load run with a fault gave."""
    name: str
    report: dict
    fault_at: float  # monotonic
    fault_wall: float  # time.time(), to compare with nginx's access logs
    samples: list[dict] = field(default_factory=list)
    ejected_after: float | None = None

    def sample(self, t: float) -> dict | None:
        """The client's /stats as last polled at or before `t` (monotonic)."""
        before = [s for s in self.samples if s["t"] <= t]
        return before[-1] if before else None

    def first_ejection(self) -> float | None:
        """Seconds from the fault to the first sample showing an ejection
        made since (the gauge up, or the counter past its value then).
        Nothing may be ejected before the fault."""
        before = self.sample(self.fault_at)
        assert before is not None, "no /stats sample from before the fault"
        assert before["ejected"] == 0, f"an instance was ejected before the fault: {before}"
        for s in self.samples:
            if s["t"] > self.fault_at and (s["ejected"] >= 1 or s["ejections"] > before["ejections"]):
                return s["t"] - self.fault_at
        return None

    def retries_since(self, t: float) -> float:
        """Retries the client's sidecar made from `t` to the end of the run."""
        first, last = self.sample(t), self.samples[-1] if self.samples else None
        return last["retries"] - first["retries"] if first and last else float("nan")

    @property
    def total(self) -> int:
        r = self.report["requests"]
        return r["sent"] + r.get("missed", 0)

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.report["status"].items() if code.startswith("2"))

    @property
    def success_rate(self) -> float:
        return self.ok / self.total if self.total else 0.0

    def figures(self) -> str:
        r = self.report
        lat = r["latency_us"]
        errors = {k: v for k, v in r["errors"].items() if v} or "none"
        ejection = "none seen" if self.ejected_after is None else f"seen {self.ejected_after:.3f}s after the fault"
        first, last = (self.samples[0], self.samples[-1]) if self.samples else ({}, {})
        sidecar = ", ".join(f"{last[k] - first[k]:.0f} {k.replace('_', ' ')}" for k in
                            ("retries", "timeouts", "connect_failures", "budget_exhausted", "retry_overflow")
                            if k in last)
        return (f"{self.name}: {self.ok}/{self.total} 2xx = {100 * self.success_rate:.3f}% "
                f"(asked {r['rate']:.0f} req/s, achieved {r['achieved_rate']:.0f}, "
                f"missed {r['requests'].get('missed', 0)})\n"
                f"    status {dict(sorted(r['status'].items()))}; errors {errors}; "
                f"latency p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} max {_ms(lat['max'])}\n"
                f"    ejection {ejection}; client sidecar during the run: {sidecar}")


def _ms(us) -> str:
    return "n/a" if us is None else f"{us / 1000:.2f}ms"


def run_load(mesh: Mesh, name: str, fault, rate: int, duration: float = 8, fault_after: float = 2,
             connections: int = 16) -> Outcome:
    """`trellis load` from the client host through its sidecar, with `fault()`
    called `fault_after` seconds in (None: no fault), /stats polled all along."""
    if not TRELLIS_CLI.exists():
        pytest.fail(f"{TRELLIS_CLI} does not exist: build the trellis target first")
    watch = StatsWatch(mesh.client).start()
    watch.wait_first_sample()  # a sample from before the run
    load = mesh.client_host.spawn(f"load-{name}", [
        TRELLIS_CLI, "load", f"http://127.0.0.1:{OUTBOUND_PORT}/", "-H", f"Host: {SERVICE}",
        "--rate", rate, "--duration", f"{duration:g}s", "--connections", connections, "--json"])
    started = time.monotonic()
    try:
        time.sleep(max(0.0, started + fault_after - time.monotonic()))
        fault_at, fault_wall = time.monotonic(), time.time()
        if fault is not None:
            fault()
        code = load.wait(duration + 20)
        if code is None:
            raise AssertionError(f"trellis load still running {duration + 20:.0f}s after its {duration}s run")
    finally:
        watch.stop()
    try:
        report = json.loads(load.stdout())
    except ValueError:
        raise AssertionError(f"trellis load printed no JSON (exit {load.returncode}):\n{tail(load.stdout())}\n"
                             f"{tail(load.stderr())}")
    out = Outcome(name, report, fault_at, fault_wall, watch.samples)
    out.ejected_after = out.first_ejection()
    return out
