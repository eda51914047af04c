#!/usr/bin/python3
"""The control plane at scale: a registry change, until the last affected proxy has it.

Starts trellis-control on free loopback ports with a fresh data directory,
registers M services x I instances through the JSON API, connects N simulated
proxies (trellis-sim-proxies: one gRPC stream each, every proxy calling K
services), waits until all of them hold their whole configuration, then makes
R registry changes, one every --interval seconds, alternately registering a new
instance and deregistering one. For each change it measures, from the moment
the API call returned, until the last proxy calling that service received the
update carrying it (receipt times come from the simulator, on the same wall
clock), and until /v1/status showed all of them ACKed. It also reports the
time to the first full sync of all proxies and trellis-control's memory (VmRSS,
VmHWM) and CPU time.

    bench/control/scale.py                  # the full run: 1,000 proxies, 10,000 endpoints
    bench/control/scale.py --smoke          # a few seconds: 50 proxies, 500 endpoints, 3 changes

Writes out/scale.json and out/scale.md next to this file (or under --out) and
prints the table. Exits 1 when a change did not reach every proxy calling its
service, or the proxies never got in sync; the figures themselves never fail it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import resource
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAMESPACE = "default"
SIM_NAME = "trellis-sim-proxies"


# ---- small helpers --------------------------------------------------------------


def now_ms() -> float:
    """Wall-clock milliseconds: the simulator stamps receipts with the same clock."""
    return time.time() * 1000.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: with few samples the high percentiles are the largest ones."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def proc_status_kib(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, all threads."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def instance_address(service: int, index: int) -> str:
    """A distinct "ip:port" for instance `index` of service `service`."""
    return f"10.{1 + service // 256}.{service % 256}.{1 + index % 250}:{8080 + index // 250}"


def added_address(n: int) -> str:
    """Instances registered by the changes, apart from the initial ones."""
    return f"10.200.{n // 250}.{1 + n % 250}:9090"


def service_name(j: int) -> str:
    return f"svc-{j}"


def machine() -> dict[str, object]:
    def first(path: str, prefix: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
        except OSError:
            pass
        return "unknown"

    mem_kib = first("/proc/meminfo", "MemTotal:").split()[0]
    os_name = first("/etc/os-release", "PRETTY_NAME=").strip('"')
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "diff-index", "--quiet", "HEAD", "--", "src", "api"], cwd=REPO,
                               capture_output=True, timeout=10).returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        head, dirty = "", False
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kib) / 1024 / 1024, 1) if mem_kib.isdigit() else None,
        "os": os_name,
        "kernel": platform.release(),
        "commit": (head or "unknown") + (" (working tree differs in src/ or api/)" if dirty else ""),
        "loadavg_before": os.getloadavg()[0],
    }


# ---- the processes ----------------------------------------------------------------


class Api:
    """The JSON API over one keep-alive connection, with the admin token."""

    def __init__(self, port: int, token: str, cafile: Path):
        self.port = port
        self.token = token
        # The API is served over TLS with a certificate from the mesh CA.
        self.tls = ssl.create_default_context(cafile=str(cafile))
        self.conn: http.client.HTTPSConnection | None = None

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=120, context=self.tls)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class Control:
    """trellis-control on free loopback ports with a data directory of its own."""

    def __init__(self, binary: Path, workdir: Path):
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.log_path = workdir / "trellis-control.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "--data-dir", str(workdir / "data"),
             "--grpc-address", f"127.0.0.1:{self.grpc_port}",
             "--http-address", f"127.0.0.1:{self.http_port}", "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"trellis-control exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("trellis-control did not start listening")
                time.sleep(0.05)
        # Written at the first start, before the API listens.
        self.token = (workdir / "data" / "admin-token").read_text().strip()
        self.cafile = workdir / "data" / "trust-bundle.pem"

    def memory(self) -> dict[str, int]:
        return proc_status_kib(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Sim:
    """trellis-sim-proxies, asked over its stdin/stdout line protocol."""

    # Proxy i is a sidecar of sim-client-<i % CLIENT_SERVICES> (the simulator's default).
    CLIENT_SERVICES = 10

    def __init__(self, binary: Path, control_port: int, args: argparse.Namespace, workdir: Path, api: "Api"):
        self.log = open(workdir / "sim.log", "wb")
        # Each simulated sidecar proves who it is with a join token for its service.
        tokens = workdir / "join-tokens"
        lines = []
        for n in range(self.CLIENT_SERVICES):
            status, body = api.call("POST", "/v1/tokens", {"kind": "join", "namespace": "default",
                                                           "serviceAccount": f"sim-client-{n}", "ttl": "24h"})
            if status != 201:
                raise RuntimeError(f"cannot create a join token: {status} {body}")
            lines.append(f"sim-client-{n} {body['secret']}\n")
        tokens.write_text("".join(lines))
        tokens.chmod(0o600)
        self.argv = [str(binary), "--control", f"127.0.0.1:{control_port}",
                     "--trust-bundle", str(workdir / "data" / "trust-bundle.pem"),
                     "--join-tokens", str(tokens),
                     "--client-services", str(self.CLIENT_SERVICES),
                     "--proxies", str(args.proxies), "--services", str(args.services),
                     "--calls", str(args.calls), "--threads", str(args.sim_threads),
                     "--seed", str(args.seed)]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.started = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{SIM_NAME} exited (status {self.proc.poll()})")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"{SIM_NAME}: {answer['error']}")
        return answer

    def status(self) -> dict:
        return self.ask("status")

    def seen(self, cluster: str, address: str, change: str, since_ms: float) -> dict:
        return self.ask(f"seen {cluster} {address} {change} {int(since_ms)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class MemorySampler(threading.Thread):
    """Samples trellis-control's VmRSS; the largest value per phase."""

    def __init__(self, pid: int, every_s: float = 0.1):
        super().__init__(daemon=True)
        self.pid = pid
        self.every_s = every_s
        self.phase = "start"
        self.peaks: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            rss = proc_status_kib(self.pid).get("VmRSS")
            if rss is not None:
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            self.done.wait(self.every_s)


