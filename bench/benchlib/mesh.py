"""The mesh benchmark's topology and what it reads around each run.

client → sidecar → mTLS → sidecar → upstream, built from two HAProxies, two
nginx or two trellis-proxies (configs: bench/peers/*-mesh-*), all with the
same certificates, beside the direct baseline (client → upstream). Both
sidecars of a pair run on the proxy core, the client and the upstream on the
client core, so each request crosses between the cores as often as through
bench/run.py's single proxy.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .pki import Leaf, MeshPki
from .procs import LOCALHOST, BenchError, Service, Workspace
from .targets import (IDLE_SETTLE_S, PROXY_CORE, Size, start_haproxy, start_nginx,
                      start_trellis)

SIDES = ("client", "server")  # the calling side's sidecar, then the called side's

# Per kind of proxy: how to start one, and its config template for each side.
_KINDS: dict[str, tuple[Callable[..., tuple[Service, int]], str]] = {
    "haproxy": (start_haproxy, "haproxy-mesh-{side}.cfg"),
    "nginx": (start_nginx, "nginx-mesh-{side}.conf"),
    "trellis": (start_trellis, "trellis-mesh-{side}.yaml"),
    # The same sidecars speaking HTTP/1.1 to each other (mesh_protocol:
    # downstream): what HTTP/2 between sidecars is measured against.
    "trellis-h1": (start_trellis, "trellis-mesh-{side}.yaml"),
}

# The mesh targets: bench/run.py's, and Trellis with HTTP/1.1 between its sidecars.
MESH_KEYS = ("direct", "haproxy", "nginx", "trellis", "trellis-h1")
MESH_LABELS = {"trellis-h1": "Trellis, HTTP/1.1 between sidecars"}


@dataclass
class MeshTarget:
    """Where the load generator sends its requests: the client sidecar of a
    pair, or the upstream itself for direct."""
    key: str
    label: str
    port: int
    upstream_port: int
    mesh_port: int | None = None   # the server sidecar's mTLS listener
    sidecars: dict[str, Service] = field(default_factory=dict)  # by side; empty for direct
    rss_idle_kib: dict[str, int] = field(default_factory=dict)

    def url(self, size: Size) -> str:
        return f"http://{LOCALHOST}:{self.port}{size.path}"

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.output()}" for s in self.sidecars.values())


def template_values(leaf: Leaf, pki: MeshPki) -> dict[str, object]:
    """Every field a mesh template may use; each template takes what it needs."""
    return {"cert": leaf.cert, "key": leaf.key, "cert_and_key": leaf.cert_and_key,
            "ca_file": pki.root, "server_name": pki.server.server_name,
            "server_identity": pki.server.identity, "mesh_protocol": "http2"}


def start_mesh_target(ws: Workspace, key: str, label: str, pki: MeshPki, upstream_port: int,
                      binaries: dict) -> MeshTarget:
    if key == "direct":
        return MeshTarget(key, label, upstream_port, upstream_port)
    start, template = _KINDS[key]

    def start_side(side: str, leaf: Leaf, values: dict) -> tuple[Service, int]:
        protocol = {"mesh_protocol": "downstream"} if key == "trellis-h1" else {}
        args = (ws, f"{key}-{side}", template.format(side=side),
                {**template_values(leaf, pki), **protocol, **values})
        if key.startswith("trellis"):
            return start(*args, binaries, PROXY_CORE)
        return start(*args, PROXY_CORE)

    # The server side first: the client side's config names its port.
    server, mesh_port = start_side("server", pki.server, {"upstream_port": upstream_port})
    client, port = start_side("client", pki.client, {"mesh_port": mesh_port})
    # Idle memory: after start has settled, before any request went through.
    time.sleep(IDLE_SETTLE_S)
    sidecars = {"client": client, "server": server}
    return MeshTarget(key, label, port, upstream_port, mesh_port, sidecars,
                      {side: s.rss_kib() for side, s in sidecars.items()})


# ------------------------------------------------------------- checks

def _curl(url: str, *options: str) -> tuple[int, bytes, str]:
    """curl's exit code, the body and the status code (000 when none came)."""
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "5", *options,
            "-o", "-", "-w", "\n%{http_code}", url]
    result = subprocess.run(argv, capture_output=True, timeout=15)
    body, _, status = result.stdout.rpartition(b"\n")
    return result.returncode, body, status.decode(errors="replace")


