# Shared by run.sh (and counts.sh within it), callgrind.sh and remint.sh
# (sourced): the release binaries given or built, the processes started
# and stopped, ports waited for. Needs ROOT and LOG_PREFIX set by the
# sourcing script.

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }

# Installs from Debian's packages those of the named tools that are missing.
need_tools() {
  local need=() t
  for t in "$@"; do command -v "$t" >/dev/null || need+=("$t"); done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} from Debian's packages"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  fi
}

# CREDGATE and BENCHKIT as given, or built here in release mode.
given_or_built() {
  if [ -z "${CREDGATE:-}" ] || [ -z "${BENCHKIT:-}" ]; then
    log "building credgate and benchkit (release)"
    (cd "$ROOT" && cargo build --release --locked --bin credgate --example benchkit 2>&1 | tail -2 >&2)
    CREDGATE="$ROOT/target/release/credgate"
    BENCHKIT="$ROOT/target/release/examples/benchkit"
  fi
}

# Every process added to PIDS is killed when the script exits, then
# whatever the sourcing script's `cleanup_extra` stops, if it has one.
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
}
trap cleanup EXIT

# wait_port PORT [SECONDS]: waits (60 s unless said) for something to
# listen on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 1 $((${2:-60} * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  log "port $1 did not open"; return 1
}

# bench_setup BASE ADMIN_PORT TOKEN_TTL [prepare args...]: the bench upstream
# on 127.0.0.1:BASE; a credgate config in $WORK/credgate for it (listening on
# BASE+4, admin on ADMIN_PORT, the emulator on BASE+5, `paragon.token_ttl`
# TOKEN_TTL, 10 tokens per member); the emulator started; both waited for.
# Needs WORK, PROJECT, CREDGATE and BENCHKIT.
bench_setup() {
  local base=$1 admin=$2 ttl=$3; shift 3
  BENCH_THREADS=1 "$BENCHKIT" upstream --listen "127.0.0.1:$base" >"$WORK/upstream.log" 2>&1 &
  PIDS+=($!)
  "$BENCHKIT" prepare --dir "$WORK/credgate" --churn-tokens 10 \
      --upstream "http://127.0.0.1:$base" --emulator "http://127.0.0.1:$((base + 5))" \
      --listen "127.0.0.1:$((base + 4))" --admin "127.0.0.1:$admin" --project "$PROJECT" "$@" >/dev/null
  sed -i "s|^signing_key_file = .*|&\ntoken_ttl = \"$ttl\"|" "$WORK/credgate/credgate.toml"
  "$CREDGATE" emulator --listen "127.0.0.1:$((base + 5))" --fixtures "$WORK/credgate/fixtures.json" \
      --public-key "$WORK/credgate/paragon-public.pem" --log-format json >"$WORK/emulator.log" 2>&1 &
  PIDS+=($!)
  wait_port "$base"; wait_port "$((base + 5))"
}
