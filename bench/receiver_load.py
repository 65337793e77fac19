#!/usr/bin/env python3
"""The OTLP receiver under hostile load, on demand (not run by CI): the peak RSS of the
`ragprobe run` process that hosts the receiver (`--receive-otlp` / `receive_otlp:`) while

  1. 128 connections at once each POST a 31 MiB body to /v1/traces (Content-Length
     32505856, the body sent in full in 1 MiB writes), and
  2. 5,000 TCP connections are opened and left idle,

and whether it stayed responsive: a small OTLP/JSON post every half second must get 200
(taken) or 503 (budget spent, retry) within 5 s. Each scenario runs in its own ragprobe
process, so its VmHWM (/proc/PID/status, sampled while the load runs, and the process's
ru_maxrss from wait4 when it ends) is that scenario's peak. The run itself is the reference
suite against a stand-in service in this script that answers every question (in 0.2 s while
the load runs, then at once), so it must end 0 with no run in error: the receiver must never
make runs fail. (The runs' own span wait is short: the service exports nothing.)

    cargo build && python3 bench/receiver_load.py [--bodies 128] [--idle 5000] [--hold 40]

Uses target/debug/ragprobe (or RAGPROBE_BIN). ragprobe gets a soft descriptor limit of 1024
(the usual default; --ragprobe-nofile N); this script raises its own to the hard limit.
"""
import argparse
import http.server
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("RAGPROBE_BIN", os.path.join(ROOT, "target", "debug", "ragprobe"))
SUITE = os.path.join(ROOT, "suites", "databricks", "before-fix.yaml")
CORPUS = os.path.join(ROOT, "suites", "databricks", "corpus.jsonl")
BODY = 32505856  # 31 MiB
SMALL = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{
    "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "probe",
    "kind": 1, "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}).encode()


def head(length):
    return (b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % length)


def status(port, chunks, wait):
    """Sends chunks on a new connection; the reply's status, or what happened instead."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    except OSError as e:
        return f"connect: {e.__class__.__name__}"
    try:
        for c in chunks:
            try:
                s.sendall(c)
            except OSError:
                break
        s.settimeout(wait)
        buf = b""
        try:
            while b"\r\n" not in buf:
                got = s.recv(4096)
                if not got:
                    return "closed" if not buf else buf[:12].decode("latin-1")
                buf += got
        except socket.timeout:
            return "no answer"
        except OSError:
            return "reset"
        m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
        return int(m.group(1)) if m else buf[:12].decode("latin-1")
    finally:
        s.close()


class Service:
    """The chain's service: every answer passes the reference suite's checks."""
    def __init__(self):
        self.delay = 0.2
        docs = [json.loads(line) for line in open(CORPUS)][1:4]
        reply = json.dumps({"answer": "Databases are stored as Delta files.", "documents": docs}).encode()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ask"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Receiving:
    """A `ragprobe run` with the receiver on a free loopback port."""
    def __init__(self, tmp, name, nofile, runs):
        self.service = Service()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        chain = os.path.join(tmp, f"{name}.yaml")
        with open(chain, "w") as f:
            f.write(f"kind: http\nurl: {self.service.url}\nreceive_otlp: 127.0.0.1:{self.port}\n"
                    "span_grace_ms: 200\nlimits: {timeout_ms: 60000, retries: 0}\n")
        self.out = os.path.join(tmp, name)
        self.stderr = tempfile.TemporaryFile()
        self.child = subprocess.Popen(
            ["prlimit", f"--nofile={nofile}:{resource.getrlimit(resource.RLIMIT_NOFILE)[1]}", "--",
             BINARY, "run", SUITE, "--chain", chain, "--runs", str(runs), "-j", "8",
             "--progress", "none", "--out", self.out],
            stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            sys.exit("the receiver did not listen within 30 s")
        self.rss_before = self.status("VmRSS")
        self.timeline = []
        self.hwm = 0
        self.cpu0 = self.cpu()

    def status(self, key):
        try:
            with open(f"/proc/{self.child.pid}/status") as f:
                return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            return -1

    def cpu(self):
        try:
            with open(f"/proc/{self.child.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            return -1

    def sample(self):
        self.hwm = max(self.hwm, self.status("VmHWM"))

    def finish(self):
        """Lets the remaining runs through; exit code, peak RSS (ru_maxrss), errors, closing line."""
        self.sample()
        self.service.delay = 0
        _, code, usage = os.wait4(self.child.pid, 0)
        self.service.close()
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", "replace")
        line = next((l for l in text.splitlines()
                     if l.startswith("otlp receiver:") and "listening" not in l), "")
        errors = lines = 0
        with open(os.path.join(self.out, "runs.jsonl"), "rb") as f:
            for record in f:
                lines += 1
                errors += json.loads(record)["status"] == "error"
        return os.waitstatus_to_exitcode(code), usage.ru_maxrss, lines, errors, line


def watch(rx, busy, period=0.5):
    """Samples VmHWM and posts a small request every `period` while busy() holds."""
    answers, slow, t0 = [], 0, time.time()
    while busy():
        rx.sample()
        started = time.time()
        answers.append(status(rx.port, [head(len(SMALL)) + SMALL], 5))
        slow = max(slow, time.time() - started)
        rx.timeline.append(f"{started - t0:.0f}s:{answers[-1] if isinstance(answers[-1], int) else 'x'}")
        time.sleep(period)
    rx.sample()
    return answers, slow


def report(title, rx, answers, slow, extra):
    code, maxrss, lines, errors, line = rx.finish()
    counts = {a: answers.count(a) for a in sorted(set(answers), key=str)}
    ok = sum(answers.count(a) for a in (200, 503))
    print(f"\n{title}")
    print(f"  ragprobe RSS before the load: {rx.rss_before / 1024:.0f} MiB; peak (VmHWM while loaded): "
          f"{rx.hwm / 1024:.0f} MiB; peak over the whole run (ru_maxrss): {maxrss / 1024:.0f} MiB")
    for text in extra:
        print(f"  {text}")
    print(f"  small posts while loaded: {ok} of {len(answers)} answered 200/503 within 5 s "
          f"{counts}; slowest {slow:.2f} s")
    print(f"  (when, answer; x = no answer in 5 s): {' '.join(rx.timeline)}")
    print(f"  the run: exit {code}, {lines} runs recorded, {errors} in error")
    print(f"  {line}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bodies", type=int, default=128)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=40, help="seconds the idle connections are held")
    parser.add_argument("--ragprobe-nofile", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=4000,
                        help="runs per case: 40 runs/s while loaded (the service answers in 0.2 s, 8 at a time), so the receiver lives about runs/20 s")
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} is missing: cargo build")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 200:
        sys.exit(f"the descriptor limit is {hard}; {args.idle} idle connections need more")
    print(f"{BINARY}; the receiver's process has a soft descriptor limit of {args.ragprobe_nofile}")
    with tempfile.TemporaryDirectory() as tmp:
        # 1. many concurrent 31 MiB bodies
        rx = Receiving(tmp, "bodies", args.ragprobe_nofile, args.runs)
        results = []

        def send():
            results.append(status(rx.port, [head(BODY)] + [b"x" * (1 << 20)] * 31, 300))

        threads = [threading.Thread(target=send, daemon=True) for _ in range(args.bodies)]
        started = time.time()
        for t in threads:
            t.start()
        answers, slow = watch(rx, lambda: any(t.is_alive() for t in threads))
        took = time.time() - started
        counts = {a: results.count(a) for a in sorted(set(results), key=str)}
        report(f"{args.bodies} concurrent POSTs of a 31 MiB body", rx, answers, slow,
               [f"the {args.bodies} bodies were answered {counts} in {took:.1f} s"])

        # 2. many idle connections
        rx = Receiving(tmp, "idle", args.ragprobe_nofile, args.runs)
        sockets = []
        for _ in range(args.idle):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", rx.port))
            except BlockingIOError:
                pass
            sockets.append(s)
        cpu0, t0 = rx.cpu(), time.time()
        answers, slow = watch(rx, lambda: time.time() - t0 < args.hold, period=1.0)
        cpu = (rx.cpu() - cpu0) / (time.time() - t0)
        closed = 0
        for s in sockets:
            try:
                closed += s.recv(1, socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
            s.close()
        report(f"{args.idle} idle connections held {args.hold:.0f} s", rx, answers, slow,
               [f"ragprobe CPU while they were held: {cpu:.2f} cores; "
                f"{closed} of them closed by the receiver by then (idle timeout 30 s)"])


if __name__ == "__main__":
    main()
