#!/usr/bin/env python3
"""Per-phase account of one proxied request, from a callgrind profile.

    benches/load/account.py CALLGRIND_OUT REQUESTS

CALLGRIND_OUT is the measured dump `benches/load/callgrind.sh` leaves in
.bench/callgrind/ and REQUESTS the count it logged ("requests served while
counting"). Prints a Markdown table of inclusive instructions per request:
the client connection task (credgate's request future phase by phase, then
hyper's server side), the upstream connection task, and the runtime and
the rest, so the rows sum to the measured total. A phase the compiler
inlined into its caller shows as part of "the rest of the request future".
"""

import re
import subprocess
import sys


def inclusive(path):
    """Function name -> the largest inclusive count callgrind_annotate gives
    it (one name may appear once per source file it was inlined from)."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    counts = {}
    total = None
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \([^)]*\)\s+(.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        rest = m.group(2)
        if rest.startswith("PROGRAM TOTALS"):
            total = n
            continue
        name = rest.split(":", 1)[1] if ":" in rest else rest
        name = re.sub(r" \[[^\]]*\]$", "", name)
        name = re.sub(r" \(\d[\d,]*x\)$", "", name)
        counts[name] = max(counts.get(name, 0), n)
    return total, counts


PHASES = [
    ("hygiene (§8 request checks)", "credgate::gateway::hygiene::hygiene"),
    ("authenticate (bearer, verified-token cache, limits)", "credgate::gateway::pipeline::authenticate::{{closure}}"),
    ("classify (route and project)", "credgate::gateway::route::classify"),
    ("check_operation", "credgate::gateway::route::check_operation"),
    ("proxy_target", "credgate::gateway::route::proxy_target"),
    ("exchange set-up (permit, directory handle)", "credgate::gateway::exchange::Exchange::new"),
    ("read_inputs (body framing)", "credgate::gateway::inputs::read_inputs::{{closure}}"),
    ("parse_inputs (credential header, body fields)", "credgate::gateway::inputs::parse_inputs"),
    ("load_list (credential-list memo)", "credgate::gateway::list::load_list::{{closure}}"),
    ("authorize (decide, reason, rules)", "credgate::gateway::pipeline::authorize::{{closure}}"),
    ("rewrite (header scrub, forwarding headers, minted token)", "credgate::gateway::rewrite::rewrite"),
    ("forward (hand-off to the upstream connection, timeout)", "credgate::gateway::respond::forward::{{closure}}"),
    ("respond (response headers, narrowing)", "credgate::gateway::respond::respond::{{closure}}"),
    ("audit record (serialise, write, flush)", "credgate::audit::AuditLog::write"),
]

CLIENT_TASK = "credgate::server::run_http::{{closure}}"
HANDLE = "credgate::gateway::run::{{closure}}"
UPSTREAM_TASK = "credgate::gateway::forward::handshake::{{closure}}::{{closure}}"


def main():
    path, requests = sys.argv[1], int(sys.argv[2])
    total, c = inclusive(path)
    per = lambda n: n / requests
    rows = []
    handle = c.get(HANDLE, 0)
    parts = 0
    for label, name in PHASES:
        n = c.get(name, 0)
        parts += n
        rows.append((f"&nbsp;&nbsp;{label}", per(n)))
    rows.append(("&nbsp;&nbsp;the rest of the request future (request id, metrics, the audit record's fields, inlined phases, drops)", per(handle - parts)))
    client = c.get(CLIENT_TASK, 0)
    upstream = c.get(UPSTREAM_TASK, 0)
    print("| | instructions per request |")
    print("| --- | ---: |")
    print(f"| client connection task | {per(client):,.0f} |")
    print(f"| of which credgate's request future (`gateway::handle`) | {per(handle):,.0f} |")
    for label, v in rows:
        print(f"| {label} | {v:,.0f} |")
    print(f"| of which hyper's server side (request parse, header timer, response write, flush) | {per(client - handle):,.0f} |")
    print(f"| upstream connection task (hyper's client dispatch, request write, response parse) | {per(upstream):,.0f} |")
    print(f"| runtime and the rest (scheduler, wake-ups between the two tasks, epoll, syscalls' user side) | {per(total - client - upstream):,.0f} |")
    print(f"| **total** ({requests:,} requests) | **{per(total):,.0f}** |")


if __name__ == "__main__":
    main()
