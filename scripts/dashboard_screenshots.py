#!/usr/bin/python3
"""Takes the screenshots of the dashboard's main views shown in the README
(docs/images/dashboard-*.png), from a running mesh:

    ./scripts/demo.sh --keep      # prints the API address and the token file
    ./scripts/dashboard_screenshots.py 127.0.0.1:15011 /tmp/trellis-demo.*/dashboard-token
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from browser import Browser, spki_sha256  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    token = Path(sys.argv[2]).read_text().strip()
    out = ROOT / "docs" / "images"
    b = Browser(trusted_spki=spki_sha256(host, int(port)), width=1280, height=760)
    try:
        b.open(f"https://{host}:{port}/ui/#token={token}")
        b.wait_for("document.body.dataset.readings >= 2", 30)  # rates need two readings
        for view in ("services", "topology", "proxies", "problems"):
            b.evaluate(f"location.hash = '#{view}'")
            b.wait_for(f"!document.getElementById('{view}').hidden")
            if view == "proxies":
                b.evaluate("document.querySelector('#proxy-rows button').click()")
                b.wait_for("document.getElementById('proxy-config-body').textContent.startsWith('{')")
            time.sleep(0.3)
            b.screenshot(out / f"dashboard-{view}.png")
            print(out / f"dashboard-{view}.png")
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
