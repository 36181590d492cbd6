#!/usr/bin/env bash
# The re-mint storm (issue 28, "where the tail goes"): 1,000 members' minted
# Paragon tokens, signed in one warm-up, come due for re-signing. With
# `paragon.token_ttl = "90s"` a token is reused for at most 60 s; this runs
# INTERVALS (10) consecutive `wrk -t1 -c64 -d10s` spans after the warm-up
# and prints, per span: throughput, p50, p99, the maximum, and how many
# tokens credgate signed in it (`credgate_token_mints_total`).
#
#   benches/load/remint.sh                          # builds release binaries
#   CREDGATE=path BENCHKIT=path benches/load/remint.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK="$ROOT/.bench/remint"
INTERVALS=${INTERVALS:-10}
PROJECT=be4c0000-0000-4000-8000-000000000000
PROXY_PATH="/projects/$PROJECT/sdk/proxy/salesforce/bench"
LOG_PREFIX=remint
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
need_tools wrk curl
given_or_built
rm -rf "$WORK"; mkdir -p "$WORK"

# A 90 s TTL: reuse for 60 s instead of 4.5 min, so the storm comes within
# the run.
bench_setup 18280 19284 90s --users 100 --members 10
RUST_LOG=warn "$CREDGATE" serve --config "$WORK/credgate/credgate.toml" --log-format json \
    >"$WORK/credgate.log" 2>&1 &
PIDS+=($!)
wait_port 18284

export TOKENS="$WORK/credgate/tokens.txt" BENCH_PATH="$PROXY_PATH"
mints() { curl -s http://127.0.0.1:19284/metrics | awk '/^credgate_token_mints_total/ {printf "%d", $NF}'; }
log "warming up: every member's token signed"
wrk -t1 -c8 -d5s -s "$ROOT/benches/load/pool.lua" http://127.0.0.1:18284 >/dev/null
log "warm-up signed $(mints) tokens; ${INTERVALS} spans of 10 s follow"
printf '| after warm-up | req/s | p50 | p99 | max | tokens signed |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n'
for i in $(seq 1 "$INTERVALS"); do
  m0=$(mints)
  out=$(wrk -t1 -c64 -d10s --latency -s "$ROOT/benches/load/pool.lua" http://127.0.0.1:18284)
  m1=$(mints)
  printf '| %d–%d s | %s | %s | %s | %s | %d |\n' $(((i - 1) * 10)) $((i * 10)) \
    "$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$out")" "$(awk '$1=="50%" {print $2}' <<<"$out")" \
    "$(awk '$1=="99%" {print $2}' <<<"$out")" "$(awk '$1=="Latency" {print $4; exit}' <<<"$out")" $((m1 - m0))
done
