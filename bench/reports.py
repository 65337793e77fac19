#!/usr/bin/env python3
"""Report sizes and aggregation time on the reference suite (2 cases).

For each size, runs `ragprobe run --timings` into a fresh folder and prints the stage
times (runs, results.parquet, polars aggregation, report rendering) and the size of each
output file.

    cargo build --release && python3 bench/reports.py [runs-per-case ...]

The default sizes are 10,000 and 1,000,000 runs; the largest writes about 3 GB of
runs.jsonl to a temporary folder.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# RAGPROBE_BIN measures another build (an older commit, say) with the same script.
BINARY = os.environ.get("RAGPROBE_BIN") or os.path.join(ROOT, "target", "release", "ragprobe")
SUITE = os.path.join(ROOT, "suites", "databricks", "before-fix.yaml")
FILES = ["runs.jsonl", "results.parquet", "report.html", "summary.md", "junit.xml"]


def main() -> None:
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release")
    sizes = [int(a) for a in sys.argv[1:]] or [5_000, 500_000]
    for per_case in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "report")
            start = time.perf_counter()
            done = subprocess.run(
                [BINARY, "run", SUITE, "--runs", str(per_case), "--quiet", "--progress",
                 "none", "--timings", "--out", out],
                capture_output=True, text=True,
            )
            wall = time.perf_counter() - start
            print(f"== {per_case * 2:,} runs: {wall:.2f} s wall, exit {done.returncode}")
            for line in done.stderr.splitlines():
                match = re.match(r"timing: (.*): ([0-9.]+) s(?:, peak RSS so far ([0-9.]+) MB)?", line)
                if match:
                    rss = f"   peak RSS {float(match.group(3)):>7.1f} MB" if match.group(3) else ""
                    print(f"   {match.group(1):<52} {float(match.group(2)):>8.3f} s{rss}")
            for name in FILES:
                size = os.path.getsize(os.path.join(out, name))
                print(f"   {name:<52} {size / 1e6:>8.2f} MB")


if __name__ == "__main__":
    main()
