"""The side-by-side benchmarks run end to end (bench/run.py, h2.py and grpc.py, each --smoke).

Only that they run: every target serves, no request fails, the table names
every target. Their numbers are never asserted on.
"""

import subprocess
import sys

from harness import BIN_DIR, SOURCE_DIR


def smoke(script: str, out) -> str:
    """Runs bench/SCRIPT --smoke against the test build; returns its table."""
    result = subprocess.run(
        [sys.executable, str(SOURCE_DIR / "bench" / script), "--smoke",
         "--build-dir", str(BIN_DIR.parent), "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    table = (out / "results.md").read_text()
    assert table == result.stdout
    assert (out / "results.json").is_file()
    return table


def header(table: str) -> str:
    return next(line for line in table.splitlines() if line.startswith("| figure |"))


def test_bench_smoke_runs_all_targets(tmp_path):
    table = smoke("run.py", tmp_path)
    for target in ("direct", "HAProxy", "nginx", "Trellis"):
        assert f"| {target}" in header(table), target
    assert (tmp_path / "latency.svg").read_text().startswith("<svg")


def test_h2_bench_smoke_runs_all_proxies(tmp_path):
    table = smoke("h2.py", tmp_path)
    for target in ("HAProxy", "nginx", "Trellis"):
        assert f"| {target}" in header(table), target
    assert "100 streams" in table


def test_grpc_bench_smoke_calls_through_two_sidecars(tmp_path):
    table = smoke("grpc.py", tmp_path)
    assert "| figure | direct | two Trellis sidecars |" in table
    assert "| failed calls | 0 | 0 |" in table
