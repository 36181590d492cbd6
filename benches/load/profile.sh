#!/usr/bin/env bash
# Where credgate's time goes under load, as opposed to its instructions
# (callgrind.sh): `perf record` of credgate at one worker in front of the
# bench upstream, 1,000 rotating members on the Proxy API route (as in
# run.sh), `wrk -t1 -c64` for the span sampled. Kernel time, cache misses
# and atomics show here and not in an instruction count.
#
#   benches/load/profile.sh                     # builds release binaries
#   CREDGATE=path BENCHKIT=path benches/load/profile.sh
#   SECONDS_SAMPLED=20 benches/load/profile.sh
#
# Prints wrk's summary, credgate's CPU time over the span (perf's sampling
# included) and the shares by binary (kernel, credgate, libc) and by
# symbol; leaves
# .bench/profile/perf.data for `perf report -i`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK="$ROOT/.bench/profile"
SAMPLED=${SECONDS_SAMPLED:-10}
PROJECT=be4c0000-0000-4000-8000-000000000000
LOG_PREFIX=profile
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
need_tools wrk curl
command -v perf >/dev/null || { log "perf is needed (Debian: linux-perf)"; exit 1; }
given_or_built
rm -rf "$WORK"; mkdir -p "$WORK"

bench_setup 18180 19984 5m --users 100 --members 10 --churn-tokens 10000
"$CREDGATE" serve --config "$WORK/credgate/credgate.toml" --log-format json \
    >"$WORK/credgate.log" 2>&1 &
CG=$!; PIDS+=("$CG")
wait_port 18184
export TOKENS="$WORK/credgate/tokens.txt" BENCH_PATH="/projects/$PROJECT/sdk/proxy/salesforce/bench"
log "warming up (every member's token verified, list loaded, token minted)"
wrk -t1 -c8 -d8s -s "$ROOT/benches/load/pool.lua" http://127.0.0.1:18184 >/dev/null
wrk -t1 -c64 -d4s -s "$ROOT/benches/load/pool.lua" http://127.0.0.1:18184 >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$CG/stat"; }
before=$(cpu_ticks)
perf record -F 2000 -g -o "$WORK/perf.data" -p "$CG" -- sleep "$SAMPLED" >/dev/null 2>&1 &
PERF=$!
wrk -t1 -c64 -d"${SAMPLED}s" --latency -s "$ROOT/benches/load/pool.lua" http://127.0.0.1:18184 |
  tee "$WORK/wrk.txt"
wait "$PERF" || true
after=$(cpu_ticks)
requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
  'BEGIN { printf "credgate CPU per request: %.1f us (%d requests)\n", t / hz * 1e6 / n, n }'
echo "--- by binary"
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
  grep '%' | grep -v '^#' | awk 'NR <= 6'
echo "--- by symbol"
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
  grep '%' | grep -v '^#' | awk 'NR <= 40'
