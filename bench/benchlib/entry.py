"""The command-line shape every benchmark script shares: measure (or reload
an earlier run's JSON), write the outputs, print the table, and exit 0 only
when no request failed; interrupted, every process started is stopped."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from benchlib import machine, quiet
from benchlib.build import DEFAULT_BUILD_DIR, REPO, build_type, prepare
from benchlib.procs import BenchError, Workspace
from benchlib.targets import CLIENT_CORE, target_labels


def parse_args(description: str, out_dir: Path, results_file: str) -> argparse.Namespace:
    """The flags of a benchmark with a smoke mode (bench/h2.py, bench/grpc.py):
    --smoke, --build-dir, --out, --write-results (of bench/RESULTS_FILE) and
    --from-json."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny counts: checks the harness end to end")
    p.add_argument("--build-dir", type=Path,
                   help="use the binaries of this existing build tree instead of building "
                        f"Release into {DEFAULT_BUILD_DIR.relative_to(REPO)}/")
    p.add_argument("--out", type=Path, default=out_dir, help="where results.md and results.json go")
    p.add_argument("--write-results", action="store_true", help=f"(re)write bench/{results_file} from this run")
    p.add_argument("--from-json", type=Path, metavar="FILE", help="report again an earlier run's results.json")
    args = p.parse_args()
    if args.write_results and args.smoke:
        p.error("--write-results records a full run; drop --smoke")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args, load_previous: Callable, settings_for: Callable, measure: Callable, write_outputs: Callable,
        outputs: str) -> int:
    try:
        if args.from_json:
            settings, meta, runs, targets = load_previous(args.from_json)
        else:
            settings = settings_for(args)
            meta, runs, targets = measure(args, settings)
    except BenchError as e:
        log(f"bench: {e}")
        return 2
    text, ok = write_outputs(args, settings, meta, runs, targets)
    sys.stdout.write(text)
    log(f"results: {args.out}/{outputs}")
    if not ok:
        log("bench: some requests failed (see the table)")
    return 0 if ok else 1


def main(body: Callable[[], int]) -> None:
    try:
        sys.exit(body())
    except KeyboardInterrupt:
        log("bench: interrupted; every process it started is stopped")
        sys.exit(130)


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


def measure_with(args, script: str, mode: str, body: Callable, extra_tools: tuple[str, ...] = ()) -> tuple:
    """Builds, describes the machine, pins the harness beside the load
    generator (away from the proxies' core), warns when the machine is busy,
    then runs body(workspace, binaries, labels) and stops whatever it
    started. Returns the machine's description and what body returned."""
    started = time.time()
    build_dir, binaries = prepare(args.build_dir, extra_tools=extra_tools)
    meta = machine.describe(REPO, build_type(build_dir))
    labels = target_labels(meta["versions"])
    os.sched_setaffinity(0, {CLIENT_CORE})
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)

    background = quiet.busy_now(1.0)
    meta["background_busy_before"] = background
    if max(background.values()) > quiet.QUIET_BUSY:
        log("bench: warning: the machine is not idle before the run ("
            + ", ".join(f"core {c} {b * 100:.0f} % busy" for c, b in background.items())
            + "); other processes will add noise to every figure")

    ws = Workspace()
    try:
        result = body(ws, binaries, labels)
    finally:
        ws.close()
    meta.update(command=f"{script} " + " ".join(sys.argv[1:]),
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                duration_s=time.time() - started, mode=mode)
    return meta, result
