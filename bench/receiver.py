#!/usr/bin/env python3
"""Cost of the OTLP receiver: `ragprobe run` of the reference suite on a service, with and
without `--receive-otlp` (the service exporting its spans to it, or not exporting at all).
Prints runs per second, ragprobe's CPU time and peak RSS, and the receiver's summary line.

    cargo build --release && python3 bench/receiver.py [--service langchain|stdlib] [runs-per-case] [concurrency]

`langchain` (default) is examples/langchain/app.py in .venv with the model behind
openai-loopback; `stdlib` is examples/service/rag_service.py.
"""
import json
import http.server
import os
import socket
import threading
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
BINARY = os.path.join(RELEASE, "ragprobe")
LOOPBACK = os.path.join(RELEASE, "openai-loopback")
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
SUITE = os.path.join(ROOT, "suites", "databricks", "before-fix.yaml")


class Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP endpoint that takes every request and keeps nothing."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def announce(command, env=None):
    """Starts a server that prints `listening on URL` first; returns (process, url)."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env)
    line = child.stdout.readline().strip()
    if not line.startswith("listening on "):
        child.kill()
        sys.exit(f"{command[0]} said {line!r}")
    return child, line[len("listening on "):]


def start_service(kind, otlp_endpoint, model_url):
    env = dict(os.environ)
    env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    if kind == "langchain":
        env["OPENAI_BASE_URL"] = model_url
        if otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = otlp_endpoint
        return announce([VENV_PYTHON, os.path.join(ROOT, "examples", "langchain", "app.py"),
                         "--port", "0"], env)
    command = ["python3", os.path.join(ROOT, "examples", "service", "rag_service.py"),
               "--port", "0"]
    if otlp_endpoint:
        command += ["--otlp", otlp_endpoint]
    return announce(command, env)


def chain_file(tmp, kind, url, receive):
    path = os.path.join(tmp, f"chain-{receive is not None}.yaml")
    with open(path, "w") as f:
        if kind == "langchain":
            f.write(f"kind: http\nurl: {url.rstrip('/')}/support\npreset: langserve\n")
        else:
            f.write(f"kind: http\nurl: {url}\n")
        if receive:
            f.write(f"receive_otlp: {receive}\n")
    return path


def measure(chain, per_case, concurrency):
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        child = subprocess.Popen(
            [BINARY, "run", SUITE, "--chain", chain, "--runs", str(per_case),
             "--concurrency", str(concurrency), "--progress", "none",
             "--out", os.path.join(tmp, "r")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        _, _status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        stderr = child.stderr.read()
        waits = []
        with open(os.path.join(tmp, "r", "runs.jsonl")) as f:
            for line in f:
                root = (json.loads(line).get("trace") or {}).get("spans", [{}])[0]
                if "received_wait_ms" in root.get("attributes", {}):
                    waits.append(root["attributes"]["received_wait_ms"])
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stderr, waits


def main():
    args = sys.argv[1:]
    kind = "langchain"
    if args[:1] == ["--service"]:
        kind, args = args[1], args[2:]
    per_case = int(args[0]) if args else 500
    concurrency = int(args[1]) if len(args) > 1 else 16
    needed = [(BINARY, "cargo build --release"), (LOOPBACK, "cargo build --release")]
    if kind == "langchain":
        needed.append((VENV_PYTHON, "bash .ci/run (it installs the example into .venv)"))
    for path, hint in needed:
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: {hint}")
    model, model_url = announce([LOOPBACK, "--addr", "127.0.0.1:0"])
    receive = f"127.0.0.1:{free_port()}"
    endpoint = f"http://{receive}/v1/traces"
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_endpoint = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    plain, plain_url = start_service(kind, None, model_url)
    sunk, sunk_url = start_service(kind, sink_endpoint, model_url)
    traced, traced_url = start_service(kind, endpoint, model_url)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{per_case * 2:,} runs of the reference suite on the {kind} service, "
                  f"concurrency {concurrency}")
            print(f"{'':<40} {'wall s':>7} {'runs/s':>7} {'cpu s':>7} {'peak RSS MB':>11}")
            for label, url, rx in [("no receiver, service not exporting", plain_url, None),
                                   ("no receiver, service exporting to a sink", sunk_url, None),
                                   ("--receive-otlp, service exporting", traced_url, receive)]:
                wall, cpu, rss, stderr, waits = measure(chain_file(tmp, kind, url, rx),
                                                        per_case, concurrency)
                print(f"{label:<40} {wall:>7.2f} {per_case * 2 / wall:>7.1f} {cpu:>7.2f} "
                      f"{rss:>11.1f}")
                for line in stderr.splitlines():
                    if line.startswith("otlp receiver:") and "listening" not in line:
                        print(f"   {line}")
                if waits:
                    waits.sort()
                    print(f"   wait for spans after the reply: median {waits[len(waits) // 2]:.0f} ms,"
                          f" max {waits[-1]:.0f} ms")
    finally:
        sink.shutdown()
        for child in (plain, sunk, traced, model):
            child.kill()


if __name__ == "__main__":
    main()
