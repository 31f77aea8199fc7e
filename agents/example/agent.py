#!/usr/bin/env python3
"""maestro's example agent: a small HTTP service that behaves like an agent
server for the purpose of deploys, health checks, rollouts and telemetry.

It answers on http://$MAESTRO_AGENT_HOST:$MAESTRO_AGENT_PORT:
  /healthz  200 "ok" (503 when AGENT_HEALTHY=0: a version that never gets healthy)
  /metrics  Prometheus text: agent_requests_total, agent_errors_total,
            agent_request_duration_seconds (histogram), agent_starts_total
  anything else: a JSON answer naming the agent, its version and the node;
            AGENT_ERROR_RATE (0..1) of them fail with 500, each delayed by
            AGENT_LATENCY_MS.
AGENT_METRICS=0 makes /metrics answer 404: a version that reports no metrics.
Each start appends a line to $MAESTRO_AGENT_DATA/starts (the start counter).
Python standard library only.
"""
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AGENT = os.environ.get("MAESTRO_AGENT", "example")
VERSION = os.environ.get("MAESTRO_AGENT_VERSION") or open(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")
).read().strip()
HOST = os.environ.get("MAESTRO_AGENT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MAESTRO_AGENT_PORT", "8080"))
DATA = os.environ.get("MAESTRO_AGENT_DATA", ".")
NODE = os.environ.get("MAESTRO_NODE", socket.gethostname())
ERROR_RATE = min(max(float(os.environ.get("AGENT_ERROR_RATE", "0") or 0), 0.0), 1.0)
LATENCY = max(float(os.environ.get("AGENT_LATENCY_MS", "0") or 0), 0.0) / 1000.0
HEALTHY = os.environ.get("AGENT_HEALTHY", "1") != "0"
METRICS = os.environ.get("AGENT_METRICS", "1") != "0"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

lock = threading.Lock()
requests = 0
errors = 0
counts = [0] * len(BUCKETS)
duration_sum = 0.0
starts = 0


def record_start():
    global starts
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, "starts")
    with open(path, "a") as f:
        f.write("%d %s %d\n" % (int(time.time()), VERSION, os.getpid()))
    with open(path) as f:
        starts = sum(1 for _ in f)


def metrics():
    label = 'version="%s"' % VERSION
    with lock:
        lines = [
            "# HELP agent_requests_total Requests answered.",
            "# TYPE agent_requests_total counter",
            "agent_requests_total{%s} %d" % (label, requests),
            "# HELP agent_errors_total Requests answered with an error.",
            "# TYPE agent_errors_total counter",
            "agent_errors_total{%s} %d" % (label, errors),
            "# HELP agent_request_duration_seconds Time to answer a request.",
            "# TYPE agent_request_duration_seconds histogram",
        ]
        cumulative = 0
        for le, n in zip(BUCKETS, counts):
            cumulative += n
            lines.append('agent_request_duration_seconds_bucket{%s,le="%s"} %d' % (label, le, cumulative))
        lines.append('agent_request_duration_seconds_bucket{%s,le="+Inf"} %d' % (label, requests))
        lines.append("agent_request_duration_seconds_sum{%s} %.6f" % (label, duration_sum))
        lines.append("agent_request_duration_seconds_count{%s} %d" % (label, requests))
        lines.append("# HELP agent_starts_total Times this agent was started on this node.")
        lines.append("# TYPE agent_starts_total counter")
        lines.append("agent_starts_total{%s} %d" % (label, starts))
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, body, kind="text/plain; charset=utf-8"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Agent-Version", VERSION)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        global requests, errors, duration_sum
        if self.path == "/healthz":
            return self.answer(200 if HEALTHY else 503, "ok\n" if HEALTHY else "unhealthy\n")
        if self.path == "/metrics" and not METRICS:
            return self.answer(404, "no metrics\n")
        if self.path == "/metrics":
            return self.answer(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
        started = time.monotonic()
        if LATENCY:
            time.sleep(LATENCY)
        with lock:
            requests += 1
            # Deterministic error injection: exactly ERROR_RATE of the requests fail.
            failed = int(requests * ERROR_RATE) > int((requests - 1) * ERROR_RATE)
            if failed:
                errors += 1
        body = json.dumps({"agent": AGENT, "version": VERSION, "node": NODE, "path": self.path})
        code = 500 if failed else 200
        self.answer(code, body + "\n", "application/json")
        took = time.monotonic() - started
        with lock:
            duration_sum += took
            for i, le in enumerate(BUCKETS):
                if took <= le:
                    counts[i] += 1
                    break

    do_POST = do_GET
    do_HEAD = do_GET


def main():
    record_start()
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    server.daemon_threads = True
    sys.stdout.write("%s %s listening on %s:%d\n" % (AGENT, VERSION, HOST, PORT))
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
