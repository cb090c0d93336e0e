#!/usr/bin/env bash
# `make run`: starts one edgekvd in the foreground with a working default configuration
# and its data under ./run/. Ctrl-C stops it cleanly. Usage: scripts/run-local.sh BUILD_DIR
set -euo pipefail
build=${1:-build/release}
top=$(cd "$(dirname "$0")/.." && pwd)
data="$top/run/data"
mkdir -p "$data"
client=${EDGEKV_ENDPOINT:-tcp://127.0.0.1:7400}
feed=${EDGEKV_FEED_ENDPOINT:-tcp://127.0.0.1:7403}
resp=${EDGEKV_RESP_ENDPOINT:-tcp://127.0.0.1:7379}
kvcli="$top/$build/cli/kvcli"

cat <<MSG
edgekvd: data in $data
  client API   $client
  change feed  $feed
  Redis (RESP) $resp
Try, in another terminal:
  $kvcli put greeting hello
  $kvcli get greeting
  $kvcli put session:42 token --ttl 30
  $kvcli watch session:
  $kvcli status
  redis-cli -p ${resp##*:} set hello world
Ctrl-C stops edgekvd.
MSG

# The example configuration holds every default; flags set what differs for a local run.
exec "$top/$build/daemon/edgekvd" --config "$top/etc/edgekv.conf" \
  --node-id "${EDGEKV_NODE_ID:-local}" --data-dir "$data" \
  --client-endpoint "$client" --feed-endpoint "$feed" --resp-endpoint "$resp"
