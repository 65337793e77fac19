#!/usr/bin/env python3
"""Cost of a model judge: 100 cases × 5 runs on the shipped retriever and prompt, the model
behind `openai-loopback --latency-ms 20`, concurrency 16, with and without one judged rule
(the judge on the same loopback server, so a judgement costs one more 20 ms call). Prints
wall time, runs per second and peak RSS.

    cargo build --release && python3 bench/judge.py [cases] [runs] [repeats]
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
BINARY = os.environ.get("RAGPROBE_BIN") or os.path.join(RELEASE, "ragprobe")
LOOPBACK = os.environ.get("RAGPROBE_LOOPBACK") or os.path.join(RELEASE, "openai-loopback")
CORPUS = os.path.join(ROOT, "suites", "databricks", "corpus.jsonl")
PROMPT = os.path.join(ROOT, "examples", "chains", "support-prompt.j2")
TOPICS = ["store databases", "cost to run a database", "bill serverless SQL warehouses",
          "make Delta files", "pay for compute"]


def suite(path, url, cases, runs, judged, repeats):
    lines = [
        "name: judge-bench",
        "chain:",
        f"  retriever: {{kind: memory, corpus: '{CORPUS}', k: 2}}",
        f"  prompt_file: '{PROMPT}'",
        f"  llm: {{kind: openai, base_url: '{url}', model: loopback-chat, temperature: 1.0}}",
        f"runs: {runs}",
        "seed: 5",
        "concurrency: 16",
        "vars: {product: Databricks}",
    ]
    if judged:
        lines += [f"judge: {{kind: openai, base_url: '{url}', model: loopback-judge, repeats: {repeats}}}",
                  "rules:",
                  "  - id: judged-grounded",
                  "    answer: {judge: {criterion: groundedness}}",
                  "    max_rate: 1.0"]
    lines.append("cases:")
    for i in range(cases):
        lines += [f"  - id: q{i}", f"    question: How do I {TOPICS[i % len(TOPICS)]}, case {i}?"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def measure(path, out):
    start = time.perf_counter()
    child = subprocess.Popen([BINARY, "run", path, "--out", out, "--progress", "none", "-q"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _status, usage = os.wait4(child.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main():
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    for path in (BINARY, LOOPBACK):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: cargo build --release")
    model = subprocess.Popen([LOOPBACK, "--addr", "127.0.0.1:0", "--latency-ms", "20"],
                             stdout=subprocess.PIPE, text=True)
    url = model.stdout.readline().strip().removeprefix("listening on ")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{cases} cases × {runs} runs, loopback at 20 ms, concurrency 16")
            print(f"{'':<34} {'wall s':>7} {'runs/s':>7} {'peak RSS MB':>11}")
            for label, judged in [("no judge", False),
                                  (f"one judged rule, repeats {repeats}", True)]:
                path = os.path.join(tmp, f"suite-{judged}.yaml")
                suite(path, url, cases, runs, judged, repeats)
                wall, rss = measure(path, os.path.join(tmp, f"out-{judged}"))
                print(f"{label:<34} {wall:>7.2f} {cases * runs / wall:>7.1f} {rss:>11.1f}")
    finally:
        model.kill()


if __name__ == "__main__":
    main()
