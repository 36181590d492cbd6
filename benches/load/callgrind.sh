#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (repeatable, unlike
# timings on a shared machine): credgate at one worker in front of the
# bench upstream, RS256 members naming their own credential on the Proxy
# API route, warm caches. The warm-up is dumped apart; the measured span is
# the next dump; the request count is read from credgate's own
# `credgate_requests_total` over the same span.
#
#   benches/load/callgrind.sh                      # builds release binaries
#   CREDGATE=path BENCHKIT=path benches/load/callgrind.sh
#   REQUESTS_SECONDS=20 benches/load/callgrind.sh  # longer measured span
#   RULES=benches/load/rules20.toml benches/load/callgrind.sh  # with those
#                               # policy rules and [limits] on (none refuses)
#   MCP=1 benches/load/callgrind.sh   # an agent's tools/call through /mcp
#                               # (one session per member) instead of a Proxy API
#                               # request; requests counted by wrk
#
# Prints `instructions_per_request N` and leaves the callgrind file in
# .bench/callgrind/ for `callgrind_annotate --inclusive=yes`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK="$ROOT/.bench/callgrind"
SECONDS_MEASURED=${REQUESTS_SECONDS:-10}
# One connection by default: each request is served end to end with no
# queue behind it. Under callgrind the process runs ~50x slower, and a
# saturated one does extra work per request (timers re-armed, partial
# reads, wake-ups) that a real one at the same load does not.
CONNS=${CONNS:-1}
PROJECT=be4c0000-0000-4000-8000-000000000000
PROXY_PATH="/projects/$PROJECT/sdk/proxy/salesforce/bench"
LOG_PREFIX=callgrind
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
need_tools wrk valgrind curl
given_or_built
rm -rf "$WORK"; mkdir -p "$WORK"

# A 1-hour TTL: under callgrind credgate runs ~50x slower, so the minutes
# of warm-up would bring the measured span into the minted tokens'
# re-signing window (from 80 % of the default 5-minute TTL's reuse
# period), and RSA signatures would be counted as per-request work.
bench_setup 18180 19984 1h --users 50 --members 1 ${RULES:+--rules "$RULES" --limits}
if [ "${MCP:-0}" = 1 ]; then printf '\n[mcp]\nenabled = true\n' >>"$WORK/credgate/credgate.toml"; fi
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" \
    "$CREDGATE" serve --config "$WORK/credgate/credgate.toml" --log-format json \
    >"$WORK/credgate.log" 2>&1 &
VG_PID=$!; PIDS+=("$VG_PID")
wait_port 18184

served() {
  curl -s "http://127.0.0.1:19984/metrics" |
    awk '/^credgate_requests_total\{/ && /decision="allowed"/ && /product="proxy"/ {s += $NF} END {print s + 0}'
}
export TOKENS="$WORK/credgate/tokens.txt" BENCH_PATH="$PROXY_PATH"
log "warming up (every member's token verified, list loaded, token minted)"
# Each token once, in turn: under callgrind a first request (a signature
# check, a list load, two RSA signatures) takes long, and a timed warm-up
# would leave some for the measured span.
while read -r token cred; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
    -H "X-Paragon-Credential: $cred" "http://127.0.0.1:18184$PROXY_PATH")
  [ "$code" = 200 ] || { log "warm-up request answered $code"; exit 1; }
done <"$TOKENS"
LOAD="$ROOT/benches/load/pool.lua"
if [ "${MCP:-0}" = 1 ]; then
  # One MCP session per member, then tools/call naming the member's own
  # account, as run.sh's agents rows do.
  "$ROOT/benches/load/mcp-sessions.sh" 18184 "$TOKENS" "$(wc -l <"$TOKENS")" >"$WORK/sessions.txt"
  export SESSIONS="$WORK/sessions.txt"
  LOAD="$ROOT/benches/load/mcp-call.lua"
  # Each session's first call once, in turn (its tool listing fetched and
  # its token minted), for the same reason as the warm-up above.
  while read -r token sid cred; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:18184/mcp" \
      -H "Authorization: Bearer $token" -H "Mcp-Session-Id: $sid" \
      -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
      -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"SALESFORCE_SEARCH_RECORDS","arguments":{"credential":"'"$cred"'","query":"x"}}}')
    [ "$code" = 200 ] || { log "MCP warm-up call answered $code"; exit 1; }
  done <"$SESSIONS"
fi
wrk -t1 -c"$CONNS" -d3s -s "$LOAD" http://127.0.0.1:18184 >/dev/null
# A dump writes the counts since the last one and starts them afresh: the
# warm-up goes to its own file, the measured span to the next.
callgrind_control --dump=warmup "$VG_PID" >"$WORK/control.log" 2>&1
sleep 1
before=$(served)
log "measuring for ${SECONDS_MEASURED}s"
wrk -t1 -c"$CONNS" -d"${SECONDS_MEASURED}s" -s "$LOAD" http://127.0.0.1:18184 >"$WORK/wrk.txt"
after=$(served)
callgrind_control --dump=measured "$VG_PID" >>"$WORK/control.log" 2>&1
for _ in $(seq 1 50); do
  file=$(grep -l '^desc: Trigger: dump measured' "$WORK"/callgrind.out.* 2>/dev/null | head -1 || true)
  [ -n "$file" ] && break
  sleep 0.2
done
[ -n "$file" ] || { log "no measured dump: $(cat "$WORK/control.log")"; exit 1; }
total=$(awk '/^summary:/ {print $2}' "$file")
requests=$((after - before))
if [ "${MCP:-0}" = 1 ]; then
  # A tool call counts as its internal ActionKit request: wrk's count.
  requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
fi
log "requests served while counting: $requests; instructions: $total; file: $file"
echo "instructions_per_request $((total / requests))"
