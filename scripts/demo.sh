#!/usr/bin/env bash
# The main job: a local mesh on loopback. trellis-control with the sample
# resources, four services (productpage, details, reviews-v1, reviews-v2), each
# behind its own trellis-proxy sidecar configured by the control plane, and
# traffic from productpage through the mesh, with a summary of what happened.
# Does its own set-up: safe to run on a fresh Debian bookworm machine.
# Ports: TRELLIS_DEMO_PORT_BASE (default 15000) and the 100 above it.
# --keep: leave the mesh up afterwards, with traffic flowing, for the
# dashboard, until interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=0
for arg in "$@"; do
  case $arg in
    --keep) KEEP=1 ;;
    *)
      echo "usage: $0 [--keep]" >&2
      exit 2
      ;;
  esac
done

./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target trellis-proxy trellis-control trellis >/dev/null

BIN=$(pwd)/build/src
BASE=${TRELLIS_DEMO_PORT_BASE:-15000}
RUN=$(mktemp -d /tmp/trellis-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -f "$RUN/nginx/nginx.pid" ]] && kill "$(cat "$RUN/nginx/nginx.pid")" 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

CONTROL_GRPC=127.0.0.1:$((BASE + 10))
export TRELLIS_SERVER=127.0.0.1:$((BASE + 11))
declare -A APP=([productpage]=$((BASE + 80)) [details]=$((BASE + 81)) [reviews-v1]=$((BASE + 82)) [reviews-v2]=$((BASE + 83)))
declare -A INBOUND=([productpage]=$((BASE + 20)) [details]=$((BASE + 21)) [reviews-v1]=$((BASE + 22)) [reviews-v2]=$((BASE + 23)))
declare -A ADMIN=([productpage]=$((BASE + 40)) [details]=$((BASE + 41)) [reviews-v1]=$((BASE + 42)) [reviews-v2]=$((BASE + 43)))
OUTBOUND=127.0.0.1:$((BASE + 30))

wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what=$1
  shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: $what did not come up" >&2
  tail -n 20 "$RUN"/*.log >&2 || true
  exit 1
}

echo "== the applications: four services in nginx (ports ${APP[productpage]}-${APP[reviews-v2]})"
mkdir -p "$RUN/nginx/tmp"
sed -e "s/PORT_PRODUCTPAGE/${APP[productpage]}/" -e "s/PORT_DETAILS/${APP[details]}/" \
    -e "s/PORT_REVIEWS_V1/${APP[reviews-v1]}/" -e "s/PORT_REVIEWS_V2/${APP[reviews-v2]}/" \
    examples/demo/nginx.conf >"$RUN/nginx/nginx.conf"
nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -g 'daemon on;'

echo "== trellis-control: the mesh CA, proxies on $CONTROL_GRPC, API on https://$TRELLIS_SERVER"
"$BIN/trellis-control" --data-dir "$RUN/control" --grpc-address "$CONTROL_GRPC" \
  --http-address "$TRELLIS_SERVER" >"$RUN/control.log" 2>&1 &
PIDS+=($!)
# The API is served over TLS with a certificate from the mesh CA: clients
# check it against the trust bundle trellis-control wrote.
export TRELLIS_CA_FILE="$RUN/control/trust-bundle.pem"
wait_for trellis-control curl -fs --cacert "$TRELLIS_CA_FILE" "https://$TRELLIS_SERVER/healthz"
# The API needs a token: the CLI takes the admin token trellis-control wrote
# at its first start (readable by this user only).
export TRELLIS_TOKEN_FILE="$RUN/control/admin-token"

echo "== applying the sample resources (examples/demo/mesh.yaml)"
"$BIN/cli/trellis" apply -f examples/demo/mesh.yaml | sed 's/^/  /'

echo "== four sidecars, each joining with a token for its own identity and getting its certificate"
for svc in productpage details reviews-v1 reviews-v2; do
  # A join token binds the sidecar to its namespace and service account.
  (umask 077 && "$BIN/cli/trellis" token create -n default --service-account "$svc" --ttl 1h \
    >"$RUN/$svc.token" 2>/dev/null)
  {
    echo "admin: { address: 127.0.0.1:${ADMIN[$svc]} }"
    echo "control_plane:"
    echo "  address: $CONTROL_GRPC"
    echo "  trust_bundle: $RUN/control/trust-bundle.pem"
    echo "  join_token_file: $RUN/$svc.token"
    echo "  node: { id: $svc-1, service: $svc }"
    # Each serves its Service's port 9080 (what routes and callers name) on
    # its own application port.
    echo "  instance: { address: 127.0.0.1:${INBOUND[$svc]}, app_address: 127.0.0.1:${APP[$svc]}, ttl: 10s,"
    echo "              ports: [{ name: http, port: 9080, target_port: ${APP[$svc]}, protocol: http }] }"
    if [[ $svc == productpage ]]; then
      echo "  outbound_address: $OUTBOUND"
      echo "  upstream_services: [details, reviews]"
    fi
  } >"$RUN/$svc.yaml"
  "$BIN/trellis-proxy" --config "$RUN/$svc.yaml" --workers 1 >"$RUN/$svc.log" 2>&1 &
  PIDS+=($!)
done
in_sync() { [[ $("$BIN/cli/trellis" status 2>/dev/null | grep -c ' yes ') -eq 4 ]]; }
wait_for "four proxies in sync" in_sync
"$BIN/cli/trellis" status | sed 's/^/  /'

echo "== requests from productpage, through its sidecar ($OUTBOUND) and the callee's"
for req in "details /details/0" "reviews /reviews/0" "reviews /v2/reviews/0"; do
  set -- $req
  printf '  GET http://%s%-16s -> %s' "$1" "$2" "$(curl -s -H "Host: $1" "http://$OUTBOUND$2")"
  echo
done
printf '  GET http://reviews/reviews/0 (x-canary: v2) -> %s\n' \
  "$(curl -s -H "Host: reviews" -H "x-canary: v2" "http://$OUTBOUND/reviews/0")"
denied=$(curl -s -X DELETE -H "Host: details" "http://$OUTBOUND/details/0" -w '%{http_code}')
printf '  DELETE http://details/details/0  -> %s %s' "${denied: -3}" "${denied%???}"

echo "== mutual TLS between the sidecars (MeshConfig mtls.mode: STRICT)"
ready=$(curl -s "http://127.0.0.1:${ADMIN[details]}/stats" | grep -E '^trellis_certificate_expiry_seconds' || true)
echo "  details' certificate: spiffe://cluster.local/ns/default/sa/details, ${ready##* } s to expiry (renewed at half-life)"
if curl -s --max-time 2 -H "Host: details" "http://127.0.0.1:${INBOUND[details]}/details/0" >/dev/null; then
  echo "  plain text to details' sidecar (127.0.0.1:${INBOUND[details]}) was answered: STRICT is not in force" >&2
  exit 1
fi
echo "  plain text straight to details' sidecar (127.0.0.1:${INBOUND[details]}) -> refused (no certificate)"

echo "== canary split: 1,000 requests to reviews (configured 90% v1, 10% v2)"
for _ in $(seq 1000); do echo "url = \"http://$OUTBOUND/reviews/0\""; echo 'header = "Host: reviews"'; done |
  curl -s -K - | grep -o '"version":"v[12]"' | sort | uniq -c | sed 's/^ */  /'

