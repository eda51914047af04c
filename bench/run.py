#!/usr/bin/python3
"""Side-by-side benchmark: direct, HAProxy, nginx and trellis-proxy in front of
one nginx upstream, measured in one run. See bench/README.md."""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, TypeVar

from benchlib import chart, entry, quiet, report
from benchlib.entry import log
from benchlib.build import DEFAULT_BUILD_DIR, REPO
from benchlib.measure import SaturationRun, Scenario, latency, saturate, warm_up
from benchlib.procs import BenchError, Service, Workspace
from benchlib.quiet import Patience
from benchlib.targets import CLIENT_CORE, SIZES, TARGET_KEYS, Target, start_target, start_upstream, verify

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    saturation_requests: int
    repeats: int
    warmup_requests: int
    latency_duration_s: float
    open_loop_connections: int
    attempts: int          # runs of one measurement while other work disturbs it
    quiet_wait_s: float    # how long to wait for idle cores before a measurement
    patience_s: float      # in all, for waiting and measuring again


FULL = Settings(saturation_requests=200_000, repeats=2, warmup_requests=5_000,
                latency_duration_s=10, open_loop_connections=16,
                attempts=3, quiet_wait_s=30, patience_s=300)
SMOKE = Settings(saturation_requests=2_000, repeats=1, warmup_requests=200,
                 latency_duration_s=0.25, open_loop_connections=4,
                 attempts=1, quiet_wait_s=0, patience_s=0)


def scenarios(settings: Settings) -> list[Scenario]:
    c = settings.open_loop_connections
    return [
        Scenario("rate_1000", "1,000 req/s open loop", 1_000, c),
        Scenario("rate_10000", "10,000 req/s open loop", 10_000, c),
        Scenario("sequential", "1 connection, sequential", 0, 1),
        # The same with the proxy moved beside the client and the upstream: no
        # hop wakes an idle core, which on a virtual machine costs more than
        # the proxy's own work.
        Scenario("sequential_same_core", "1 connection, sequential, one core", 0, 1,
                 proxy_core=CLIENT_CORE),
    ]


# ------------------------------------------------------------------ set-up

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Measure direct, HAProxy, nginx and trellis-proxy side by side.")
    p.add_argument("--smoke", action="store_true",
                   help="tiny counts, about 15 seconds: checks the harness end to end")
    p.add_argument("--targets", default=",".join(TARGET_KEYS),
                   help=f"comma-separated subset of {','.join(TARGET_KEYS)}")
    p.add_argument("--sizes", default=",".join(SIZES),
                   help=f"comma-separated subset of {','.join(SIZES)}")
    p.add_argument("--build-dir", type=Path,
                   help="use the binaries of this existing build tree instead of building "
                        f"Release into {DEFAULT_BUILD_DIR.relative_to(REPO)}/")
    p.add_argument("--out", type=Path, default=OUT_DIR,
                   help="where results.md, results.json and latency.svg go (default: bench/out)")
    p.add_argument("--write-results", action="store_true",
                   help="(re)write bench/RESULTS.md and bench/latency.svg from this run")
    p.add_argument("--from-json", type=Path, metavar="FILE",
                   help="measure nothing: report again what an earlier run wrote to FILE "
                        "(its results.json)")
    p.add_argument("--requests", type=int, help="requests per saturation run")
    p.add_argument("--repeat", type=int, help="saturation runs per target and size")
    p.add_argument("--duration", type=float, help="seconds per latency run")
    args = p.parse_args()
    args.targets = _subset(p, args.targets, TARGET_KEYS, "--targets")
    args.sizes = _subset(p, args.sizes, tuple(SIZES), "--sizes")
    if args.write_results and args.smoke:
        p.error("--write-results records a full run; drop --smoke")
    if args.requests is not None and args.requests < 50:
        p.error("--requests: at least 50 (one per saturation connection)")
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat: at least 1")
    if args.duration is not None and args.duration < 0.001:
        p.error("--duration: at least 0.001 seconds")
    return args


def _subset(parser: argparse.ArgumentParser, text: str, known: tuple[str, ...],
            flag: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in known]
    if unknown or not chosen:
        parser.error(f"{flag}: choose from {', '.join(known)}")
    return [k for k in known if k in chosen]  # canonical order