# ---- the phases -------------------------------------------------------------------


def register_all(port: int, token: str, cafile: Path, services: int, per_service: int,
                 connections: int = 4) -> float:
    """Registers every instance over a few keep-alive connections; returns seconds taken."""
    jobs = [(j, i) for j in range(services) for i in range(per_service)]
    errors: list[str] = []

    def worker(part: list[tuple[int, int]]) -> None:
        api = Api(port, token, cafile)
        try:
            for j, i in part:
                status, body = api.call("POST", "/v1/registry/instances", {
                    "id": f"{service_name(j)}-{i}", "service": service_name(j),
                    "address": instance_address(j, i), "ttl_seconds": 86400})
                if status != 201:
                    errors.append(f"register {service_name(j)}-{i}: {status} {body}")
                    return
        finally:
            api.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(jobs[k::connections],)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.monotonic() - start


def status_proxies(api: Api) -> list[dict]:
    status, body = api.call("GET", "/v1/status")
    if status != 200:
        raise RuntimeError(f"/v1/status: {status} {body}")
    return body["proxies"]


@dataclass
class Change:
    kind: str        # "register" or "deregister"
    service: str
    address: str
    instance_id: str
    fan_out: int = 0
    received: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: int = 0
    api_ms: float = 0.0           # the API call itself
    first_ms: float | None = None  # API response -> first affected proxy's receipt
    last_ms: float | None = None   # API response -> last affected proxy's receipt
    last_from_request_ms: float | None = None
    acked_ms: float | None = None  # API response -> /v1/status shows all of them ACKed (polled)
    updates: int = 0               # updates all proxies received meanwhile
    update_bytes: int = 0