echo "== load: 2,000 requests to reviews and to details (trellis load, open loop, 400 req/s each)"
for svc in reviews details; do
  "$BIN/cli/trellis" load "http://$OUTBOUND/" -H "Host: $svc" --rate 400 --duration 5s --connections 4 \
    | grep -A1 -E "^(requests|status|latency)" | grep -v -- '^--' | sed "s/^/  $svc: /"
done

echo "== registry"
"$BIN/cli/trellis" get services | sed 's/^/  /'

echo "== trellis stat: 4 s of traffic as each service's own sidecar saw it (trellis load on reviews meanwhile)"
"$BIN/cli/trellis" load "http://$OUTBOUND/" -H "Host: reviews" --rate 200 --duration 6s --connections 2 >/dev/null &
LOAD=$!
sleep 0.5
"$BIN/cli/trellis" stat -w 4 | sed 's/^/  /'
wait "$LOAD"

echo "== productpage sidecar stats (http://127.0.0.1:${ADMIN[productpage]}/stats)"
curl -s "http://127.0.0.1:${ADMIN[productpage]}/stats" |
  grep -E '^trellis_(http_requests_total|upstream_requests_total|control_plane_connected|control_plane_version)' |
  grep -v ' 0$' | sed 's/^/  /'
echo "== the dashboard: services, topology, proxies and problems, served by trellis-control"
if ((KEEP == 0)); then
  echo "  https://$TRELLIS_SERVER/ui/ while the mesh is up: ./scripts/demo.sh --keep leaves it up, with traffic"
  echo "== done"
  exit 0
fi
(umask 077 && "$BIN/cli/trellis" token create --kind read-only --description "demo dashboard" \
  >"$RUN/dashboard-token" 2>/dev/null)
echo "  open https://$TRELLIS_SERVER/ui/ and sign in with the read-only token in $RUN/dashboard-token"
echo "  (the API's certificate comes from the mesh CA, $TRELLIS_CA_FILE: trust it, or accept the warning)"
echo "== traffic keeps flowing (productpage to reviews and details, 30 req/s); Ctrl-C stops the mesh"
while true; do
  "$BIN/cli/trellis" load "http://$OUTBOUND/reviews/0" -H "Host: reviews" --rate 20 --duration 10s \
    --connections 2 >/dev/null &
  "$BIN/cli/trellis" load "http://$OUTBOUND/details/0" -H "Host: details" --rate 10 --duration 10s \
    --connections 1 >/dev/null || true
  wait "$!" || true
  curl -s -o /dev/null -X DELETE -H "Host: details" "http://$OUTBOUND/details/0" || true
done
