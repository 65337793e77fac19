#!/usr/bin/env python3
"""Cost of streaming traces: `ragprobe run` on the reference suite with and without
`--otlp` to a local OTLP sink (a loopback HTTP server that accepts and counts requests).

    cargo build --release && python3 bench/otlp.py [runs-per-case]
"""
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "ragprobe")
SUITE = os.path.join(ROOT, "suites", "databricks", "before-fix.yaml")
received = {"requests": 0, "bytes": 0}


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        received["requests"] += 1
        received["bytes"] += length
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def measure(per_case, extra):
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        child = subprocess.Popen(
            [BINARY, "run", SUITE, "--runs", str(per_case), "--progress", "none",
             "--out", os.path.join(tmp, "r"), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        stderr = child.stderr.read()
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stderr.strip()


def main():
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release")
    per_case = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    print(f"{per_case * 2:,} runs of the reference suite")
    print(f"{'':<28} {'wall s':>7} {'cpu s':>7} {'peak RSS MB':>11}")
    for label, extra in [("no export", []), ("--otlp (protobuf)", ["--otlp", url]),
                         ("--otlp (json)", ["--otlp", url, "--otlp-protocol", "http/json"])]:
        received.update(requests=0, bytes=0)
        wall, cpu, rss, stderr = measure(per_case, extra)
        note = f"  {received['requests']} requests, {received['bytes'] / 1e6:.1f} MB" if extra else ""
        print(f"{label:<28} {wall:>7.3f} {cpu:>7.3f} {rss:>11.1f}{note}")
        for line in stderr.splitlines():
            if line.startswith("otlp:"):
                print(f"   {line.split(' to ')[0]}, {line.split(', ', 1)[1]}")
    server.shutdown()


if __name__ == "__main__":
    main()
