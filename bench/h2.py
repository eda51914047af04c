#!/usr/bin/python3
"""HTTP/2 from clients, side by side: HAProxy, nginx and trellis-proxy serving
h2c (prior knowledge) in front of one nginx upstream (HTTP/1.1 behind every
proxy, as in bench/run.py), saturated with h2load with 1 and with 100
streams per connection. See bench/README.md, "HTTP/2"."""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from benchlib import entry, report
from benchlib.entry import log
from benchlib.measure import SaturationRun, saturate, warm_up
from benchlib.procs import BenchError, Workspace
from benchlib.quiet import Patience
from benchlib.targets import PEER_KEYS, PROXY_KEYS, SIZES, Target, start_target, start_upstream, verify

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out" / "h2"
SIZE = SIZES["12b"]


@dataclass(frozen=True)
class Load:
    key: str
    label: str
    connections: int
    streams: int


LOADS = (Load("m1", "50 connections × 1 stream", 50, 1),
         Load("m100", "4 connections × 100 streams", 4, 100))


@dataclass(frozen=True)
class Settings:
    requests: int
    repeats: int
    warmup_requests: int
    attempts: int
    quiet_wait_s: float
    patience_s: float


FULL = Settings(requests=200_000, repeats=2, warmup_requests=5_000, attempts=3, quiet_wait_s=30,
                patience_s=300)
SMOKE = Settings(requests=2_000, repeats=1, warmup_requests=200, attempts=1, quiet_wait_s=0, patience_s=0)


def parse_args() -> argparse.Namespace:
    return entry.parse_args("HTTP/2 from clients: HAProxy, nginx and trellis-proxy side by side.",
                            OUT_DIR, "RESULTS-h2.md")


def settings_for(args: argparse.Namespace) -> Settings:
    return SMOKE if args.smoke else FULL


def measure_all(ws: Workspace, settings: Settings, binaries: dict, labels: dict) -> tuple[dict, list[Target]]:
    upstream, upstream_port = start_upstream(ws)
    targets = [start_target(ws, key, labels[key], upstream_port, binaries, h2=True) for key in PROXY_KEYS]
    for target in targets:
        verify(target, SIZE, h2=True)
    services = [upstream] + [t.service for t in targets]
    patience = Patience(settings.attempts, settings.quiet_wait_s, settings.patience_s)
    runs: dict = {load.key: {t.key: [] for t in targets} for load in LOADS}
    for load in LOADS:
        for rep in range(1, settings.repeats + 1):
            for target in targets:
                what = f"[{load.label}] {rep}/{settings.repeats} {target.label}"

                def measure() -> SaturationRun:
                    warm_up(target, SIZE, settings.warmup_requests, load.connections, load.streams)
                    return saturate(target, SIZE, settings.requests, load.connections, load.streams)

                run, foreign = patience.undisturbed(
                    measure, services, lambda f: log(f"{what}: other work {f:.0%} of a core; measuring again"))
                run.foreign_cores = foreign
                runs[load.key][target.key].append(run.as_dict())
                log(f"{what}: {run.rps:,.0f} req/s, {run.cpu_us_per_req:.2f} µs CPU/req, {run.failed} failed")
    for service in services:
        if not service.running():
            raise BenchError(f"{service.name} exited during the run\n{service.output()}")
    return runs, targets


def measure(args: argparse.Namespace, settings: Settings) -> tuple[dict, dict, list[Target]]:
    meta, (runs, targets) = entry.measure_with(
        args, "bench/h2.py", "smoke" if args.smoke else "full",
        lambda ws, binaries, labels: measure_all(ws, settings, binaries, labels))
    return meta, runs, targets


def load_previous(path: Path):
    try:
        doc = json.loads(path.read_text())
        targets = [Target(key, label, 0, None) for key, label in doc["labels"].items()]
        return Settings(**doc["settings"]), doc["meta"], doc["runs"], targets
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BenchError(f"{path}: not a results.json written by bench/h2.py ({e})") from None


