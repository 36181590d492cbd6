#!/usr/bin/env python3
"""A minimal AuthZEN 1.0 decision point for the load harness (run.sh's
`credgate_pdp` row): permits a member an account exactly when the
account's externalId is the member's principal, which is what the owner
label grants in the plain row. credgate caches its answers for the run, so
this is asked during warm-up only; its speed is not measured.

    benches/load/pdp.py PORT
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def decide(q):
    subject, resource = q.get("subject") or {}, q.get("resource") or {}
    props = resource.get("properties") or {}
    return {"decision": bool(subject.get("id")) and props.get("externalId") == subject.get("id")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        if self.path.endswith("/access/v1/evaluation"):
            answer = decide(body)
        elif self.path.endswith("/access/v1/evaluations"):
            defaults = {k: body[k] for k in ("subject", "action", "resource") if k in body}
            answer = {"evaluations": [decide({**defaults, **e}) for e in body.get("evaluations", [])]}
        else:
            self.send_error(404)
            return
        out = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