def wait_for_change(sim: Sim, api: Api, change: Change, since_ms: float, request_ms: float,
                    response_ms: float, args: argparse.Namespace) -> None:
    cluster = f"{change.service}.{NAMESPACE}"
    verb = "added" if change.kind == "register" else "removed"
    deadline = time.monotonic() + args.change_timeout
    while True:
        seen = sim.seen(cluster, change.address, verb, since_ms)
        if not seen["missing"] or time.monotonic() > deadline:
            break
        time.sleep(args.poll)
    change.fan_out = seen["expected"]
    change.received = len(seen["received"])
    change.missing = seen["missing"]
    change.unexpected = seen["unexpected"]
    times = [r["at_ms"] for r in seen["received"]]
    if times:
        change.first_ms = min(times) - response_ms
        change.last_ms = max(times) - response_ms
        change.last_from_request_ms = max(times) - request_ms
    if change.missing:
        return
    # ACKs as the control plane reports them. /v1/status is read only once every
    # receipt is in, since it is answered on the thread that runs the pushes:
    # the figure is an upper bound, late by up to one poll of each kind.
    wanted = {r["node"]: r["version"] for r in seen["received"]}
    while time.monotonic() < deadline:
        proxies = status_proxies(api)
        t = now_ms()
        acked = {p["node_id"]: p["acked_version"] for p in proxies if p["node_id"] in wanted}
        if all(acked.get(node, 0) >= version for node, version in wanted.items()):
            change.acked_ms = t - response_ms
            return
        time.sleep(args.status_poll)


def make_changes(args: argparse.Namespace, api: Api, sim: Sim) -> list[Change]:
    rng = random.Random(args.seed)
    removed: set[tuple[int, int]] = set()
    changes: list[Change] = []
    for r in range(args.changes):
        j = rng.randrange(args.services)
        if r % 2 == 0:
            address = added_address(r)
            change = Change("register", service_name(j), address, f"{service_name(j)}-new-{r}")
        else:
            i = rng.randrange(args.instances)
            while (j, i) in removed:
                i = rng.randrange(args.instances)
            removed.add((j, i))
            change = Change("deregister", service_name(j), instance_address(j, i), f"{service_name(j)}-{i}")
        before = sim.status()
        since = now_ms() - 1  # receipts are stamped in whole milliseconds
        request_ms = now_ms()
        if change.kind == "register":
            status, body = api.call("POST", "/v1/registry/instances", {
                "id": change.instance_id, "service": change.service, "address": change.address,
                "ttl_seconds": 86400})
            ok = status == 201
        else:
            status, body = api.call("DELETE", f"/v1/registry/instances/{change.instance_id}")
            ok = status == 200
        response_ms = now_ms()
        if not ok:
            raise RuntimeError(f"{change.kind} {change.instance_id}: {status} {body}")
        change.api_ms = response_ms - request_ms
        wait_for_change(sim, api, change, since, request_ms, response_ms, args)
        after = sim.status()
        change.updates = after["updates"] - before["updates"]
        change.update_bytes = after["update_bytes"] - before["update_bytes"]
        changes.append(change)
        print(f"  change {r + 1}/{args.changes}: {change.kind} {change.address} in {change.service}: "
              f"{change.received}/{change.fan_out} proxies, last after {fmt_ms(change.last_ms)} ms, "
              f"ACKs seen after {fmt_ms(change.acked_ms)} ms", file=sys.stderr)
        rest = args.interval - (now_ms() - request_ms) / 1000
        if rest > 0 and r + 1 < args.changes:
            time.sleep(rest)
    return changes


# ---- the report ---------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def fmt_mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:,.1f}"


def summarize(changes: list[Change]) -> dict[str, object]:
    def stats(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50": None, "p99": None, "max": None}
        return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values)}

    return {
        "changes": len(changes),
        "complete": sum(1 for c in changes if not c.missing and c.fan_out > 0),
        "last_proxy_ms": stats([c.last_ms for c in changes if c.last_ms is not None]),
        "last_proxy_from_request_ms": stats([c.last_from_request_ms for c in changes
                                             if c.last_from_request_ms is not None]),
        "first_proxy_ms": stats([c.first_ms for c in changes if c.first_ms is not None]),
        "acked_ms": stats([c.acked_ms for c in changes if c.acked_ms is not None]),
        "api_ms": stats([c.api_ms for c in changes]),
        "fan_out": stats([float(c.fan_out) for c in changes]),
        "updates_per_change": stats([float(c.updates) for c in changes]),
    }


