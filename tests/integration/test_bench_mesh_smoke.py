"""The mesh benchmark runs end to end (bench/mesh.py --quick): two sidecars
of each kind doing mutual TLS serve, none accepts plain text, no request
fails, the table names all four targets. Its numbers are never asserted on.
"""

import subprocess
import sys

from harness import BIN_DIR, SOURCE_DIR


def test_mesh_bench_quick_runs_all_targets(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SOURCE_DIR / "bench" / "mesh.py"), "--quick",
         "--build-dir", str(BIN_DIR.parent), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    table = (tmp_path / "mesh.md").read_text()
    assert table == result.stdout
    header = next(line for line in table.splitlines() if line.startswith("| figure |"))
    for target in ("direct", "HAProxy", "nginx", "Trellis"):
        assert f"| {target}" in header, target
    assert (tmp_path / "mesh.json").is_file()
