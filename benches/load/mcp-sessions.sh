#!/usr/bin/env bash
# Opens one MCP session (initialize, 2025-11-25) per member token on a
# credgate listening on 127.0.0.1:PORT, for the first COUNT lines of TOKENS
# ("token credential"), and prints "token session credential" lines, the
# input of mcp-call.lua. Fails if an initialize gives no session.
#
#   benches/load/mcp-sessions.sh PORT TOKENS COUNT > sessions.txt
set -euo pipefail
port=$1 tokens=$2 count=$3
head -n "$count" "$tokens" | while read -r token cred; do
  sid=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$port/mcp" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"wrk","version":"0"}}}' \
    | awk -F': ' 'tolower($1) == "mcp-session-id" {print $2}' | tr -d '\r')
  [ -n "$sid" ] || { echo "initialize on :$port gave no session" >&2; exit 1; }
  echo "$token $sid $cred"
done