def build_type(binary: Path) -> str:
    """CMAKE_BUILD_TYPE of the tree `binary` was built in (<build>/src/trellis-control)."""
    try:
        for line in (binary.resolve().parent.parent / "CMakeCache.txt").read_text().splitlines():
            if line.startswith("CMAKE_BUILD_TYPE:"):
                return line.split("=", 1)[1] or "unknown"
    except OSError:
        pass
    return "unknown"


def report(result: dict) -> str:
    """The section for bench/RESULTS.md: machine, command, table."""
    m = result["machine"]
    p = result["params"]
    lines = [
        "## Control plane at scale",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}, kernel {m['kernel']}",
        f"- load: 1-minute load average {m['loadavg_before']:.1f} before the run and "
        f"{m.get('loadavg_after', float('nan')):.1f} after it"
        + (f"; {result['note']}" if result.get("note") else ""),
        f"- Trellis: commit {m['commit']}, {p['build_type']} build; simulator: "
        f"{p['proxies']:,} gRPC streams over as many connections on "
        f"{p['sim_threads']} event loop{'s' if p['sim_threads'] != 1 else ''}",
        f"- run: {result['started']}, {result['duration_s']:.0f} s in all",
        "",
        "```sh",
        result["command"],
        "```",
        "",
        "",
    ]
    return "\n".join(lines) + table(result)


def table(result: dict) -> str:
    p = result["params"]
    s = result["summary"]
    cp = result["control"]
    sync = result["sync"]
    lines = [
        f"{p['proxies']:,} proxies (one stream each, {p['calls']} services called per proxy), "
        f"{p['services'] * p['instances']:,} endpoints ({p['services']} services × {p['instances']} instances), "
        f"{s['changes']} registry changes {p['interval']} s apart "
        f"(registering and deregistering in turn). p99 is the nearest rank: with {s['changes']} changes, "
        f"{'the largest' if s['changes'] < 100 else 'the 99th percentile'}.",
        "",
        "| figure | p50 | p99 | max |",
        "|---|--:|--:|--:|",
    ]

    def row(name: str, stats: dict, fmt=fmt_ms) -> None:
        lines.append(f"| {name} | {fmt(stats['p50'])} | {fmt(stats['p99'])} | {fmt(stats['max'])} |")

    row("registry change → last affected proxy received it (ms, from the API response)", s["last_proxy_ms"])
    row("registry change → first affected proxy received it (ms)", s["first_proxy_ms"])
    row("registry change → all ACKs shown in /v1/status (ms; read once all had it, then every "
        f"{p['status_poll_s'] * 1000:.0f} ms)", s["acked_ms"])
    row("the API call itself (ms)", s["api_ms"])
    row("fan-out: proxies calling the changed service", s["fan_out"], lambda v: "—" if v is None else f"{v:.0f}")
    row("updates sent per change (all proxies)", s["updates_per_change"],
        lambda v: "—" if v is None else f"{v:.0f}")
    lines += [
        "",
        "| figure | value |",
        "|---|--:|",
        f"| changes that reached every affected proxy | {s['complete']} of {s['changes']} |",
        f"| registering {p['services'] * p['instances']:,} instances through the API (s) | "
        f"{result['setup']['register_s']:,.1f} |",
        f"| first full sync of {p['proxies']:,} proxies: last one received its configuration (s) | "
        f"{fmt_s(sync['received_s'])} |",
        f"| … all shown in sync (ACKed) in /v1/status (s, polled every 0.25 s) | "
        f"{fmt_s(sync['acked_s'])} |",
        f"| trellis-control RSS, {p['services'] * p['instances']:,} instances, no proxies (MiB) | "
        f"{fmt_mib(cp['rss_kib_registry'])} |",
        f"| trellis-control RSS idle, {p['proxies']:,} proxies in sync (MiB) | {fmt_mib(cp['rss_kib_idle'])} |",
        f"| trellis-control RSS peak during the changes (MiB, sampled every 0.1 s) | "
        f"{fmt_mib(cp['rss_kib_peak_changes'])} |",
        f"| trellis-control VmHWM at the end: peak of the whole run (MiB) | {fmt_mib(cp['hwm_kib_end'])} |",
        f"| trellis-control CPU: registration / first sync / changes (s) | "
        f"{cp['cpu_s']['registration']:.2f} / {cp['cpu_s']['sync']:.2f} / {cp['cpu_s']['changes']:.2f} |",
        f"| trellis-control CPU per change (ms) | {cp['cpu_ms_per_change']:,.0f} |",
        f"| simulator RSS / VmHWM ({p['proxies']:,} streams, MiB) | "
        f"{fmt_mib(result['sim']['rss_kib'])} / {fmt_mib(result['sim']['hwm_kib'])} |",
        f"| stream closes during the run | {result['sim']['closes']} |",
    ]
    return "\n".join(lines) + "\n"