def summarize(runs: dict) -> dict:
    """Per load and target: the median CPU per request and req/s over the repeats."""
    out: dict = {}
    for load, by_target in runs.items():
        out[load] = {}
        for key, rs in by_target.items():
            out[load][key] = {
                "cpu_us_per_req": statistics.median(r["cpu_us_per_req"] for r in rs),
                "rps": statistics.median(r["rps"] for r in rs),
                "failed": sum(r["failed"] for r in rs),
                "rss_max_kib": max(r["rss_max_kib"] or 0 for r in rs),
            }
    return out


def markdown(summary: dict, labels: dict, settings: Settings) -> str:
    keys = [k for k in PROXY_KEYS if k in labels]
    head = "| figure | " + " | ".join(labels[k] for k in keys) + " | Trellis ÷ best peer |\n"
    head += "|---|" + "--:|" * len(keys) + "--:|\n"
    lines = []
    for load in LOADS:
        s = summary[load.key]
        best_cpu = min(s[k]["cpu_us_per_req"] for k in PEER_KEYS)
        best_rps = max(s[k]["rps"] for k in PEER_KEYS)
        lines.append(f"| CPU per request, µs ({load.label}) | "
                     + " | ".join(f"{s[k]['cpu_us_per_req']:.2f}" for k in keys)
                     + f" | {s['trellis']['cpu_us_per_req'] / best_cpu:.2f}× |")
        lines.append(f"| max req/s ({load.label}) | " + " | ".join(f"{s[k]['rps']:,.0f}" for k in keys)
                     + f" | {s['trellis']['rps'] / best_rps:.2f}× |")
        lines.append(f"| peak RSS, MiB ({load.label}) | "
                     + " | ".join(f"{s[k]['rss_max_kib'] / 1024:.1f}" for k in keys) + " | |")
        lines.append(f"| failed requests ({load.label}) | " + " | ".join(str(s[k]["failed"]) for k in keys)
                     + " | |")
    note = (f"\nEach figure is the median of {settings.repeats} runs of `h2load -c C -m M -n "
            f"{settings.requests:,} -t 1` (after {settings.warmup_requests:,} warm-up requests), the "
            "targets taken in turn; the proxy on core 0, h2load and the upstream on core 1. "
            "CPU per request is the proxy's utime + stime over the run ÷ requests. For CPU, below 1× "
            "is better; for req/s, above 1×.\n")
    return head + "\n".join(lines) + "\n" + note


def write_outputs(args: argparse.Namespace, settings: Settings, meta: dict, runs: dict,
                  targets: list[Target]) -> tuple[str, bool]:
    labels = {t.key: t.label for t in targets}
    summary = summarize(runs)
    table = markdown(summary, labels, settings)
    ok = all(v["failed"] == 0 for load in summary.values() for v in load.values())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "settings": asdict(settings), "labels": labels, "runs": runs, "summary": summary,
         "ok": ok}, indent=2) + "\n")
    if args.write_results:
        if not ok:
            log("not writing bench/RESULTS-h2.md: some requests failed")
        else:
            v = meta["versions"]
            text = (
                "## HTTP/2 from clients\n\n"
                "The latest full run of `bench/h2.py`: HAProxy, nginx and trellis-proxy serve h2c "
                "(prior knowledge) to h2load and HTTP/1.1 to the same nginx upstream. Written by "
                "`bench/h2.py --write-results`; do not edit by hand.\n\n"
                f"- CPU: {meta['cpu']}, {meta['cores']} cores; nginx {v['nginx']}, HAProxy {v['haproxy']}, "
                f"h2load (nghttp2 {v['h2load']})\n"
                f"- Trellis: commit {meta['trellis_commit']}, {meta['trellis_build']} build; "
                f"run {meta['date']}\n\n" + table)
            (BENCH_DIR / "RESULTS-h2.md").write_text(text)
            report.put_section(BENCH_DIR / "RESULTS.md", text)
            log("wrote bench/RESULTS-h2.md and its section of bench/RESULTS.md")
    return table, ok


def main() -> int:
    return entry.run(parse_args(), load_previous, lambda a: replace(settings_for(a)), measure, write_outputs,
                     "results.md, results.json")


if __name__ == "__main__":
    entry.main(main)
