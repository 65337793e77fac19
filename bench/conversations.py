#!/usr/bin/env python3
"""Wall time, CPU time and peak RSS of conversation suites on the embedded chain.

Writes a suite of 3-turn conversation cases (the reference chain, the storage question,
"And what does that cost?", "Why?") and runs it with a growing number of runs; for
comparison, the same number of runs of single-question cases (one question per run, a
third of the chain calls). Prints one row per size: runs, turns asked, wall and CPU
seconds, peak RSS, runs.jsonl and turns.parquet sizes.

    cargo build --release && python3 bench/conversations.py [total-runs ...]
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# RAGPROBE_BIN measures another build (an older commit, say) with the same script.
BINARY = os.environ.get("RAGPROBE_BIN") or os.path.join(ROOT, "target", "release", "ragprobe")
CHAIN = os.path.join(ROOT, "suites", "databricks", "chains", "support.yaml")
CASES = 2

RULES = """rules:
  - id: only-databricks-docs
    retrieved: {every: {docs: databricks}}
  - id: no-aws-instance-types
    answer: {not_matches: "t[0-9]g?\\\\.(nano|micro|small)"}
"""


def suite(kind: str) -> str:
    head = f"name: bench-{kind}\nchain: {CHAIN}\nvars: {{product: Databricks}}\n{RULES}cases:\n"
    cases = []
    for i in range(CASES):
        if kind == "conversation":
            cases.append(
                f"  - id: chat-{i}\n    turns:\n"
                "      - question: Are Databricks databases just files on S3?\n"
                "      - question: And what does that cost?\n"
                "        expect: {answer: {contains_any: [pay, compute, seconds]}}\n"
                "      - question: Why?\n"
            )
        else:
            cases.append(f"  - id: single-{i}\n    question: How much does it cost to run a database?\n")
    return head + "".join(cases)


def measure(kind: str, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "suite.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(suite(kind))
        out = os.path.join(tmp, "report")
        start = time.perf_counter()
        child = subprocess.Popen(
            [BINARY, "run", path, "--runs", str(runs // CASES), "--quiet",
             "--progress", "none", "--out", out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # wait4 gives this child's own resource usage, peak RSS included.
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        size = lambda name: (os.path.getsize(os.path.join(out, name)) / 1e6
                             if os.path.exists(os.path.join(out, name)) else 0.0)
        shown = time.perf_counter()
        subprocess.run([BINARY, "show", out, "--failed"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        show = time.perf_counter() - shown
        return {
            "kind": kind,
            "runs": runs,
            "turns": runs * (3 if kind == "conversation" else 1),
            "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024,
            "jsonl_mb": size("runs.jsonl"),
            "turns_mb": size("turns.parquet"),
            "show_s": show,
            "exit": os.waitstatus_to_exitcode(status),
        }


def main() -> None:
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release")
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    print(f"{'suite':>12}  {'runs':>6}  {'turns':>6}  {'wall s':>7}  {'cpu s':>7}  {'peak RSS MB':>11}  "
          f"{'runs.jsonl MB':>13}  {'turns.parquet MB':>16}  {'show s':>6}  exit")
    for runs in sizes:
        for kind in ["single", "conversation"]:
            m = measure(kind, runs)
            print(f"{m['kind']:>12}  {m['runs']:>6}  {m['turns']:>6}  {m['wall']:>7.2f}  {m['cpu']:>7.2f}  "
                  f"{m['rss_mb']:>11.1f}  {m['jsonl_mb']:>13.1f}  {m['turns_mb']:>16.2f}  "
                  f"{m['show_s']:>6.2f}  {m['exit']}")


if __name__ == "__main__":
    main()
