#!/usr/bin/env python3
"""A stand-in for Ollama and OpenClaw on one loopback port, for recording the original server.

Standard library only. The Rust replay test (tests/it/compat/standin.rs) serves the same answers,
so both servers meet the same world:

  GET  /api/tags               200 {"models": [{"name": "llama2:latest", ...}]}   (Ollama's health)
  POST /api/generate           200 {"model", "response", "done": true}
  POST /api/chat               200 {"model", "message": {"role", "content"}, "done": true}
  GET  /health                 200 {"status": "ok"}                                (OpenClaw's health)
  POST /api/workflows/execute  202 {"execution_id", "status": "accepted"}; 500 when the posted
                               workflow's "name" is "legacy-rejected"
  GET  /_standin/calls         the bodies posted to /api/workflows/execute since the last DELETE
  DELETE /_standin/calls       forget them

Usage: standin.py --port-file FILE   (binds a free port, writes it to FILE, serves until killed)
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "Options include a blue-green switch and a rolling update; trade-offs are cost and time."
REJECTED_WORKFLOW = "legacy-rejected"

CALLS = []
LOCK = threading.Lock()


class StandIn(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the recorder prints what matters
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def do_GET(self):
        if self.path == "/api/tags":
            self._send(200, {"models": [{"name": "llama2:latest", "model": "llama2:latest"}]})
        elif self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/_standin/calls":
            with LOCK:
                self._send(200, list(CALLS))
        else:
            self._send(404, {"error": "not found"})

    def do_DELETE(self):
        if self.path == "/_standin/calls":
            with LOCK:
                CALLS.clear()
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        body = self._body()
        if self.path == "/api/generate":
            self._send(200, {"model": "llama2", "response": ANSWER, "done": True})
        elif self.path == "/api/chat":
            message = {"role": "assistant", "content": ANSWER}
            self._send(200, {"model": "llama2", "message": message, "done": True})
        elif self.path == "/api/workflows/execute":
            with LOCK:
                CALLS.append(body)
            workflow = body.get("workflow") if isinstance(body, dict) else None
            name = workflow.get("name") if isinstance(workflow, dict) else None
            if name == REJECTED_WORKFLOW:
                self._send(500, {"error": "rejected by the stand-in"})
            else:
                execution_id = body.get("execution_id") if isinstance(body, dict) else None
                self._send(202, {"execution_id": execution_id, "status": "accepted"})
        else:
            self._send(404, {"error": "not found"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), StandIn)
    with open(args.port_file, "w") as f:
        f.write(str(server.server_address[1]))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
