"""The side-by-side benchmarks run end to end (bench/run.py --smoke, bench/h2.py --smoke).

Only that it runs: every target serves, no request fails, the table names all
four targets. Its numbers are never asserted on.
"""

import subprocess
import sys

from harness import BIN_DIR, SOURCE_DIR


def test_bench_smoke_runs_all_targets(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SOURCE_DIR / "bench" / "run.py"), "--smoke",
         "--build-dir", str(BIN_DIR.parent), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    table = (tmp_path / "results.md").read_text()
    assert table == result.stdout
    header = next(line for line in table.splitlines() if line.startswith("| figure |"))
    for target in ("direct", "HAProxy", "nginx", "Trellis"):
        assert f"| {target}" in header, target
    assert (tmp_path / "results.json").is_file()
    assert (tmp_path / "latency.svg").read_text().startswith("<svg")


def test_h2_bench_smoke_runs_all_proxies(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SOURCE_DIR / "bench" / "h2.py"), "--smoke",
         "--build-dir", str(BIN_DIR.parent), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    table = (tmp_path / "results.md").read_text()
    assert table == result.stdout
    header = next(line for line in table.splitlines() if line.startswith("| figure |"))
    for target in ("HAProxy", "nginx", "Trellis"):
        assert f"| {target}" in header, target
    assert "100 streams" in table and (tmp_path / "results.json").is_file()
