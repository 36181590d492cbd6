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
log() { printf '[remint] %s\n' "$*" >&2; }
command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk curl; }
if [ -z "${CREDGATE:-}" ] || [ -z "${BENCHKIT:-}" ]; then
  (cd "$ROOT" && cargo build --release --locked --bin credgate --example benchkit 2>&1 | tail -2 >&2)
  CREDGATE="$ROOT/target/release/credgate"
  BENCHKIT="$ROOT/target/release/examples/benchkit"
fi
rm -rf "$WORK"; mkdir -p "$WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() {
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  log "port $1 did not open"; return 1
}

BENCH_THREADS=1 "$BENCHKIT" upstream --listen 127.0.0.1:18280 >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
"$BENCHKIT" prepare --dir "$WORK/credgate" --users 100 --members 10 --churn-tokens 10 \
    --upstream http://127.0.0.1:18280 --emulator http://127.0.0.1:18285 \
    --listen 127.0.0.1:18284 --admin 127.0.0.1:19284 --project "$PROJECT" >/dev/null
# Reuse for 60 s instead of 4.5 min, so the storm comes within the run.
sed -i 's|^signing_key_file = .*|&\ntoken_ttl = "90s"|' "$WORK/credgate/credgate.toml"
"$CREDGATE" emulator --listen 127.0.0.1:18285 --fixtures "$WORK/credgate/fixtures.json" \
    --public-key "$WORK/credgate/paragon-public.pem" --log-format json >"$WORK/emulator.log" 2>&1 &
PIDS+=($!)
RUST_LOG=warn "$CREDGATE" serve --config "$WORK/credgate/credgate.toml" --log-format json \
    >"$WORK/credgate.log" 2>&1 &
PIDS+=($!)
wait_port 18280; wait_port 18285; wait_port 18284

cat >"$WORK/pool.lua" <<'LUA'
local reqs = {}
init = function(args)
  for line in io.lines(os.getenv("TOKENS")) do
    local token, cred = line:match("(%S+) (%S+)")
    reqs[#reqs + 1] = wrk.format("GET", os.getenv("BENCH_PATH"),
      {["Authorization"] = "Bearer " .. token, ["X-Paragon-Credential"] = cred})
  end
  i = math.random(#reqs)
end
request = function()
  i = (i % #reqs) + 1
  return reqs[i]
end
LUA
export TOKENS="$WORK/credgate/tokens.txt" BENCH_PATH="$PROXY_PATH"
mints() { curl -s http://127.0.0.1:19284/metrics | awk '/^credgate_token_mints_total/ {printf "%d", $NF}'; }
log "warming up: every member's token signed"
wrk -t1 -c8 -d5s -s "$WORK/pool.lua" http://127.0.0.1:18284 >/dev/null
log "warm-up signed $(mints) tokens; ${INTERVALS} spans of 10 s follow"
printf '| after warm-up | req/s | p50 | p99 | max | tokens signed |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n'
for i in $(seq 1 "$INTERVALS"); do
  m0=$(mints)
  out=$(wrk -t1 -c64 -d10s --latency -s "$WORK/pool.lua" http://127.0.0.1:18284)
  m1=$(mints)
  printf '| %d–%d s | %s | %s | %s | %s | %d |\n' $(((i - 1) * 10)) $((i * 10)) \
    "$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$out")" "$(awk '$1=="50%" {print $2}' <<<"$out")" \
    "$(awk '$1=="99%" {print $2}' <<<"$out")" "$(awk '$1=="Latency" {print $4; exit}' <<<"$out")" $((m1 - m0))
done
