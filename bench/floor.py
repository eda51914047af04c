#!/usr/bin/python3
"""The floor under the mesh benchmark: what two relays in a row cost on this
machine when they do the least any sidecar must do (for every message, one
wake-up, one read and one write), with no HTTP and no TLS. Beside them, the
same two-hop path through HAProxy and trellis-proxy as plain TCP relays.
Same topology, cores, load and CPU accounting as bench/mesh.py: the mesh
figures cannot be below these. See bench/README.md."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from benchlib import machine
from benchlib.build import REPO, build_type, prepare
from benchlib.entry import log
from benchlib.measure import Scenario, latency
from benchlib.procs import BenchError, Service, Workspace, free_port, pinned
from benchlib.quiet import Patience
from benchlib.report import put_section
from benchlib.targets import PROXY_CORE, SIZES, start_upstream

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"
SECTION = BENCH_DIR / "RESULTS-floor.md"  # bench/run.py carries it into RESULTS.md
HEADING = "## Floor: two plain TCP relays in a row"
RATES = (1_000, 10_000)
CONNECTIONS = 16


class Target:
    def __init__(self, label: str, port: int, relays: list[Service]):
        self.label, self.port, self.relays = label, port, relays

    def url(self, size) -> str:
        return f"http://127.0.0.1:{self.port}{size.path}"


def start_relay(ws: Workspace, name: str, relay: Path, to: int) -> tuple[Service, int]:
    port = free_port()
    service = ws.start(name, pinned(PROXY_CORE, [str(relay), str(port), str(to)]), ws.subdir(name))
    service.wait_listening(port)
    return service, port


def start_trellis_tcp(ws: Workspace, name: str, proxy: Path, to: int) -> tuple[Service, int]:
    home, port = ws.subdir(name), free_port()
    conf = home / "trellis.yaml"
    conf.write_text(f"admin: {{address: 127.0.0.1:{free_port()}}}\n"
                    f"listeners:\n  - {{name: relay, address: 127.0.0.1:{port}, protocol: tcp, cluster: next}}\n"
                    f"clusters:\n  - {{name: next, endpoints: [{{address: 127.0.0.1:{to}}}]}}\n")
    argv = [str(proxy), "--config", str(conf), "--workers", "1", "--log-level", "warn"]
    service = ws.start(name, pinned(PROXY_CORE, argv), home)
    service.wait_listening(port)
    return service, port


def start_haproxy_tcp(ws: Workspace, name: str, to: int) -> tuple[Service, int]:
    home, port = ws.subdir(name), free_port()
    conf = home / "haproxy.cfg"
    conf.write_text("global\n  nbthread 1\n  maxconn 4000\n"
                    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n"
                    f"listen relay\n  bind 127.0.0.1:{port}\n  server next 127.0.0.1:{to}\n")
    service = ws.start(name, pinned(PROXY_CORE, ["haproxy", "-db", "-f", str(conf)]), home)
    service.wait_listening(port)
    return service, port


def pair(ws: Workspace, label: str, start, upstream_port: int) -> Target:
    server, server_port = start(f"{label}-server", upstream_port)
    client, port = start(f"{label}-client", server_port)
    return Target(label, port, [client, server])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", type=Path, help="an existing build tree (default: build Release)")
    p.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    p.add_argument("--write-results", action="store_true",
                   help=f"write the table to {SECTION.name} and put it in {RESULTS.name}")
    args = p.parse_args()
    build_dir, binaries = prepare(args.build_dir, extra_tools=("cc",))
    ws = Workspace()
    try:
        relay = ws.dir / "relay"
        subprocess.run(["cc", "-O2", "-o", str(relay), str(BENCH_DIR / "floor" / "relay.c")], check=True)
        upstream, upstream_port = start_upstream(ws)
        targets = [Target("direct", upstream_port, []),
                   pair(ws, "relay.c", lambda n, to: start_relay(ws, n, relay, to), upstream_port),
                   pair(ws, "HAProxy (mode tcp)", lambda n, to: start_haproxy_tcp(ws, n, to), upstream_port),
                   pair(ws, "Trellis (protocol: tcp)",
                        lambda n, to: start_trellis_tcp(ws, n, binaries["trellis-proxy"], to), upstream_port)]
        services = [upstream] + [r for t in targets for r in t.relays]
        patience = Patience(3, 30, 300)
        size = SIZES["12b"]
        rows = []
        for rate in RATES:
            sc = Scenario(f"rate_{rate}", f"{rate:,} req/s", rate, CONNECTIONS)
            direct_p99 = None
            for t in targets:
                def one_run() -> tuple[dict, list[float]]:
                    latency(binaries["trellis"], t, size, sc, 2)  # warm-up at the same rate
                    before = [r.cpu_us() for r in t.relays]
                    report = latency(binaries["trellis"], t, size, sc, args.duration)
                    return report, [r.cpu_us() - b for r, b in zip(t.relays, before)]
                (report, cpu), _ = patience.undisturbed(one_run, services, lambda f: log(
                    f"{t.label} at {rate}: other work used {f:.0%} of a core; measuring again"))
                if report["failed"]:
                    raise BenchError(f"{t.label} at {rate} req/s: {report['failed']} requests failed")
                done = report["requests"]["completed"]
                krps_s = done / 1000  # thousands of requests over the run: vCPU-seconds per k
                per_k = [c / 1e6 / krps_s for c in cpu]
                p50, p99 = report["latency_us"]["p50"], report["latency_us"]["p99"]
                if t.label == "direct":
                    direct_p99 = p99
                added = "" if direct_p99 is None or t.label == "direct" else f" ({p99 - direct_p99:+,})"
                cpu_cell = " / ".join(f"{v:.3f}" for v in per_k) if per_k else "—"
                rows.append(f"| {sc.label} | {t.label} | {p50:,} | {p99:,}{added} | {cpu_cell} |")
                log(rows[-1])
        m = machine.describe(REPO, build_type(build_dir))
        info = (f"{m['cpu']}, {m['cores']} cores; {m['os']}, kernel {m['kernel']}; "
                f"HAProxy {m['versions'].get('haproxy', '?')}; Trellis {m['trellis_commit']}, "
                f"{m['trellis_build']} build")
        text = "\n".join([
            HEADING, "",
            f"- machine: {info}", "",
            "```sh", "bench/floor.py" + (f" --build-dir {args.build_dir}" if args.build_dir else ""), "```", "",
            "Two relays in a row on core 0, the client (`trellis load`, 16 keep-alive connections, "
            "open loop, 12 B responses) and nginx on core 1, as in the mesh benchmark; no TLS. "
            "`relay.c` (bench/floor/) does one `epoll_wait`, one `read` and one `write` per message "
            "and nothing else. CPU is each relay's CPU time ÷ thousands of requests completed, "
            "client side / server side.", "",
            "| rate | path | p50 (µs) | p99 (µs), added over direct | CPU per 1,000 req/s, each relay (vCPU) |",
            "|---|---|--:|--:|--:|", *rows, ""])
        print(text)
        if args.write_results:
            SECTION.write_text(text)
            put_section(RESULTS, text)
            log(f"wrote {SECTION.name} and its section of {RESULTS.name}")
        return 0
    finally:
        ws.close()


if __name__ == "__main__":
    raise SystemExit(main())
