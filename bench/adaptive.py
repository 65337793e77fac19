#!/usr/bin/env python3
"""`runs: auto` against a fixed 100-run policy, on a chain whose bad-answer rate per case is
known and set.

A loopback HTTP service (started here, stdlib) answers BAD on a set share of requests per
question, decided by the request's seed; each case expects an answer without BAD. The suite holds 14 cases:
bad rates 0%, 1%, 5%, 10%, 30%, 50% and 100%, each at min_pass_rate 0.9 and 1.0. For each
of SEEDS suite seeds, ragprobe runs it twice: `--runs 100` (the fixed policy) and
`--runs auto` (max_runs 100, tolerance 0.05, significance 0.05). Prints, per case: mean runs
used, agreement with the fixed policy's verdict, and wrong verdicts of `auto` where the true
rate is clearly on one side (beyond the tolerance) of the threshold.

    cargo build --release && python3 bench/adaptive.py [SEEDS]
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "ragprobe")
RATES = [0.0, 0.01, 0.05, 0.10, 0.30, 0.50, 1.0]
THRESHOLDS = [0.9, 1.0]
TOLERANCE = 0.05


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        rate = float(body["question"].split()[-1])
        bad = random.Random(body["seed"]).random() < rate
        reply = json.dumps({"answer": "BAD" if bad else "fine", "documents": []}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def suite_text(port, seed):
    cases = []
    for threshold in THRESHOLDS:
        for rate in RATES:
            cases.append(
                f"  - id: bad{int(rate * 100):03d}-min{int(threshold * 100)}\n"
                f"    question: bad rate {rate}\n"
                f"    expect: {{answer: {{not_contains: BAD}}}}\n"
                f"    min_pass_rate: {threshold}\n"
            )
    chain = (
        "{kind: http, url: 'http://127.0.0.1:%d/ask', "
        "body: '{\"question\": {{ question | tojson }}, \"seed\": {{ seed }}}'}" % port
    )
    return (
        f"name: adaptive-bench\nchain: {chain}\nseed: {seed}\nconcurrency: 16\n"
        f"max_runs: 100\ntolerance: {TOLERANCE}\n"
        "cases:\n" + "".join(cases)
    )


def run(suite, out, runs):
    subprocess.run(
        [BINARY, "run", suite, "--out", out, "--runs", runs, "--progress", "none", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(os.path.join(out, "summary.json")) as f:
        return {c["id"]: c for c in json.load(f)["stats"]["cases"]}


def main():
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            suite = os.path.join(tmp, f"suite-{seed}.yaml")
            with open(suite, "w") as f:
                f.write(suite_text(port, seed))
            fixed = run(suite, os.path.join(tmp, f"fixed-{seed}"), "100")
            auto = run(suite, os.path.join(tmp, f"auto-{seed}"), "auto")
            for case, stats in auto.items():
                row = rows.setdefault(case, {"used": 0, "agree": 0, "cases": 0,
                                             "wrong": 0, "clear": 0, "undecided": 0})
                row["used"] += stats["adaptive"]["runs_used"]
                passed_auto = stats["outcome"] in ("pass", "flaky")
                passed_fixed = fixed[case]["outcome"] in ("pass", "flaky")
                row["cases"] += 1
                row["agree"] += passed_auto == passed_fixed
                row["undecided"] += stats["adaptive"]["stop"] == "undecided"
                rate = float(case[3:6]) / 100
                threshold = 1 - float(case.split("min")[1]) / 100
                # Wald's guarantees hold at and beyond the zone's edges (q0 is 0 at q* = 0).
                good_edge = max(threshold - TOLERANCE, 0.0)
                bad_edge = min(threshold + TOLERANCE, 1.0)
                if rate <= good_edge + 1e-9 or rate >= bad_edge - 1e-9:
                    row["clear"] += 1
                    should_pass = rate <= good_edge + 1e-9
                    row["wrong"] += passed_auto != should_pass
    server.shutdown()
    print(f"{seeds} seeds; fixed policy: 100 runs a case; auto: max_runs 100, tolerance "
          f"{TOLERANCE}, significance 0.05\n")
    print(f"{'case':<16}{'auto runs':>10}{'agree':>8}{'undecided':>10}"
          f"{'wrong (clear cases)':>21}")
    total_used = total_fixed = agree = decided = wrong = clear = 0
    for case in sorted(rows):
        row = rows[case]
        n = row["cases"]
        print(f"{case:<16}{row['used'] / n:>10.1f}"
              f"{row['agree'] / n:>8.0%}{row['undecided']:>10}"
              f"{(str(row['wrong']) + '/' + str(row['clear'])) if row['clear'] else '—':>21}")
        total_used += row["used"]
        total_fixed += 100 * n
        agree += row["agree"]
        decided += n
        wrong += row["wrong"]
        clear += row["clear"]
    print(f"\nall: {total_used / total_fixed:.1%} of the fixed policy's calls; "
          f"same verdict on {agree / decided:.1%} of cases; "
          f"wrong verdicts where the rate is beyond the tolerance: {wrong}/{clear} "
          f"({wrong / max(clear, 1):.1%}; nominal 5%)")


if __name__ == "__main__":
    main()