def settings_for(args: argparse.Namespace) -> Settings:
    settings = SMOKE if args.smoke else FULL
    overrides = {"saturation_requests": args.requests, "repeats": args.repeat,
                 "latency_duration_s": args.duration}
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


# ------------------------------------------------------------------- the run

def start_all(ws: Workspace, args: argparse.Namespace, binaries: dict[str, Path],
              labels: dict[str, str]) -> tuple[list[Service], list[Target]]:
    """The upstream and every target, each checked to serve both bodies."""
    upstream, upstream_port = start_upstream(ws)
    targets = [start_target(ws, key, labels[key], upstream_port, binaries) for key in args.targets]
    for target in targets:
        for size in args.sizes:
            verify(target, SIZES[size])
    log(f"serving: upstream on :{upstream_port}; "
        + ", ".join(f"{t.label} on :{t.port}" for t in targets))
    return [upstream] + [t.service for t in targets if t.service], targets


def measure_undisturbed(measure: Callable[[], T], services: list[Service], patience: Patience,
                        what: str) -> tuple[T, float]:
    def retry(foreign: float) -> None:
        log(f"{what}: other processes used {foreign:.0%} of a core meanwhile; measuring again")
    return patience.undisturbed(measure, services, retry)


def run_saturation(runs: dict, targets: list[Target], services: list[Service],
                   settings: Settings, patience: Patience) -> None:
    for size in runs:
        # Repeats go round all targets in turn, so a slow drift of the machine
        # shows up as spread rather than as a difference between targets.
        for rep in range(1, settings.repeats + 1):
            for target in targets:
                what = f"[{SIZES[size].label}] saturation {rep}/{settings.repeats} {target.label}"

                def measure() -> SaturationRun:
                    warm_up(target, SIZES[size], settings.warmup_requests, connections=50)
                    return saturate(target, SIZES[size], settings.saturation_requests)

                run, foreign = measure_undisturbed(measure, services, patience, what)
                run.foreign_cores = foreign
                runs[size][target.key]["saturation"].append(run.as_dict())
                cpu = "" if run.cpu_us_per_req is None else f", {run.cpu_us_per_req:.2f} µs CPU/req"
                log(f"{what}: {run.rps:,.0f} req/s{cpu}, {run.failed} failed, "
                    f"other work {foreign:.0%} of a core")


def run_latency(runs: dict, targets: list[Target], services: list[Service],
                settings: Settings, patience: Patience, trellis: Path) -> None:
    for size in runs:
        for sc in scenarios(settings):
            for target in targets:
                what = f"[{SIZES[size].label}] {sc.label} {target.label}"

                def measure() -> dict:
                    with moved(target, sc.proxy_core):
                        warm_up(target, SIZES[size], settings.warmup_requests,
                                connections=sc.connections)
                        return latency(trellis, target, SIZES[size], sc,
                                       settings.latency_duration_s)

                result, foreign = measure_undisturbed(measure, services, patience, what)
                result["foreign_cores"] = foreign
                runs[size][target.key]["latency"][sc.key] = result
                lat = result["latency_us"]
                log(f"{what}: p50 {report.fmt_us(lat['p50'])} µs, "
                    f"p99 {report.fmt_us(lat['p99'])} µs, {result['failed']} failed, "
                    f"other work {foreign:.0%} of a core")


def moved(target: Target, core: int | None) -> contextlib.AbstractContextManager:
    if target.service is None:
        return contextlib.nullcontext()
    return target.service.moved_to(core)


def measure_all(ws: Workspace, args: argparse.Namespace, settings: Settings,
                binaries: dict[str, Path], labels: dict[str, str]) -> tuple[dict, list[Target]]:
    services, targets = start_all(ws, args, binaries, labels)
    runs: dict = {size: {t.key: {"saturation": [], "latency": {}} for t in targets}
                  for size in args.sizes}
    patience = Patience(settings.attempts, settings.quiet_wait_s, settings.patience_s)
    run_saturation(runs, targets, services, settings, patience)
    run_latency(runs, targets, services, settings, patience, binaries["trellis"])
    for service in services:
        if not service.running():
            raise BenchError(f"{service.name} exited during the run\n{service.output()}")
    return runs, targets


