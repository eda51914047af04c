"""What the numbers were measured on: hardware, kernel, peer versions, commit."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path


def _output(argv: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (result.stdout + result.stderr).strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _virtual() -> bool:
    """The CPU flags say a hypervisor is underneath."""
    try:
        return " hypervisor" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _first_match(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else "unknown"


def versions() -> dict[str, str]:
    return {
        "nginx": _first_match(r"nginx/(\S+)", _output(["nginx", "-v"])),
        "haproxy": _first_match(r"HAProxy version (\S+)", _output(["haproxy", "-v"])),
        "h2load": _first_match(r"nghttp2/(\S+)", _output(["h2load", "--version"])),
    }


def commit(repo: Path) -> str:
    """The checked-out commit, marked when tracked files differ from it."""
    head = _output(["git", "rev-parse", "--short", "HEAD"], cwd=repo) or "unknown"
    dirty = subprocess.run(["git", "diff-index", "--quiet", "HEAD", "--"], cwd=repo,
                           capture_output=True).returncode != 0
    return f"{head} (with uncommitted changes)" if dirty else head


def describe(repo: Path, build_type: str) -> dict[str, object]:
    return {
        "cpu": _cpu_model() + (" (virtual machine)" if _virtual() else ""),
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "os": _first_match(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text()),
        "versions": versions(),
        "trellis_commit": commit(repo),
        "trellis_build": build_type,
    }
