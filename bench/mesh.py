#!/usr/bin/python3
"""Mesh benchmark: client → sidecar → mTLS → sidecar → upstream, built from
two HAProxies, two nginx and two trellis-proxies with the same certificates,
beside the direct baseline, measured in one run. See bench/README.md."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from benchlib import entry, quiet, report
from benchlib.entry import log
from benchlib.build import DEFAULT_BUILD_DIR, REPO
from benchlib.measure import Scenario, latency
from benchlib.mesh import MESH_KEYS, MESH_LABELS, MeshTarget, measured_run, start_mesh_target, verify_mesh
from benchlib.mesh_report import section
from benchlib.pki import make_pki
from benchlib.procs import BenchError, Workspace
from benchlib.quiet import Patience
from benchlib.report import Column
from benchlib.targets import SIZES, start_upstream

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
RESULTS_SECTION = BENCH_DIR / "RESULTS-mesh.md"
SECTION_TITLE = "## Mesh path"


@dataclass(frozen=True)
class Settings:
    duration_s: float      # per measured run
    warmup_s: float        # before each run, at its rate: opens the pools and their TLS connections
    connections: int       # of the load generator
    attempts: int          # runs of one measurement while other work disturbs it
    quiet_wait_s: float    # how long to wait for idle cores before a measurement
    patience_s: float      # in all, for waiting and measuring again


FULL = Settings(duration_s=10, warmup_s=3, connections=16,
                attempts=3, quiet_wait_s=30, patience_s=300)
QUICK = Settings(duration_s=2, warmup_s=0.5, connections=16,
                 attempts=1, quiet_wait_s=0, patience_s=0)


def scenarios(settings: Settings) -> list[Scenario]:
    c = settings.connections
    # Flat out, requests meet on the way: what HTTP/2 between the sidecars
    # (many requests a stream each on one connection, written together) can
    # save over HTTP/1.1 shows there, not at a rate the sidecars take one
    # request at a time.
    return [Scenario("rate_1000", "1,000 req/s open loop", 1_000, c),
            Scenario("rate_10000", "10,000 req/s open loop", 10_000, c),
            Scenario("flat_out", f"flat out ({c} connections, closed loop)", 0, c)]


# ------------------------------------------------------------------ set-up

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Measure the mesh path (two sidecars, mTLS between them) through "
                    "HAProxy, nginx and trellis-proxy, beside direct.")
    p.add_argument("--quick", action="store_true",
                   help="2 s per run, no waiting for a quiet machine: checks that it works "
                        "end to end (about a minute)")
    p.add_argument("--targets", default=",".join(MESH_KEYS),
                   help=f"comma-separated subset of {','.join(MESH_KEYS)}")
    p.add_argument("--size", default="12b", choices=list(SIZES),
                   help="response size (default 12b)")
    p.add_argument("--build-dir", type=Path,
                   help="use the binaries of this existing build tree instead of building "
                        f"Release into {DEFAULT_BUILD_DIR.relative_to(REPO)}/")
    p.add_argument("--duration", type=float, help="seconds per measured run")
    p.add_argument("--out", type=Path, default=OUT_DIR,
                   help="where mesh.md and mesh.json go (default: bench/out)")
    p.add_argument("--write-results", action="store_true",
                   help="after a full run with no failed request, write bench/RESULTS-mesh.md "
                        "and put it in bench/RESULTS.md")
    p.add_argument("--from-json", type=Path, metavar="FILE",
                   help="measure nothing: report again what an earlier run wrote to FILE "
                        "(its mesh.json)")
    args = p.parse_args()
    chosen = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not chosen or any(t not in MESH_KEYS for t in chosen):
        p.error(f"--targets: choose from {', '.join(MESH_KEYS)}")
    args.targets = [k for k in MESH_KEYS if k in chosen]
    if args.write_results and args.quick:
        p.error("--write-results records a full run; drop --quick")
    if args.duration is not None and args.duration < 0.1:
        p.error("--duration: at least 0.1 seconds")
    return args


def settings_for(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else FULL
    return settings if args.duration is None else replace(settings, duration_s=args.duration)


# ------------------------------------------------------------------- the run

def run_all(ws: Workspace, args: argparse.Namespace, settings: Settings, binaries: dict,
            labels: dict[str, str]) -> tuple[dict, list[MeshTarget]]:
    size = SIZES[args.size]
    pki = make_pki(ws.dir / "pki")
    upstream, upstream_port = start_upstream(ws)
    labels = {**labels, **MESH_LABELS}
    targets = [start_mesh_target(ws, key, labels[key], pki, upstream_port, binaries)
               for key in args.targets]
    for target in targets:
        verify_mesh(target, size, pki)
    log(f"serving: upstream on :{upstream_port}; " + ", ".join(
        f"{t.label} on :{t.port}" + (f" → mTLS :{t.mesh_port}" if t.mesh_port else "")
        for t in targets))
    services = [upstream] + [s for t in targets for s in t.sidecars.values()]
    patience = Patience(settings.attempts, settings.quiet_wait_s, settings.patience_s)
    # The shape of bench/run.py's raw runs (with no saturation runs), so that
    # report.summarize and report.failures read them as they are.
    runs: dict = {args.size: {t.key: {"saturation": [], "latency": {}} for t in targets}}

    for sc in scenarios(settings):
        for target in targets:
            what = f"{sc.label} {target.label}"

            def one_run() -> dict:
                # The warm-up runs at the measured rate, not flat out: the
                # sidecars then hold the pools and the memory of that rate.
                warm_up = latency(binaries["trellis"], target, size, sc, settings.warmup_s)
                if warm_up["failed"]:
                    raise BenchError(f"{what}: {warm_up['failed']} requests failed during the "
                                     f"warm-up\n{target.logs()}")
                return measured_run(target, lambda: latency(binaries["trellis"], target, size, sc,
                                                            settings.duration_s))

            def retry(foreign: float) -> None:
                log(f"{what}: other processes used {foreign:.0%} of a core meanwhile; "
                    "measuring again")

            result, foreign = patience.undisturbed(one_run, services, retry)
            result["foreign_cores"] = foreign
            runs[args.size][target.key]["latency"][sc.key] = result
            log(describe_run(what, result, foreign))

    for service in services:
        if not service.running():
            raise BenchError(f"{service.name} exited during the run\n{service.output()}")
    return runs, targets


def describe_run(what: str, result: dict, foreign: float) -> str:
    lat = result["latency_us"]
    text = (f"{what}: p50 {report.fmt_us(lat['p50'])} µs, p99 {report.fmt_us(lat['p99'])} µs, "
            f"{result['failed']} failed")
    if "sidecars" in result:
        cpu = " + ".join(f"{s['cpu_s']:.2f}" for s in result["sidecars"].values())
        opened = result["connections_opened"]
        text += (f", sidecars' CPU {cpu} s, connections opened {opened['mesh']} "
                 f"(mesh) / {opened['upstream']} (upstream)")
    return text + f", other work {foreign:.0%} of a core"


def measure(args: argparse.Namespace, settings: Settings) -> tuple[dict, dict, dict]:
    """Builds, starts everything, measures; returns the machine's description,
    the raw runs and the targets' labels and idle memory."""
    meta, (runs, targets) = entry.measure_with(
        args, "bench/mesh.py", "quick" if args.quick else "full",
        lambda ws, binaries, labels: run_all(ws, args, settings, binaries, labels), extra_tools=("openssl",))
    described = {t.key: {"label": t.label, "rss_idle_kib": t.rss_idle_kib} for t in targets}
    return meta, runs, described


