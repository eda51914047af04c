#!/usr/bin/env bash
# The main job: builds trellis-proxy, starts it in front of a demo nginx
# upstream on loopback, sends traffic through it and shows what happened.
# Does its own set-up: safe to run on a fresh Debian bookworm machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target trellis-proxy >/dev/null

RUN=$(mktemp -d /tmp/trellis-demo.XXXXXX)
mkdir -p "$RUN/nginx/tmp"
cleanup() {
  [[ -n "${PROXY_PID:-}" ]] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null || true
  [[ -f "$RUN/nginx/nginx.pid" ]] && kill "$(cat "$RUN/nginx/nginx.pid")" 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

ADMIN=http://127.0.0.1:15000
WEB=http://127.0.0.1:15001

echo "== starting the demo upstream (nginx on 127.0.0.1:15081 and :15082)"
cp examples/demo/nginx.conf "$RUN/nginx/nginx.conf"
nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -g 'daemon on;'

echo "== starting trellis-proxy (examples/demo/proxy.yaml)"
./build/src/trellis-proxy --config examples/demo/proxy.yaml --workers 2 >"$RUN/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do
  curl -fs "$ADMIN/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$ADMIN/ready" >/dev/null || { cat "$RUN/proxy.log"; exit 1; }

echo "== a few requests through the proxy"
for path in / / /api/users; do
  printf '  GET %-12s -> %s' "$path" "$(curl -s "$WEB$path")"
  echo
done
printf '  L4 listener   -> %s\n' "$(curl -s http://127.0.0.1:15002/)"

echo "== load: 20000 requests, 20 keep-alive connections (h2load)"
h2load --h1 -n 20000 -c 20 -t 1 "$WEB/" | grep -E "^(finished in|requests:|status codes:)" | sed 's/^/  /'

echo "== proxy stats ($ADMIN/stats)"
curl -s "$ADMIN/stats" | grep -E '^trellis_(http_requests_total|downstream_connections_total|upstream_connects_total|upstream_requests_total|http_request_duration_seconds_count)' \
  | grep -v ' 0$' | sed 's/^/  /'
echo "  proxy memory: $(grep VmRSS /proc/$PROXY_PID/status | awk '{print $2 " " $3}') RSS"
echo "== done"
