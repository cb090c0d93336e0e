#!/usr/bin/env bash
# `make run`: starts one edgekvd in the foreground with a working default configuration
# and its data under ./run/. Ctrl-C stops it cleanly (it leaves the cluster first).
# Usage: scripts/run-local.sh BUILD_DIR
# The EDGEKV_* variables below change what differs between nodes, so a second node on the
# same machine can join the first (README.md shows how).
set -euo pipefail
build=${1:-build/release}
top=$(cd "$(dirname "$0")/.." && pwd)
data=${EDGEKV_DATA_DIR:-$top/run/data}
mkdir -p "$data"
client=${EDGEKV_ENDPOINT:-tcp://127.0.0.1:7400}
feed=${EDGEKV_FEED_ENDPOINT:-tcp://127.0.0.1:7403}
resp=${EDGEKV_RESP_ENDPOINT:-tcp://127.0.0.1:7379}
gossip=${EDGEKV_GOSSIP_ENDPOINT:-tcp://127.0.0.1:7402}
peer=${EDGEKV_PEER_ENDPOINT:-tcp://127.0.0.1:7401}
seeds=${EDGEKV_SEEDS:-}
kvcli="$top/$build/cli/kvcli"

cat <<MSG
edgekvd: data in $data
  client API   $client
  change feed  $feed
  Redis (RESP) $resp
  gossip       $gossip${seeds:+ (joining through $seeds)}
Try, in another terminal:
  $kvcli put greeting hello
  $kvcli get greeting
  $kvcli put session:42 token --ttl 30
  $kvcli watch session:
  $kvcli status
  $kvcli members
  redis-cli -p ${resp##*:} set hello world
Ctrl-C stops edgekvd.
MSG

# The example configuration holds every default; flags set what differs for a local run.
exec "$top/$build/daemon/edgekvd" --config "$top/etc/edgekv.conf" \
  --node-id "${EDGEKV_NODE_ID:-local}" --data-dir "$data" \
  --client-endpoint "$client" --feed-endpoint "$feed" --resp-endpoint "$resp" \
  --gossip-endpoint "$gossip" --peer-endpoint "$peer" --seeds "$seeds"
