#!/usr/bin/python3
"""gRPC unary calls through two Trellis sidecars (mutual TLS and HTTP/2
between them, h2c to the application) beside the same calls made directly,
at 1,000 calls per second, open loop: the latency the mesh adds, and the
sidecars' CPU per call. See bench/README.md, "gRPC"."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from benchlib import entry, report
from benchlib.entry import log
from benchlib.mesh import SidecarWatch, template_values
from benchlib.pki import make_pki
from benchlib.procs import LOCALHOST, BenchError, Workspace, free_port, pinned, run_tool, wait_until
from benchlib.quiet import Patience
from benchlib.targets import CLIENT_CORE, PROXY_CORE, start_trellis

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out" / "grpc"
METHOD = "test.Echo/Unary"
PAYLOAD = b"\x0a\x0bhello world"  # a protobuf message: field 1, "hello world"
TARGETS = {"direct": "direct", "trellis": "two Trellis sidecars"}


@dataclass(frozen=True)
class Settings:
    rate: int
    duration_s: float
    warmup_s: float
    connections: int
    repeats: int
    attempts: int
    quiet_wait_s: float
    patience_s: float


FULL = Settings(rate=1000, duration_s=10, warmup_s=3, connections=4, repeats=3, attempts=3, quiet_wait_s=30,
                patience_s=300)
SMOKE = Settings(rate=200, duration_s=1, warmup_s=0.3, connections=2, repeats=1, attempts=1, quiet_wait_s=0,
                 patience_s=0)


def parse_args() -> argparse.Namespace:
    return entry.parse_args("gRPC unary calls through two Trellis sidecars, beside direct.",
                            OUT_DIR, "RESULTS-grpc.md")


def start_app(ws: Workspace) -> tuple[object, int]:
    port = free_port()
    home = ws.subdir("grpc-app")
    service = ws.start("grpc-app", pinned(CLIENT_CORE, [sys.executable, str(BENCH_DIR / "peers" / "grpc_echo.py"),
                                                         str(port)]), home)
    if not wait_until(lambda: "ready" in service.output(), 20):
        raise BenchError(f"the gRPC server did not start\n{service.output()}")
    return service, port


def calls(trellis: Path, port: int, payload: Path, settings: Settings, seconds: float) -> dict:
    argv = pinned(CLIENT_CORE, [str(trellis), "load", f"http://{LOCALHOST}:{port}", "--grpc", METHOD,
                                "--payload", str(payload), "--rate", str(settings.rate),
                                "--duration", f"{seconds}s", "--connections", str(settings.connections), "--json"])
    result = run_tool(argv, timeout=seconds + 60)
    try:
        out = json.loads(result.stdout)
        out["latency_us"]["p50"]
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"trellis load gave no report (exit {result.returncode}):\n"
                         f"{result.stdout[-1500:]}{result.stderr[-1500:]}") from None
    completed = out["requests"]["completed"]
    out["failed"] = out["requests"]["errors"] + completed - out["grpc_status"].get("0", 0)
    return out


def measure_all(ws: Workspace, settings: Settings, binaries: dict) -> dict:
    pki = make_pki(ws.dir / "pki")
    payload = ws.dir / "payload.bin"
    payload.write_bytes(PAYLOAD)
    app, app_port = start_app(ws)
    server, mesh_port = start_trellis(ws, "sidecar-server", "trellis-grpc-server.yaml",
                                      {**template_values(pki.server, pki), "upstream_port": app_port},
                                      binaries, PROXY_CORE)
    client, port = start_trellis(ws, "sidecar-client", "trellis-mesh-client.yaml",
                                 {**template_values(pki.client, pki), "mesh_port": mesh_port},
                                 binaries, PROXY_CORE)
    sidecars = {"client": client, "server": server}
    ports = {"direct": app_port, "trellis": port}
    patience = Patience(settings.attempts, settings.quiet_wait_s, settings.patience_s)
    runs: dict = {key: [] for key in TARGETS}
    for rep in range(1, settings.repeats + 1):
        for key, label in TARGETS.items():
            def one() -> dict:
                calls(binaries["trellis"], ports[key], payload, settings, settings.warmup_s)
                if key == "direct":
                    return calls(binaries["trellis"], ports[key], payload, settings, settings.duration_s)
                with SidecarWatch(sidecars) as watch:
                    out = calls(binaries["trellis"], ports[key], payload, settings, settings.duration_s)
                out["sidecars"] = watch.result
                return out

            out, foreign = patience.undisturbed(one, [app, client, server],
                                                lambda f: log(f"{label}: other work {f:.0%} of a core; again"))
            out["foreign_cores"] = foreign
            runs[key].append(out)
            log(f"{rep}/{settings.repeats} {label}: p50 {out['latency_us']['p50']} µs, "
                f"p99 {out['latency_us']['p99']} µs, {out['failed']} failed")
    for service in (app, client, server):
        if not service.running():
            raise BenchError(f"{service.name} exited during the run\n{service.output()}")
    return runs


def measure(args: argparse.Namespace, settings: Settings):
    meta, runs = entry.measure_with(args, "bench/grpc.py", "smoke" if args.smoke else "full",
                                    lambda ws, binaries, labels: measure_all(ws, settings, binaries))
    return meta, runs, list(TARGETS)


def load_previous(path: Path):
    try:
        doc = json.loads(path.read_text())
        return Settings(**doc["settings"]), doc["meta"], doc["runs"], list(TARGETS)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BenchError(f"{path}: not a results.json written by bench/grpc.py ({e})") from None


def summarize(runs: dict) -> dict:
    out = {}
    for key, rs in runs.items():
        out[key] = {"p50": statistics.median(r["latency_us"]["p50"] for r in rs),
                    "p99": statistics.median(r["latency_us"]["p99"] for r in rs),
                    "rate": statistics.median(r["achieved_rate"] for r in rs),
                    "failed": sum(r["failed"] for r in rs)}
        with_sidecars = [r for r in rs if r.get("sidecars")]
        if with_sidecars:
            # µs of both sidecars' CPU per call.
            out[key]["cpu_us_per_call"] = statistics.median(
                sum(s["cpu_s"] for s in r["sidecars"].values()) * 1e6 / max(r["requests"]["completed"], 1)
                for r in with_sidecars)
    return out


def markdown(summary: dict, settings: Settings) -> str:
    d, t = summary["direct"], summary["trellis"]
    lines = ["| figure | direct | two Trellis sidecars | added |", "|---|--:|--:|--:|"]
    for p in ("p50", "p99"):
        lines.append(f"| {p} latency (µs) | {d[p]:,.0f} | {t[p]:,.0f} | +{t[p] - d[p]:,.0f} |")
    lines.append(f"| achieved calls/s | {d['rate']:,.0f} | {t['rate']:,.0f} | |")
    lines.append(f"| sidecars' CPU per call, both (µs) | — | {t.get('cpu_us_per_call', 0):.1f} | |")
    lines.append(f"| failed calls | {d['failed']} | {t['failed']} | |")
    note = (f"\n`trellis load --grpc {METHOD}` at {settings.rate:,} calls/s, open loop, "
            f"{settings.connections} HTTP/2 connections, {settings.duration_s:g} s per run after "
            f"{settings.warmup_s:g} s of warm-up; median of {settings.repeats} runs, direct and through the "
            "sidecars in turn. The application is a Python grpcio server echoing a 13-byte message (its own "
            "latency dominates the direct column). Both sidecars on core 0 with one worker each, mutual "
            "TLS 1.3 and HTTP/2 between them, h2c to the application; the client and the application on "
            "core 1. A call fails unless its grpc-status is 0.\n")
    return "\n".join(lines) + "\n" + note


def write_outputs(args: argparse.Namespace, settings: Settings, meta: dict, runs: dict, targets) -> tuple[str, bool]:
    summary = summarize(runs)
    table = markdown(summary, settings)
    ok = all(v["failed"] == 0 for v in summary.values())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "settings": asdict(settings), "runs": runs, "summary": summary, "ok": ok}, indent=2) + "\n")
    if args.write_results:
        if not ok:
            log("not writing bench/RESULTS-grpc.md: some calls failed")
        else:
            text = ("## gRPC through two sidecars\n\n"
                    "The latest full run of `bench/grpc.py`. Written by `bench/grpc.py --write-results`; do not "
                    "edit by hand.\n\n"
                    f"- CPU: {meta['cpu']}, {meta['cores']} cores\n"
                    f"- Trellis: commit {meta['trellis_commit']}, {meta['trellis_build']} build; "
                    f"run {meta['date']}\n\n" + table)
            (BENCH_DIR / "RESULTS-grpc.md").write_text(text)
            report.put_section(BENCH_DIR / "RESULTS.md", text)
            log("wrote bench/RESULTS-grpc.md and its section of bench/RESULTS.md")
    return table, ok


def main() -> int:
    return entry.run(parse_args(), load_previous, lambda a: replace(SMOKE if a.smoke else FULL), measure,
                     write_outputs, "results.md, results.json")


if __name__ == "__main__":
    entry.main(main)
