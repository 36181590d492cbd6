#!/usr/bin/env bash
# Where the tail goes on a busy machine (issue 28): credgate beside nginx,
# one worker each, quiet and with a competing load, interleaved rounds. For
# each round it reads, beside wrk's own latency percentiles:
#   - the scheduler: /proc/PID/task/*/schedstat before and after (time on a
#     CPU, time runnable but waiting for one, and time slices), summed over
#     the proxy's threads: "waiting for a CPU" per request and as a share
#     of the round;
#   - credgate's own phases, from its Prometheus histograms before and after
#     the round: `credgate_request_duration_seconds` (from the request's
#     head read to the answer's head, inside credgate) and
#     `credgate_upstream_duration_seconds` (the upstream's part of it);
#     what wrk sees beyond `request_duration` was spent outside credgate's
#     request future: in socket queues, in the runtime before the
#     connection's task ran, or in wrk itself;
#   - Little's law: with CONNS connections each waiting for its answer, the
#     mean latency is CONNS / throughput; the measured mean against it says
#     whether the tail is the closed loop's queue or something else.
#
#   benches/load/tail.sh                       # starts everything (run.sh with TAIL_ONLY=1)
#   TAIL_ROUNDS=3 TAIL_DURATION=8 benches/load/tail.sh
#   CREDGATE=bin BENCHKIT=bin benches/load/tail.sh
#
# The competing load is what BUSY=1 uses: `wrk -t1 -c16` against the
# upstream's own port for the whole measured span. Writes
# .bench/run/tail.md (and prints it).
#
# Sourced by run.sh (its processes, ports and helpers); run directly it
# runs run.sh with TAIL_ONLY=1.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  TAIL_ONLY=1 SKIP_SCALE=1 exec "$(dirname "$0")/run.sh" "$@"
fi

# "run_ns wait_ns slices" summed over every thread of a process.
schedstat() {
  cat "/proc/$1/task/"*/schedstat 2>/dev/null | awk '{r += $1; w += $2; s += $3} END {printf "%.0f %.0f %.0f\n", r, w, s}'
}

# The cumulative buckets of one credgate histogram (summed over labels):
# "le count" lines, le in seconds.
histogram() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v name="$2" '
    index($0, name "_bucket{") == 1 {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      c[le] += $NF; if (!(le in seen)) { seen[le] = 1; order[++n] = le }
    }
    END { for (i = 1; i <= n; i++) print order[i], c[order[i]] }'
}

# "sum count" of one credgate histogram (summed over labels).
hsum() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v name="$2" '
    index($0, name "_sum") == 1 { s += $NF } index($0, name "_count") == 1 { c += $NF }
    END { printf "%.9f %d\n", s, c }'
}

# The mean, in µs, of what a histogram gained between two "sum count" reads.
hmean() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
    n = y[2] - x[2]; if (n > 0) printf "%.0f", (y[1] - x[1]) / n * 1e6; else print "-" }'
}

# The 50th and 99th percentiles of the difference of two cumulative
# histograms, as "le of the bucket holding it" in ms: "p50 p99 count".
histogram_delta() {
  awk 'NR == FNR { b[$1] = $2; next }
    { le[++n] = $1; d[n] = $2 - b[$1] }
    END {
      total = d[n]; p50 = ""; p99 = ""
      for (i = 1; i <= n; i++) {
        v = (le[i] == "+Inf") ? "inf" : sprintf("%g", le[i] * 1000)
        if (p50 == "" && d[i] >= 0.50 * total) p50 = v
        if (p99 == "" && d[i] >= 0.99 * total) p99 = v
      }
      printf "%s %s %d\n", p50, p99, total
    }' "$1" "$2"
}

