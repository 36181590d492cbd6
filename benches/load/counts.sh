#!/usr/bin/env bash
# Per-request counts, credgate beside nginx and HAProxy with jwt_verify, in
# one run: CPU µs, context switches, system calls and instructions per
# request, and the system calls that make up the count. "The table tells
# where the next microsecond is" (issue 28).
#
#   COUNTS=1 benches/load/run.sh         # at the end of a run; the tables go into BENCHMARKS.md
#   benches/load/counts.sh               # alone: starts everything (run.sh with COUNTS_ONLY=1),
#                                        # prints the tables, writes .bench/run/counts-*.md
#   TLS=1 benches/load/counts.sh         # plain HTTP and TLS both ways; TLS=only: TLS only
#   COUNTS_DURATION=10 CG_SECONDS=10 benches/load/counts.sh   # longer spans
#
# For each proxy (one worker each, the instances run.sh started), under
# the same load, `wrk -t1 -c64` (CONNS) for COUNTS_DURATION seconds (5):
#   - CPU µs per request: utime + stime of the proxy's process(es) from
#     /proc/PID/stat (all threads, also ended ones) across the run, divided
#     by the requests wrk completed;
#   - context switches per request: voluntary_ctxt_switches +
#     nonvoluntary_ctxt_switches summed over /proc/PID/task/*/status,
#     before and after the same run (threads that end in between are lost);
#   - system calls per request: `perf stat -e raw_syscalls:sys_enter -p PID`
#     over a second run of the same load (where perf cannot, the total of
#     the strace run below);
#   - which system calls: `strace -c -f -p PID` over a third, 3 s run
#     (strace slows the process several-fold, so its batching differs: the
#     split is indicative, the perf total is the figure);
#   - instructions per request (user space only): a separate instance of
#     each under `valgrind --tool=callgrind`, warmed, then the counts of a
#     measured span (a callgrind dump before it and one after it, as
#     benches/load/callgrind.sh does) divided by the requests wrk completed
#     in it, at CG_CONNS connections (1: under callgrind a saturated
#     process does extra work per request that a real one does not) for
#     CG_SECONDS seconds (5). nginx runs with `daemon off; master_process
#     off;`, HAProxy in the foreground.
#
# Sourced by run.sh (it uses run.sh's processes, ports and helpers); run
# directly it runs run.sh with COUNTS_ONLY=1.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  COUNTS_ONLY=1 exec "$(dirname "$0")/run.sh" "$@"
fi

# Voluntary and involuntary context switches of every thread of the
# processes in a comma-separated list: "voluntary nonvoluntary".
ctx_switches() {
  local p files=()
  for p in ${1//,/ }; do files+=("/proc/$p/task/"*/status); done
  awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v + 0, n + 0}' "${files[@]}" 2>/dev/null
}

