#!/usr/bin/env python3
"""What MLflow logging adds to a suite run: `ragprobe run` on the reference suite without
and with `--mlflow` against a real `mlflow server` (SQLite, artifacts proxied, one worker)
started here on a free loopback port, a few times each; then a republish of the same
folder (`export --mlflow`, which finds everything there and adds nothing).

    cargo build --release && python3 bench/mlflow.py [runs-per-case ...]

Needs MLflow in .venv (bash .ci/run installs it).
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "ragprobe")
MLFLOW = os.path.join(ROOT, ".venv", "bin", "mlflow")
SUITE = os.path.join(ROOT, "suites", "databricks", "before-fix.yaml")
REPEATS = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(args):
    start = time.perf_counter()
    child = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - start, child.stderr


def main():
    for path, hint in [(BINARY, "cargo build --release"), (MLFLOW, "bash .ci/run")]:
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: {hint}")
    sizes = [int(a) for a in sys.argv[1:]] or [20, 100]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
             "--artifacts-destination", f"{tmp}/artifacts", "--serve-artifacts"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.time() + 120
            while True:
                try:
                    urllib.request.urlopen(f"{base}/health", timeout=1)
                    break
                except OSError:
                    if time.time() > deadline:
                        sys.exit("MLflow did not start within 120 s")
                    time.sleep(0.25)
            print(f"mlflow server {base} (SQLite, one worker); best of {REPEATS}")
            print(f"{'runs':>6} {'no MLflow s':>12} {'--mlflow s':>11} {'added s':>8} "
                  f"{'republish s':>12}  published")
            for per_case in sizes:
                plain, logged, again, line = [], [], [], ""
                for i in range(REPEATS):
                    out = os.path.join(tmp, f"r{per_case}-{i}")
                    common = [BINARY, "run", SUITE, "--runs", str(per_case), "--progress", "none"]
                    plain.append(timed([*common, "--out", out + "-plain"])[0])
                    wall, stderr = timed([*common, "--out", out, "--mlflow", base,
                                          "--experiment", f"bench-{per_case}"])
                    logged.append(wall)
                    line = next((l for l in stderr.splitlines() if "traces linked" in l), stderr)
                    again.append(timed([BINARY, "export", out, "--mlflow", base])[0])
                published = line.split(": ", 2)[-1] if ": " in line else line
                print(f"{per_case * 2:>6} {min(plain):>12.2f} {min(logged):>11.2f} "
                      f"{min(logged) - min(plain):>8.2f} {min(again):>12.2f}  {published}")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
