#!/usr/bin/env python3
"""Checks the layering rule: each layer includes only itself and the layers
below it (common <- net <- http <- policy / proxy / control / cli). The build
enforces the same rule through per-layer include roots; this check names the
file and line, and also covers the tests and benchmarks, which mirror src/.

usage: layering_check.py REPO_ROOT
"""
import re
import sys
from pathlib import Path

# What each layer may include, besides itself.
ALLOWED = {
    "common": set(),
    "net": {"common"},
    "http": {"common", "net"},
    "policy": {"common"},
    "proxy": {"common", "net", "http", "policy"},
    "control": {"common", "net", "http", "policy"},
    "cli": {"common", "net", "http"},
}
LAYERS = set(ALLOWED)
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(path: Path, root: Path):
    rel = path.relative_to(root).parts
    # src/<layer>/..., tests/unit/<layer>/...
    if rel[0] == "src" and len(rel) > 2:
        return rel[1]
    if rel[:2] == ("tests", "unit") and len(rel) > 3:
        return rel[2]
    return None


def main() -> int:
    root = Path(sys.argv[1]).resolve()
    problems = []
    checked = 0
    for path in sorted(list((root / "src").rglob("*")) + list((root / "tests" / "unit").rglob("*"))):
        if path.suffix not in (".h", ".cc"):
            continue
        layer = layer_of(path, root)
        if layer not in LAYERS:
            continue
        checked += 1
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = m.group(1)
            if target.startswith("..") or "/../" in target:
                problems.append(f"{path.relative_to(root)}:{number}: relative include {target!r}: "
                                f"name the layer (\"layer/file.h\")")
                continue
            first = target.split("/", 1)[0]
            if first not in LAYERS or first == layer:
                continue
            if first not in ALLOWED[layer]:
                allowed = ", ".join(sorted(ALLOWED[layer])) or "nothing"
                problems.append(f"{path.relative_to(root)}:{number}: {layer} includes {target!r}; "
                                f"{layer} may include only {allowed}")
    for p in problems:
        print(p)
    print(f"layering: {checked} files checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
