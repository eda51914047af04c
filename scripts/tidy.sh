#!/usr/bin/env bash
# Runs clang-tidy with the checks of .clang-tidy over every source file of
# src/ (and the headers they include), using the compile commands of build/.
# Exits non-zero on any finding. Slow: several minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRELLIS_WERROR=ON >/dev/null
cmake --build build --target trellis_api trellis_api_grpc >/dev/null  # generated headers
mapfile -t files < <(find src -name '*.cc' | sort)
run-clang-tidy -quiet -p build -extra-arg=-Wno-unknown-warning-option "${files[@]}" 2>/dev/null
