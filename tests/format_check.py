#!/usr/bin/env python3
"""Checks that every C++ file of the project is formatted as .clang-format
says; lists the ones that are not. Fix with: clang-format -i FILE...

usage: format_check.py REPO_ROOT [CLANG_FORMAT]
"""
import subprocess
import sys
from pathlib import Path

DIRS = ("src", "tests", "bench")


def main() -> int:
    root = Path(sys.argv[1]).resolve()
    tool = sys.argv[2] if len(sys.argv) > 2 else "clang-format"
    files = sorted(str(p) for d in DIRS for p in (root / d).rglob("*")
                   if p.suffix in (".cc", ".h") and "corpus" not in p.parts)
    bad = set()
    for i in range(0, len(files), 100):
        batch = files[i:i + 100]
        # One finding per line: "<file>:<line>:<col>: error: code should be clang-formatted".
        result = subprocess.run([tool, "--dry-run", "--Werror", *batch], capture_output=True, text=True)
        for line in result.stderr.splitlines():
            for f in batch:
                if line.startswith(f + ":"):
                    bad.add(f)
        if result.returncode != 0 and not bad.intersection(batch):
            print(result.stderr)
            return 1
    bad = sorted(bad)
    for f in bad:
        print(f"not formatted: {Path(f).relative_to(root)}")
    print(f"format: {len(files)} files checked, {len(bad)} not formatted"
          + (f" (fix: clang-format -i {' '.join(str(Path(f).relative_to(root)) for f in bad[:5])}...)" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
