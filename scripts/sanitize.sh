#!/usr/bin/env bash
# Builds Trellis with sanitizers in a tree of its own and runs tests under them:
#   ./scripts/sanitize.sh address   # ASan + UBSan (build-asan/): every test
#   ./scripts/sanitize.sh thread    # TSan (build-tsan/): the multi-threaded tests
# Extra arguments go to ctest. Every sanitizer report, including those of
# processes the integration tests start and stop, is written under the
# build tree's sanitizer/ folder; any report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-address}
shift || true
case "$kind" in
  address) dir=build-asan; only=() ;;
  # Workers, posting across threads, the lock-free state shared by workers
  # (breakers, buckets, detectors, limits), and proxies run with several workers.
  thread) dir=build-tsan
          only=(-R '^unit\.(net|policy|proxy)\.|integration\.test_(rate_limits|circuit_breakers|reload_drain|outlier_detection|adaptive_concurrency|health_checks|http_proxy)$') ;;
  *) echo "usage: $0 address|thread [ctest arguments]" >&2; exit 2 ;;
esac

./scripts/setup.sh
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRELLIS_SANITIZE="$kind" >/dev/null
cmake --build "$dir"

reports="$PWD/$dir/sanitizer"
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0:exitcode=99"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:halt_on_error=1:print_stacktrace=1"
export TRELLIS_SANITIZE="$kind"  # the integration tests skip their RSS bounds
# Sanitized proxies are several times slower: the mesh fault runs use a lighter load.
export TRELLIS_MESH_RPS=${TRELLIS_MESH_RPS:-500}
export TSAN_OPTIONS="log_path=$reports/tsan:halt_on_error=0:second_deadlock_stack=1:exitcode=99"

status=0
ctest --test-dir "$dir" --output-on-failure --parallel 2 -E '^(format|layering)$' "${only[@]}" "$@" || status=$?
if compgen -G "$reports/*" >/dev/null; then
  echo "sanitizer reports in $reports:" >&2
  for f in "$reports"/*; do echo "== $f" >&2; head -40 "$f" >&2; done
  exit 1
fi
exit $status