# User and system ticks of the processes in a comma-separated list: "utime stime".
cpu_split() {
  local u=0 s=0 p
  for p in ${1//,/ }; do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + a)); s=$((s + b))
  done
  echo "$u $s"
}

wrk_requests() { awk '/requests in/ {print $1}' <<<"$1"; }

# perf counts the system calls of another process here (a VM often has no
# hardware counters, but tracepoints work).
perf_syscalls_ok() {
  command -v perf >/dev/null && perf stat -x, -e raw_syscalls:sys_enter -- true >/dev/null 2>&1
}

# count_load NAME PIDS URL [wrk args...]: CPU, context switches and system
# calls per request of the proxy at PIDS under wrk -c$CONNS; results in CNT.
count_load() {
  local name=$1 pids=$2 url=$3; shift 3
  local hz cpu0 cpu1 ctx0 ctx1 out reqs f
  hz=$(getconf CLK_TCK)
  wrk -t1 -c"$CONNS" -d1s "$@" "$url" >/dev/null 2>&1 || true
  cpu0=$(cpu_split "$pids"); ctx0=$(ctx_switches "$pids")
  out=$(wrk -t1 -c"$CONNS" -d"${COUNTS_DURATION}s" "$@" "$url")
  cpu1=$(cpu_split "$pids"); ctx1=$(ctx_switches "$pids")
  reqs=$(wrk_requests "$out")
  CNT[$name.reqs]=$reqs
  CNT[$name.rps]=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  CNT[$name.cpu]=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$hz" -v n="$reqs" 'BEGIN {
    split(a, x, " "); split(b, y, " "); u = (y[1] - x[1]) / hz * 1e6 / n; s = (y[2] - x[2]) / hz * 1e6 / n
    printf "%.1f %.1f %.1f", u + s, u, s }')
  CNT[$name.ctx]=$(awk -v a="$ctx0" -v b="$ctx1" -v n="$reqs" 'BEGIN {
    split(a, x, " "); split(b, y, " "); v = (y[1] - x[1]) / n; i = (y[2] - x[2]) / n
    printf "%.3f %.3f %.3f", v + i, v, i }')

  f="$COUNTS_DIR/$name.perf"
  if perf_syscalls_ok; then
    out=$(perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$f" -- \
        wrk -t1 -c"$CONNS" -d"${COUNTS_DURATION}s" "$@" "$url")
    CNT[$name.sys]=$(awk -F, -v n="$(wrk_requests "$out")" '/raw_syscalls:sys_enter/ {printf "%.2f", $1 / n}' "$f")
    CNT[$name.sys_how]=perf
  fi

  # Which system calls: strace on every process of the list (-f: all threads).
  local args=() p spid
  for p in ${pids//,/ }; do args+=(-p "$p"); done
  f="$COUNTS_DIR/$name.strace"
  strace -c -f -q -o "$f" "${args[@]}" 2>/dev/null &
  spid=$!
  sleep 1
  out=$(wrk -t1 -c"$CONNS" -d3s "$@" "$url")
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  reqs=$(wrk_requests "$out")
  # strace -c: "% time  seconds  usecs/call  calls  [errors]  syscall";
  # the calls are the fourth field, the name the last.
  CNT[$name.strace]=$(awk -v n="$reqs" '$1 ~ /^[0-9.]+$/ && $NF != "total" {printf "%s %.3f\n", $NF, $4 / n}' "$f" |
    sort -k2,2nr | head -8 | paste -sd' ')
  if [ -z "${CNT[$name.sys]:-}" ]; then
    CNT[$name.sys]=$(awk -v n="$reqs" '$NF == "total" {printf "%.2f", $4 / n}' "$f")
    CNT[$name.sys_how]=strace
  fi
  log "counts $name: ${CNT[$name.rps]} req/s, CPU ${CNT[$name.cpu]} µs/req (total user sys), ctx ${CNT[$name.ctx]}/req, syscalls ${CNT[$name.sys]}/req (${CNT[$name.sys_how]})"
}

# count_instructions NAME VGPID URL [wrk args...]: the process under
# callgrind at VGPID serves URL; instructions per request into CNT.
count_instructions() {
  local name=$1 vg=$2 url=$3; shift 3
  local out reqs total file=""
  wrk -t1 -c"$CG_CONNS" -d3s "$@" "$url" >/dev/null
  callgrind_control --dump=warmup "$vg" >"$COUNTS_DIR/$name.control" 2>&1
  sleep 1
  out=$(wrk -t1 -c"$CG_CONNS" -d"${CG_SECONDS}s" "$@" "$url")
  callgrind_control --dump=measured "$vg" >>"$COUNTS_DIR/$name.control" 2>&1
  for _ in $(seq 1 50); do
    file=$(grep -l '^desc: Trigger: dump measured' "$COUNTS_DIR/$name.callgrind."* 2>/dev/null | head -1 || true)
    [ -n "$file" ] && break
    sleep 0.2
  done
  kill "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  reqs=$(wrk_requests "$out")
  if [ -z "$file" ] || [ -z "$reqs" ] || [ "$reqs" = 0 ]; then
    CNT[$name.ins]="n/a"
    log "callgrind $name: no measured dump or no request ($(tr '\n' ' ' <"$COUNTS_DIR/$name.control"))"
    return
  fi
  total=$(awk '/^summary:/ {print $2}' "$file")
  CNT[$name.ins]=$((total / reqs))
  log "callgrind $name: $total instructions for $reqs requests: ${CNT[$name.ins]} per request ($file)"
}

# Instances under callgrind, one at a time, beside the running ones.
# $1: plain or tls.
instructions_set() {
  local set=$1 vg port scheme=http curl_ca=() token cred
  [ "$set" = tls ] && { scheme=https; curl_ca=(--cacert "$TLS_DIR/ca.pem"); }
  local vgrun=(valgrind --tool=callgrind --quiet)

  # credgate: the run's config on another port (plain 18110, TLS 18111).
  head -n "$CG_TOKENS" "$RUN/credgate/tokens.txt" >"$COUNTS_DIR/tokens.txt"
  if [ "$set" = tls ]; then
    port=18111; cg_tls_config "$port" 19915 "$TLS_DIR/ca.pem" >"$RUN/credgate/cg-$set.toml"
  else
    port=18110
    sed -e "s/127.0.0.1:18084/127.0.0.1:$port/" -e 's/127.0.0.1:19904/127.0.0.1:19913/' \
        "$RUN/credgate/credgate.toml" >"$RUN/credgate/cg-$set.toml"
  fi
  RUST_LOG=warn "${vgrun[@]}" --callgrind-out-file="$COUNTS_DIR/credgate_$set.callgrind.%p" \
      "$CREDGATE" serve --config "$RUN/credgate/cg-$set.toml" --log-format json \
      >"$COUNTS_DIR/credgate_$set.log" 2>&1 &
  vg=$!; PIDS+=("$vg")
  wait_port "$port" 90  # long: valgrind starts slowly
  # Every member once, in turn (under callgrind a first request, with its
  # signature check, list load and mint, takes long).
  while read -r token cred; do
    curl -s -o /dev/null "${curl_ca[@]}" -H "Authorization: Bearer $token" -H "X-Paragon-Credential: $cred" \
        "$scheme://127.0.0.1:$port$PROXY_PATH" || true
  done <"$COUNTS_DIR/tokens.txt"
  TOKENS="$COUNTS_DIR/tokens.txt" count_instructions "credgate_$set" "$vg" "$scheme://127.0.0.1:$port" -s "$RUN/pool.lua"

  # nginx: one process (daemon off, master_process off).
  port=18112; [ "$set" = tls ] && port=18113
  if [ "$set" = tls ]; then
    nginx_tls_config nginx-cg-tls "$port" "$TLS_DIR/ca.pem"
  else
    sed -e "s|$RUN/nginx.pid|$RUN/nginx-cg.pid|" -e "s/127.0.0.1:18081 reuseport/127.0.0.1:$port reuseport/" "$RUN/nginx.conf"
  fi | sed -e 's/^daemon on;/daemon off;\nmaster_process off;/' >"$RUN/nginx-cg-$set.conf"
  "${vgrun[@]}" --callgrind-out-file="$COUNTS_DIR/nginx_$set.callgrind.%p" \
      nginx -c "$RUN/nginx-cg-$set.conf" -p "$RUN/" >"$COUNTS_DIR/nginx_$set.log" 2>&1 &
  vg=$!; PIDS+=("$vg")
  wait_port "$port" 90  # long: valgrind starts slowly
  count_instructions "nginx_$set" "$vg" "$scheme://127.0.0.1:$port/"

  # HAProxy with jwt_verify, in the foreground.
  if [ "$set" = tls ]; then
    port=18115; haproxy_jwt_tls_config "$port" "$TLS_DIR/ca.pem" >"$RUN/haproxy-cg-$set.cfg"
  else
    port=18114; sed -e "s/127.0.0.1:18086/127.0.0.1:$port/" "$RUN/haproxy-jwt.cfg" >"$RUN/haproxy-cg-$set.cfg"
  fi
  "${vgrun[@]}" --callgrind-out-file="$COUNTS_DIR/haproxy_jwt_$set.callgrind.%p" \
      haproxy -db -f "$RUN/haproxy-cg-$set.cfg" >"$COUNTS_DIR/haproxy_jwt_$set.log" 2>&1 &
  vg=$!; PIDS+=("$vg")
  wait_port "$port" 90  # long: valgrind starts slowly
  count_instructions "haproxy_jwt_$set" "$vg" "$scheme://127.0.0.1:$port/" -H "Authorization: Bearer $HS_TOKEN"
}

# The Markdown tables of one set, into $COUNTS_DIR/counts-$1.md.
counts_table() {
  local set=$1 title=$2 out="$RUN/counts-$1.md"
  local c="credgate_$set" n="nginx_$set" h="haproxy_jwt_$set"
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
  first() { echo "${1%% *}"; }
  parts() { awk -v v="$1" 'BEGIN { split(v, x, " "); printf "%s (%s + %s)", x[1], x[2], x[3] }'; }
  {
    echo "### $title"
    echo
    echo "One worker each, \`wrk -t1 -c$CONNS -d${COUNTS_DURATION}s\` per figure (instructions: \`-c$CG_CONNS -d${CG_SECONDS}s\` under callgrind); see \`benches/load/counts.sh\` for the method."
    echo
    echo "| per request | credgate | nginx | HAProxy-JWT | credgate ÷ nginx | credgate ÷ HAProxy-JWT |"
    echo "|---|---|---|---|---|---|"
    echo "| req/s during the count | ${CNT[$c.rps]} | ${CNT[$n.rps]} | ${CNT[$h.rps]} | $(ratio "${CNT[$c.rps]}" "${CNT[$n.rps]}") | $(ratio "${CNT[$c.rps]}" "${CNT[$h.rps]}") |"
    echo "| CPU µs (user + system) | $(parts "${CNT[$c.cpu]}") | $(parts "${CNT[$n.cpu]}") | $(parts "${CNT[$h.cpu]}") | $(ratio "$(first "${CNT[$c.cpu]}")" "$(first "${CNT[$n.cpu]}")") | $(ratio "$(first "${CNT[$c.cpu]}")" "$(first "${CNT[$h.cpu]}")") |"
    echo "| context switches (voluntary + involuntary) | $(parts "${CNT[$c.ctx]}") | $(parts "${CNT[$n.ctx]}") | $(parts "${CNT[$h.ctx]}") | $(ratio "$(first "${CNT[$c.ctx]}")" "$(first "${CNT[$n.ctx]}")") | $(ratio "$(first "${CNT[$c.ctx]}")" "$(first "${CNT[$h.ctx]}")") |"
    local how="\`strace -c -f\`"
    [ "${CNT[$c.sys_how]}" = perf ] && how="perf \`raw_syscalls:sys_enter\`"
    echo "| system calls ($how) | ${CNT[$c.sys]} | ${CNT[$n.sys]} | ${CNT[$h.sys]} | $(ratio "${CNT[$c.sys]}" "${CNT[$n.sys]}") | $(ratio "${CNT[$c.sys]}" "${CNT[$h.sys]}") |"
    echo "| instructions, user space (callgrind) | ${CNT[$c.ins]} | ${CNT[$n.ins]} | ${CNT[$h.ins]} | $(ratio "${CNT[$c.ins]}" "${CNT[$n.ins]}") | $(ratio "${CNT[$c.ins]}" "${CNT[$h.ins]}") |"
    echo
    echo "Which system calls, per request (\`strace -c -f\`, 3 s; strace slows each process, so this split is indicative):"
    echo
    echo "| proxy | calls per request, most first |"
    echo "|---|---|"
    for x in "$c:credgate" "$n:nginx" "$h:HAProxy-JWT"; do
      echo "| ${x#*:} | $(awk '{for (i = 1; i < NF; i += 2) printf "%s`%s` %s", (i > 1 ? ", " : ""), $i, $(i + 1)}' <<<"${CNT[${x%%:*}.strace]}") |"
    done
    echo
  } >"$out"
  COUNTS_FILES+=("$out")
  cat "$out" >&2
}

run_counts() {
  COUNTS_DURATION=${COUNTS_DURATION:-5}
  CG_SECONDS=${CG_SECONDS:-5}
  CG_CONNS=${CG_CONNS:-1}
  CG_TOKENS=${CG_TOKENS:-50}
  COUNTS_DIR="$RUN/counts"
  rm -rf "$COUNTS_DIR"; mkdir -p "$COUNTS_DIR"
  declare -gA CNT=()
  declare -ga COUNTS_FILES=()
  local need=()
  command -v strace >/dev/null || need+=(strace)
  command -v valgrind >/dev/null || need+=(valgrind)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} from Debian's packages"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  fi
  perf_syscalls_ok || log "perf cannot count system calls here: the strace totals stand in"
  export BENCH_PATH="$PROXY_PATH"
  if [ "$TLS" != only ]; then
    log "per-request counts, plain HTTP"
    TOKENS="$RUN/credgate/tokens.txt" count_load credgate_plain "$CREDGATE_PID" http://127.0.0.1:18084 -s "$RUN/pool.lua"
    count_load nginx_plain "$NGINX_PID" http://127.0.0.1:18081/
    count_load haproxy_jwt_plain "$HAPROXY_JWT_PID" http://127.0.0.1:18086/ -H "Authorization: Bearer $HS_TOKEN"
    instructions_set plain
    counts_table plain "Per request, plain HTTP"
  fi
  if [ "$TLS" != 0 ]; then
    log "per-request counts, TLS both ways"
    TOKENS="$RUN/credgate/tokens.txt" count_load credgate_tls "$CREDGATE_TLS_PID" https://127.0.0.1:18101 -s "$RUN/pool.lua"
    count_load nginx_tls "$NGINX_TLS_PID" https://127.0.0.1:18102/
    count_load haproxy_jwt_tls "$HAPROXY_JWT_TLS_PID" https://127.0.0.1:18103/ -H "Authorization: Bearer $HS_TOKEN"
    instructions_set tls
    counts_table tls "Per request, TLS both ways"
  fi
}