# tail_round NAME MODE PID URL [wrk args...]: one measured round.
tail_round() {
  local name=$1 mode=$2 pid=$3 url=$4; shift 4
  local busy="" s0 s1 out sum_in0="" sum_up0=""
  wrk -t1 -c"$CONNS" -d2s "$@" "$url" >/dev/null 2>&1 || true
  if [ "$mode" = busy ]; then
    wrk -t1 -c16 -d"$((TAIL_DURATION + 2))s" http://127.0.0.1:18080/ >/dev/null 2>&1 &
    busy=$!
    sleep 1
  fi
  if [ "$name" = credgate ]; then
    histogram 19904 credgate_request_duration_seconds >"$TAIL_DIR/req0"
    histogram 19904 credgate_upstream_duration_seconds >"$TAIL_DIR/up0"
    sum_in0=$(hsum 19904 credgate_request_duration_seconds)
    sum_up0=$(hsum 19904 credgate_upstream_duration_seconds)
  fi
  s0=$(schedstat "$pid")
  out=$(wrk -t1 -c"$CONNS" -d"${TAIL_DURATION}s" --latency "$@" "$url")
  s1=$(schedstat "$pid")
  local inside="- - 0" upstream="- - 0" mean_in="-" mean_up="-"
  if [ "$name" = credgate ]; then
    histogram 19904 credgate_request_duration_seconds >"$TAIL_DIR/req1"
    histogram 19904 credgate_upstream_duration_seconds >"$TAIL_DIR/up1"
    inside=$(histogram_delta "$TAIL_DIR/req0" "$TAIL_DIR/req1")
    upstream=$(histogram_delta "$TAIL_DIR/up0" "$TAIL_DIR/up1")
    mean_in=$(hmean "$sum_in0" "$(hsum 19904 credgate_request_duration_seconds)")
    mean_up=$(hmean "$sum_up0" "$(hsum 19904 credgate_upstream_duration_seconds)")
  fi
  if [ -n "$busy" ]; then wait "$busy" || true; fi
  local rps reqs avg p50 p90 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  avg=$(to_us "$(awk '$1 == "Latency" {print $2; exit}' <<<"$out")")
  p50=$(to_us "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p90=$(to_us "$(awk '$1=="90%" {print $2}' <<<"$out")")
  p99=$(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")
  # name mode rps avg p50 p90 p99 little_us run_us/req wait_us/req wait_share slices/req inside(p50 p99 n) upstream(p50 p99 n)
  read -r r0 w0 n0 <<<"$s0"; read -r r1 w1 n1 <<<"$s1"
  awk -v name="$name" -v mode="$mode" -v rps="$rps" -v reqs="$reqs" -v avg="$avg" -v p50="$p50" -v p90="$p90" -v p99="$p99" \
      -v conns="$CONNS" -v dur="$TAIL_DURATION" -v run="$((r1 - r0))" -v wait="$((w1 - w0))" -v sl="$((n1 - n0))" \
      -v inside="$inside" -v upstream="$upstream" -v mean_in="$mean_in" -v mean_up="$mean_up" 'BEGIN {
    printf "%s %s %s %s %s %s %s %.0f %.2f %.2f %.3f %.4f %s %s %s %s\n", name, mode, rps, avg, p50, p90, p99,
      conns / rps * 1e6, run / reqs / 1000, wait / reqs / 1000, wait / (dur * 1e9), sl / reqs, inside, upstream,
      mean_in, mean_up
  }' | tr ' ' '\t' >>"$TAIL_RESULTS"
  log "tail $name $mode: $rps req/s, p99 ${p99} us, waiting for a CPU $(awk -v w="$((w1 - w0))" -v n="$reqs" 'BEGIN {printf "%.2f", w / n / 1000}') us/req, inside credgate (p50 p99 ms, n): $inside"
}

tail_report() {
  local out="$RUN/tail.md"
  {
    echo "Medians of $TAIL_ROUNDS rounds of ${TAIL_DURATION} s, wrk -t1 -c$CONNS, one worker each; \"busy\": a second"
    echo "\`wrk -t1 -c16\` against the upstream's port for the whole round. Scheduler figures from"
    echo "/proc/PID/task/*/schedstat (summed over the proxy's threads); credgate's own phases from"
    echo "its histograms (the bucket holding the percentile, ms; buckets 0.1, 0.25, 0.5, 1, 2.5, 5, 10 ms)."
    echo
    echo "| proxy | load | req/s | mean µs | CONNS/throughput µs | p50 µs | p90 µs | p99 µs | on CPU µs/req | waiting for a CPU µs/req | waiting, share of the round | slices/req | inside credgate: mean µs, p50 / p99 bucket (ms) | of which the upstream part: mean µs, p50 / p99 bucket (ms) |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    awk -F'\t' '
      { key = $1 "\t" $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
        for (i = 3; i <= 12; i++) v[key, i, ++cnt[key, i]] = $i
        for (i = 19; i <= 20; i++) v[key, i, ++cnt[key, i]] = $i
        ins[key] = $13 " / " $14; ups[key] = $16 " / " $17 }
      function median(key, i,    m, a, j, k, t) {
        m = cnt[key, i]; for (j = 1; j <= m; j++) a[j] = v[key, i, j]
        for (j = 1; j <= m; j++) for (k = j + 1; k <= m; k++) if (a[k] + 0 < a[j] + 0) { t = a[j]; a[j] = a[k]; a[k] = t }
        return a[int((m + 1) / 2)]
      }
      END {
        for (x = 1; x <= n; x++) {
          key = order[x]; split(key, kk, "\t")
          printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", kk[1], kk[2],
            median(key, 3), median(key, 4), median(key, 8), median(key, 5), median(key, 6), median(key, 7),
            median(key, 9), median(key, 10), median(key, 11), median(key, 12),
            (kk[1] == "credgate" ? median(key, 19) ", " ins[key] : "—"), (kk[1] == "credgate" ? median(key, 20) ", " ups[key] : "—")
        }
      }' "$TAIL_RESULTS"
  } >"$out"
  cat "$out"
}

run_tail() {
  TAIL_ROUNDS=${TAIL_ROUNDS:-3}
  TAIL_DURATION=${TAIL_DURATION:-8}
  TAIL_DIR="$RUN/tail"
  rm -rf "$TAIL_DIR"; mkdir -p "$TAIL_DIR"
  TAIL_RESULTS="$TAIL_DIR/results.tsv"; : >"$TAIL_RESULTS"
  local round mode
  for round in $(seq 1 "$TAIL_ROUNDS"); do
    log "tail round $round of $TAIL_ROUNDS"
    for mode in quiet busy; do
      TOKENS="$RUN/credgate/tokens.txt" tail_round credgate "$mode" "$CREDGATE_PID" http://127.0.0.1:18084 -s "$RUN/pool.lua"
      tail_round nginx "$mode" "$NGINX_PID" http://127.0.0.1:18081/
    done
  done
  tail_report
}