# ---- main -----------------------------------------------------------------------------


def find_binaries(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.build_dir:
        builds = [Path(args.build_dir)]
    else:
        builds = [REPO / "build-bench", REPO / "build"]
    control = Path(args.control_bin) if args.control_bin else None
    sim = Path(args.sim_bin) if args.sim_bin else None
    for b in builds:
        if control is None and (b / "src" / "trellis-control").is_file():
            control = b / "src" / "trellis-control"
        if sim is None and (b / "bench" / "control" / SIM_NAME).is_file():
            sim = b / "bench" / "control" / SIM_NAME
    if control is None or sim is None:
        missing = "trellis-control" if control is None else SIM_NAME
        sys.exit(f"scale.py: {missing} not found under {', '.join(map(str, builds))} "
                 f"(build it: ninja -C BUILD trellis-control {SIM_NAME}; or pass --control-bin/--sim-bin)")
    return control, sim


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="build tree holding src/trellis-control and "
                    f"bench/control/{SIM_NAME} (default: build-bench, then build)")
    ap.add_argument("--control-bin", help="trellis-control to run (overrides --build-dir)")
    ap.add_argument("--sim-bin", help=f"{SIM_NAME} to run (overrides --build-dir)")
    ap.add_argument("--proxies", type=int, default=1000)
    ap.add_argument("--services", type=int, default=100, help="M: services in the registry")
    ap.add_argument("--instances", type=int, default=100, help="I: instances per service")
    ap.add_argument("--calls", type=int, default=3, help="K: services each proxy calls")
    ap.add_argument("--changes", type=int, default=20, help="R: registry changes to time")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between changes")
    ap.add_argument("--sim-threads", type=int, default=1, help="event loops of the simulator")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--poll", type=float, default=0.02,
                    help="seconds between asking the simulator whether every receipt is in")
    ap.add_argument("--status-poll", type=float, default=0.05,
                    help="seconds between reads of /v1/status while waiting for the ACKs")
    ap.add_argument("--sync-timeout", type=float, default=600)
    ap.add_argument("--change-timeout", type=float, default=60)
    ap.add_argument("--out", help="where scale.json and scale.md go (default bench/control/out)")
    ap.add_argument("--note", default="", help="written into the results, e.g. what else ran on the machine")
    ap.add_argument("--smoke", action="store_true",
                    help="50 proxies, 10 services x 50 instances, 3 changes: checks that it all works")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.proxies, args.services, args.instances, args.changes, args.interval = 50, 10, 50, 3, 0.2
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    control_bin, sim_bin = find_binaries(args)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # the control plane holds one socket per proxy
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out_dir = Path(args.out) if args.out else HERE / "out"
    workdir = Path(tempfile.mkdtemp(prefix="trellis-scale-"))
    result: dict = {
        "command": " ".join(["bench/control/scale.py"] + [shlex.quote(a) for a in argv]),
        "machine": machine(),
        "note": args.note,
        "params": {"proxies": args.proxies, "services": args.services, "instances": args.instances,
                   "calls": args.calls, "changes": args.changes, "interval": args.interval,
                   "sim_threads": args.sim_threads, "seed": args.seed, "poll_s": args.poll,
                   "status_poll_s": args.status_poll,
                   "control_bin": str(control_bin), "sim_bin": str(sim_bin),
                   "build_type": build_type(control_bin)},
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    control = sim = sampler = None
    ok = False
    run_start = time.monotonic()
    try:
        control = Control(control_bin, workdir)
        api = Api(control.http_port, control.token, control.cafile)
        sampler = MemorySampler(control.pid)
        sampler.start()

        total = args.services * args.instances
        print(f"registering {total:,} instances ...", file=sys.stderr)
        sampler.phase = "registration"
        cpu0 = control.cpu()
        register_s = register_all(control.http_port, control.token, control.cafile, args.services, args.instances)
        status, body = api.call("GET", "/v1/registry/services")
        live = sum(s["instances"] for s in body["services"]) if status == 200 else -1
        if live != total:
            raise RuntimeError(f"the registry holds {live} live instances, not {total}")
        time.sleep(1)
        cpu1 = control.cpu()
        rss_registry = control.memory().get("VmRSS")
        result["setup"] = {"register_s": register_s, "instances": total,
                           "per_second": total / register_s if register_s else None}

        print(f"connecting {args.proxies:,} proxies ...", file=sys.stderr)
        sampler.phase = "sync"
        sim = Sim(sim_bin, control.grpc_port, args, workdir, api)
        started_ms = sim.started["started_at_ms"]
        deadline = time.monotonic() + args.sync_timeout
        received_s = acked_s = None
        while time.monotonic() < deadline:
            st = sim.status()
            if received_s is None and st["all_synced_at_ms"]:
                received_s = (st["all_synced_at_ms"] - started_ms) / 1000
            if received_s is not None:
                proxies = status_proxies(api)
                t = now_ms()
                if len(proxies) == args.proxies and all(p["in_sync"] for p in proxies):
                    acked_s = (t - started_ms) / 1000
                    break
            time.sleep(0.25)
        cpu2 = control.cpu()
        result["sync"] = {"received_s": received_s, "acked_s": acked_s, "sim": sim.status()}
        if acked_s is None:
            raise RuntimeError(f"the proxies were not all in sync after {args.sync_timeout} s: "
                               f"{result['sync']['sim']}")
        print(f"in sync after {acked_s:.2f} s; idle ...", file=sys.stderr)
        sampler.phase = "idle"
        time.sleep(2)
        rss_idle = control.memory().get("VmRSS")
        cpu3 = control.cpu()

        print(f"making {args.changes} changes ...", file=sys.stderr)
        sampler.phase = "changes"
        changes = make_changes(args, api, sim)
        cpu4 = control.cpu()
        mem_end = control.memory()
        sim_end = sim.status()
        sampler.phase = "end"

        result["changes"] = [c.__dict__ for c in changes]
        result["summary"] = summarize(changes)
        result["control"] = {
            "rss_kib_registry": rss_registry,
            "rss_kib_idle": rss_idle,
            "rss_kib_peak_changes": sampler.peaks.get("changes"),
            "rss_kib_peaks_by_phase": dict(sampler.peaks),
            "rss_kib_end": mem_end.get("VmRSS"),
            "hwm_kib_end": mem_end.get("VmHWM"),
            "cpu_s": {"registration": cpu1 - cpu0, "sync": cpu2 - cpu1, "idle_2s": cpu3 - cpu2,
                      "changes": cpu4 - cpu3, "total": cpu4},
            "cpu_ms_per_change": (cpu4 - cpu3) * 1000 / max(1, len(changes)),
        }
        result["sim"] = {"rss_kib": sim_end["rss_kib"], "hwm_kib": sim_end["hwm_kib"],
                         "closes": sim_end["closes"], "last_close": sim_end["last_close"],
                         "updates": sim_end["updates"], "update_bytes": sim_end["update_bytes"],
                         "max_update_bytes": sim_end["max_update_bytes"], "unreadable": sim_end["unreadable"]}
        result["machine"]["loadavg_after"] = os.getloadavg()[0]
        ok = (result["summary"]["complete"] == len(changes) and sim_end["unreadable"] == 0)
        result["ok"] = ok
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        result["ok"] = False
        result["error"] = str(e)
        print(f"scale.py: {e}", file=sys.stderr)
    finally:
        if sampler is not None:
            sampler.done.set()
        if sim is not None:
            sim.stop()
        if control is not None:
            control.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    result["duration_s"] = time.monotonic() - run_start
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    if "summary" in result:
        text = report(result)
        (out_dir / "scale.md").write_text(text)
        sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