def verify_mesh(target: MeshTarget, size: Size, pki: MeshPki) -> None:
    """The target serves `size` exactly; for a pair, the hop between the
    sidecars takes only mutual TLS 1.3 with a certificate from the mesh root."""
    code, body, status = _curl(target.url(size))
    if code != 0 or status != "200" or body != size.body:
        raise BenchError(f"{target.label} does not serve {size.path} as expected "
                         f"(curl exit {code}, status {status}, {len(body)}-byte body)\n"
                         f"{target.logs()}")
    if target.mesh_port is None:
        return
    # Through the server sidecar's own name, so curl checks its certificate
    # the way nginx and HAProxy do (by the CN: there is no DNS SAN).
    name = pki.server.server_name
    url = f"https://{name}:{target.mesh_port}{size.path}"
    tls = ["--resolve", f"{name}:{target.mesh_port}:{LOCALHOST}", "--cacert", str(pki.root)]
    client_cert = ["--cert", str(pki.client.cert), "--key", str(pki.client.key)]
    code, body, status = _curl(url, *tls, *client_cert, "--tlsv1.3")
    if code != 0 or status != "200" or body != size.body:
        raise BenchError(f"{target.label}: the server sidecar does not serve mutual TLS 1.3 "
                         f"with the mesh certificates (curl exit {code}, status {status})\n"
                         f"{target.logs()}")
    refused = {
        "plain text": (f"http://{LOCALHOST}:{target.mesh_port}{size.path}",),
        "TLS without a client certificate": (url, *tls, "--tlsv1.3"),
        "TLS 1.2": (url, *tls, *client_cert, "--tlsv1.2", "--tls-max", "1.2"),
    }
    for what, (check_url, *options) in refused.items():
        _, _, status = _curl(check_url, *options)
        if status == "200":
            raise BenchError(f"{target.label}: the server sidecar answers {what} "
                             "(it must take mutual TLS 1.3 only)")


# ------------------------------------------------------- around one run

_TCP_STATES_GONE = {"0A", "07"}  # LISTEN, CLOSE: not a connection (TIME_WAIT is 06 and counts)


def connections_to(ports: dict[str, int]) -> dict[str, set[int]]:
    """For each named port: the connections to it, each known by the port on
    its other end, from the kernel's TCP table. A closed connection stays in
    the table for 60 s (TIME_WAIT), so two readings a run apart tell how many
    connections were opened in between, even those closed again."""
    found: dict[str, set[int]] = {name: set() for name in ports}
    wanted = {port: name for name, port in ports.items()}
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] in _TCP_STATES_GONE:
                continue
            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
            # On loopback both ends are listed: count each connection once,
            # by the end that is not the listening port.
            if remote in wanted:
                found[wanted[remote]].add(local)
            elif local in wanted:
                found[wanted[local]].add(remote)
    return found


class SidecarWatch:
    """Across one run: each sidecar's CPU time, and its largest RSS sampled
    every 0.25 s from the process list read at the start (walking /proc on
    each sample would cost the client core, where this harness runs, more
    than reading a few status files)."""

    INTERVAL_S = 0.25

    def __init__(self, sidecars: dict[str, Service]):
        self._sidecars = sidecars
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.result: dict[str, dict] = {}

    def _sample(self) -> None:
        while True:
            for side, service in self._sidecars.items():
                rss = service.rss_kib(self._pids[side])
                self._rss[side] = max(self._rss[side], rss)
            if self._stop.wait(self.INTERVAL_S):
                return

    def __enter__(self) -> "SidecarWatch":
        self._pids = {side: s.pids() for side, s in self._sidecars.items()}
        self._rss = {side: 0 for side in self._sidecars}
        self._cpu = {side: s.cpu_us() for side, s in self._sidecars.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        cpu = {side: s.cpu_us() for side, s in self._sidecars.items()}
        self._stop.set()
        self._thread.join()
        self.result = {side: {"cpu_s": (cpu[side] - self._cpu[side]) / 1e6,
                              "rss_max_kib": self._rss[side]}
                       for side in self._sidecars}


def measured_run(target: MeshTarget, run: Callable[[], dict]) -> dict:
    """`run` (one `trellis load` report) with, for a pair, what the sidecars
    used meanwhile and the connections opened on each hop."""
    if not target.sidecars:
        return run()
    ports = {"mesh": target.mesh_port, "upstream": target.upstream_port}
    before = connections_to(ports)
    with SidecarWatch(target.sidecars) as watch:
        report = run()
    after = connections_to(ports)
    report["sidecars"] = watch.result
    report["connections_opened"] = {hop: len(after[hop] - before[hop]) for hop in ports}
    return report


def cpu_per_krps(report: dict, side: str | None = None) -> float | None:
    """vCPU per 1,000 req/s: the sidecars' CPU seconds over the run ÷
    (achieved req/s ÷ 1,000 × the run's seconds); both sidecars, or one."""
    sidecars = report.get("sidecars")
    rate, seconds = report.get("achieved_rate") or 0, report.get("duration_s") or 0
    if not sidecars or rate <= 0 or seconds <= 0:
        return None
    cpu_s = sum(s["cpu_s"] for k, s in sidecars.items() if side in (None, k))
    return cpu_s / (rate / 1000 * seconds)

