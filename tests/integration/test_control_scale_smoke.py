"""The control-plane scale benchmark runs end to end (bench/control/scale.py --smoke).

Only that it runs and that every registry change reached every proxy that
calls the changed service, and no other; its timings are never asserted on.
Needs trellis-control and trellis-sim-proxies built in the same tree.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("TRELLIS_SOURCE_DIR") or Path(__file__).resolve().parents[2])
BIN_DIR = Path(os.environ.get("TRELLIS_BIN_DIR") or SOURCE_DIR / "build" / "src")


def test_scale_smoke_every_change_reaches_every_affected_proxy(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SOURCE_DIR / "bench" / "control" / "scale.py"), "--smoke",
         "--build-dir", str(BIN_DIR.parent), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    report = json.loads((tmp_path / "scale.json").read_text())
    assert report["ok"], report.get("error")
    assert report["sync"]["acked_s"] is not None
    assert report["sim"]["closes"] == 0
    changes = report["changes"]
    assert len(changes) == report["params"]["changes"]
    for change in changes:
        assert change["fan_out"] > 0, change
        assert change["missing"] == [], change
        assert change["received"] == change["fan_out"], change
        assert change["unexpected"] == 0, change
        assert change["acked_ms"] is not None, change
    assert (tmp_path / "scale.md").read_text() == result.stdout