def write_outputs(args: argparse.Namespace, settings: Settings, meta: dict, runs: dict,
                  targets: dict) -> tuple[str, bool]:
    scs = scenarios(settings)
    columns = [Column(key, t["label"]) for key, t in targets.items()]
    rss_idle = {key: t["rss_idle_kib"] for key, t in targets.items()}
    # Idle memory is per sidecar here, so the summary's single figure stays empty.
    summary = report.summarize(runs, {key: None for key in targets}, scs)
    ratio = report.ratios(summary, scs)
    text = section(meta, {**asdict(settings), "foreign_limit": quiet.FOREIGN_LIMIT}, runs, summary, ratio,
                   columns, scs, rss_idle)
    ok = not report.failures(runs, columns, scs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mesh.md").write_text(text)
    document = {"meta": meta, "settings": asdict(settings), "targets": targets, "runs": runs, "ok": ok}
    (args.out / "mesh.json").write_text(json.dumps(document, indent=2) + "\n")
    if args.write_results:
        if ok:
            write_results_section(text)
        else:
            log("not writing bench/RESULTS-mesh.md: some requests failed")
    return text, ok


def write_results_section(text: str) -> None:
    """RESULTS-mesh.md, and the same section in RESULTS.md in place of the
    previous one (bench/run.py --write-results carries it over as well)."""
    RESULTS_SECTION.write_text(text)
    report.put_section(BENCH_DIR / "RESULTS.md", text)
    log("wrote bench/RESULTS-mesh.md and its section of bench/RESULTS.md")


def load_previous(path: Path) -> tuple[Settings, dict, dict, dict]:
    try:
        doc = json.loads(path.read_text())
        return Settings(**doc["settings"]), doc["meta"], doc["runs"], doc["targets"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BenchError(f"{path}: not a mesh.json written by bench/mesh.py ({e})") from None


def main() -> int:
    return entry.run(parse_args(), load_previous, settings_for, measure, write_outputs, "mesh.md, mesh.json")


if __name__ == "__main__":
    entry.main(main)
