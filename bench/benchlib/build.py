"""Before a run: the tools it needs, a Release build of Trellis, and the
binaries it measures. Shared by bench/run.py and bench/mesh.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .procs import BenchError
from .targets import CLIENT_CORE, PROXY_CORE

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUILD_DIR = REPO / "build-bench"


def check_tools(building: bool, extra: tuple[str, ...] = ()) -> None:
    needed = ["nginx", "haproxy", "h2load", "curl", "taskset", *extra]
    if building:
        needed += ["cmake", "ninja"]
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}. "
                         "Install them with: sudo scripts/setup.sh")
    cores = os.sched_getaffinity(0)
    if not {PROXY_CORE, CLIENT_CORE} <= cores:
        raise BenchError(f"needs CPU cores {PROXY_CORE} and {CLIENT_CORE} "
                         f"(this process may use {sorted(cores)})")


def build(build_dir: Path) -> None:
    log = build_dir / "bench-build.log"
    build_dir.mkdir(parents=True, exist_ok=True)
    steps = [
        ["cmake", "-S", str(REPO), "-B", str(build_dir), "-G", "Ninja",
         "-DCMAKE_BUILD_TYPE=Release"],
        ["ninja", "-C", str(build_dir), "trellis-proxy", "trellis"],
    ]
    print(f"building Release in {build_dir} (log: {log})", file=sys.stderr)
    with open(log, "w") as out:
        for argv in steps:
            out.write("$ " + " ".join(argv) + "\n")
            out.flush()
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                text = log.read_text(errors="replace")
                hint = ""
                if "unknown target 'trellis'" in text:
                    hint = ("\nThe `trellis` CLI (src/cli/) does not build yet; its `trellis load` "
                            "command measures every latency figure.")
                tail = "\n".join(text.splitlines()[-25:])
                raise BenchError(f"build failed: {' '.join(argv)}\n{tail}{hint}")


def find_binaries(build_dir: Path) -> dict[str, Path]:
    proxy = build_dir / "src" / "trellis-proxy"
    cli = next((p for p in (build_dir / "src" / "cli" / "trellis", build_dir / "src" / "trellis")
                if p.is_file()), None)
    if not proxy.is_file():
        raise BenchError(f"{proxy} not found: build it, or leave out --build-dir")
    if cli is None:
        raise BenchError(f"the trellis CLI was not found under {build_dir}/src: "
                         "`trellis load` measures every latency figure")
    probe = subprocess.run([str(cli), "load", "--help"], capture_output=True, text=True,
                           timeout=10)
    if probe.returncode != 0:
        raise BenchError(f"`{cli} load --help` failed: this trellis has no working load "
                         f"command\n{probe.stdout[-800:]}{probe.stderr[-800:]}")
    return {"trellis-proxy": proxy, "trellis": cli}


def build_type(build_dir: Path) -> str:
    try:
        for line in (build_dir / "CMakeCache.txt").read_text().splitlines():
            if line.startswith("CMAKE_BUILD_TYPE:"):
                return line.split("=", 1)[1] or "(none)"
    except OSError:
        pass
    return "unknown"


def prepare(build_dir: Path | None, extra_tools: tuple[str, ...] = ()) -> tuple[Path, dict[str, Path]]:
    """Checks the tools, builds Release unless given a build tree, and finds
    the binaries; returns the build tree and the binaries."""
    check_tools(building=build_dir is None, extra=extra_tools)
    resolved = (build_dir or DEFAULT_BUILD_DIR).resolve()
    if build_dir is None:
        build(resolved)
    return resolved, find_binaries(resolved)