def write_outputs(args: argparse.Namespace, settings: Settings, meta: dict, runs: dict,
                  targets: list[Target]) -> tuple[str, bool]:
    scs = scenarios(settings)
    columns = [report.Column(t.key, t.label) for t in targets]
    rss_idle = {t.key: t.rss_idle_kib for t in targets}
    summary = report.summarize(runs, rss_idle, scs)
    ratio = report.ratios(summary, scs)
    table = report.markdown(runs, summary, ratio, columns, scs,
                            {**asdict(settings), "foreign_limit": quiet.FOREIGN_LIMIT})
    ok = not report.failures(runs, columns, scs)
    subtitle = (f"trellis load, {settings.latency_duration_s:g} s per run; "
                f"{meta['cpu']}, {meta['cores']} cores; commit {meta['trellis_commit']}")
    svg = chart.latency_svg(summary, columns, scs, subtitle)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table)
    (args.out / "latency.svg").write_text(svg)
    document = {"meta": meta, "settings": asdict(settings),
                "scenarios": [asdict(s) for s in scs],
                "targets": {t.key: {"label": t.label, "rss_idle_kib": t.rss_idle_kib,
                                    "rss_idle_processes": t.rss_idle_processes}
                            for t in targets},
                "runs": runs, "summary": summary, "ratios": ratio, "ok": ok}
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    if args.write_results:
        if ok:
            write_results_doc(meta, table, svg)
        else:
            log("not writing bench/RESULTS.md: some requests failed")
    return table, ok


def write_results_doc(meta: dict, table: str, svg: str) -> None:
    v = meta["versions"]
    doc = f"""# Benchmark results

The latest full run of `bench/run.py` (method and figures: [README.md](README.md)).
Written by `bench/run.py --write-results`; do not edit by hand.

## Machine

- CPU: {meta['cpu']}, {meta['cores']} cores; memory {meta['memory_gib']} GiB
- OS: {meta['os']}, kernel {meta['kernel']}
- peers: nginx {v['nginx']}, HAProxy {v['haproxy']}; load: h2load (nghttp2 {v['h2load']}) and `trellis load`
- Trellis: commit {meta['trellis_commit']}, {meta['trellis_build']} build
- run: {meta['date']}, {meta['duration_s']:.0f} s in all

## Command

```sh
{meta['command']}
```

## Results

How to read these figures, and how much they move from run to run:
[README.md](README.md#reading-the-numbers).

{table}
## Latency chart

![Latency percentiles by target](latency.svg)
"""
    # The mesh path and the control plane's scale figures come from their own
    # harnesses (bench/mesh.py, bench/control/scale.py); their latest full
    # runs are carried here as written.
    for section in (BENCH_DIR / "RESULTS-mesh.md", BENCH_DIR / "RESULTS-floor.md", BENCH_DIR / "RESULTS-h2.md",
                    BENCH_DIR / "RESULTS-grpc.md",
                    BENCH_DIR / "control" / "RESULTS-control.md"):
        if section.exists():
            doc += "\n" + section.read_text()
    (BENCH_DIR / "RESULTS.md").write_text(doc)
    (BENCH_DIR / "latency.svg").write_text(svg)
    log("wrote bench/RESULTS.md and bench/latency.svg")


def measure(args: argparse.Namespace, settings: Settings) -> tuple[dict, dict, list[Target]]:
    """Builds, starts everything, measures; returns the machine's description,
    the raw runs and the targets."""
    meta, (runs, targets) = entry.measure_with(
        args, "bench/run.py", "smoke" if args.smoke else "full",
        lambda ws, binaries, labels: measure_all(ws, args, settings, binaries, labels))
    return meta, runs, targets


def load_previous(path: Path) -> tuple[Settings, dict, dict, list[Target]]:
    """What an earlier run wrote to results.json, to report it again."""
    try:
        doc = json.loads(path.read_text())
        settings = Settings(**doc["settings"])
        targets = [Target(key, t["label"], 0, None, t["rss_idle_kib"], t.get("rss_idle_processes"))
                   for key, t in doc["targets"].items()]
        return settings, doc["meta"], doc["runs"], targets
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BenchError(f"{path}: not a results.json written by bench/run.py ({e})") from None


def main() -> int:
    return entry.run(parse_args(), load_previous, settings_for, measure, write_outputs, "results.md, results.json, latency.svg")


if __name__ == "__main__":
    entry.main(main)
