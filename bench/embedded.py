#!/usr/bin/env python3
"""Wall time, CPU time and peak RSS of `ragprobe run` on the embedded chain.

Runs the reference suite (2 cases) with a growing number of runs per case, each into a
fresh output folder, and prints one row per size. Memory should stay flat as runs grow:
runs stream to runs.jsonl and are aggregated by reading them back one line at a time.

    cargo build --release && python3 bench/embedded.py [runs-per-case ...]
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# RAGPROBE_BIN measures another build (an older commit, say) with the same script.
BINARY = os.environ.get("RAGPROBE_BIN") or os.path.join(ROOT, "target", "release", "ragprobe")
SUITE = os.path.join(ROOT, "suites", "databricks", "before-fix.yaml")


def measure(runs_per_case: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report")
        start = time.perf_counter()
        child = subprocess.Popen(
            [BINARY, "run", SUITE, "--runs", str(runs_per_case), "--quiet",
             "--progress", "none", "--out", out, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # wait4 gives this child's own resource usage, peak RSS included.
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        return {
            "runs": runs_per_case * 2,
            "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024,
            "jsonl_mb": os.path.getsize(os.path.join(out, "runs.jsonl")) / 1e6,
            "exit": os.waitstatus_to_exitcode(status),
        }


def main() -> None:
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release")
    sizes = [int(a) for a in sys.argv[1:]] or [500, 5000, 50000]
    print(f"{'runs':>8}  {'wall s':>7}  {'cpu s':>7}  {'peak RSS MB':>11}  {'runs.jsonl MB':>13}  {'runs/s':>8}  exit")
    for per_case in sizes:
        m = measure(per_case, [])
        print(f"{m['runs']:>8}  {m['wall']:>7.3f}  {m['cpu']:>7.3f}  {m['rss_mb']:>11.1f}  "
              f"{m['jsonl_mb']:>13.1f}  {m['runs'] / m['wall']:>8.0f}  {m['exit']}")


if __name__ == "__main__":
    main()
