#!/usr/bin/env bash
# Builds Trellis (Release, warnings as errors) and runs every test: unit tests
# and integration tests against real nginx, curl and h2load.
# Does its own set-up: safe to run on a fresh Debian bookworm machine.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRELLIS_WERROR=ON >/dev/null
cmake --build build
ctest --test-dir build --output-on-failure --parallel 2 "$@"
