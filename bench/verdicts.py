#!/usr/bin/env python3
"""The gate's error rates by simulation, on the embedded chain, at 10, 200 and 2,000 cases.

Every case asks the reference cost question ("How much does it cost to run a database?")
and expects no AWS instance type in the answer: about 76% of runs pass. Seeds make builds
independent.

- A/A: two builds of the same suite with new seeds, compared with `ragprobe diff` (the
  same gate `run --baseline` uses). A build that fails is a false alarm. Measured for the
  default correction (discrete Holm), plain Holm and none (each case alone at 0.05).
- B/A: a share of the cases (5%, at least one) ask "How are database instances billed?",
  which the same chain answers with t4g.micro about 45 points more often. Measured: builds
  that fail (should be nearly all), the share of regressed cases named (per-case power),
  and builds that also name an unregressed case (family-wise error among the unchanged).
- Adaptive (200 cases): `run --runs auto --baseline` (max_runs 100 unless
  `--adaptive-max`) against a 100-run baseline, A/A and B/A: false alarms, regressions
  found, runs used against a fixed 100, and what a fixed design with the same guarantees
  needs.
- Time: `ragprobe diff` of two 2,000-case reports, with the gate's statistics and with
  `--correction none` (the per-case tests only).

Prints each rate with its 95% Wilson interval.

    cargo build --release && python3 bench/verdicts.py [--builds N] [--sizes 10,200,2000]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "ragprobe")
CHAIN = os.path.join(ROOT, "suites", "databricks", "chains", "support.yaml")
QUESTION = "How much does it cost to run a database?"
WORSE = "How are database instances billed?"
CHECK = '{answer: {not_matches: "t[0-9]g?\\\\.(nano|micro|small)"}}'


def wilson(k, n):
    if n == 0:
        return (0.0, 1.0)
    z = 1.959964
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def rate(k, n):
    low, high = wilson(k, n)
    return f"{k}/{n} = {100 * k / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def suite(path, cases, worse, runs="20", extra=""):
    lines = [
        "name: wide",
        f"chain: {CHAIN}",
        f"runs: {runs}",
        "min_pass_rate: 0.1",
        "vars: {product: Databricks}",
    ]
    if extra:
        lines.append(extra)
    lines.append("cases:")
    for i in range(cases):
        question = WORSE if i < worse else QUESTION
        lines += [f"  - id: c{i:05d}", f"    question: {question}", f"    expect: {CHECK}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run(suite_path, out, seed, *extra):
    result = subprocess.run(
        [BINARY, "run", suite_path, "--seed", str(seed), "--out", out, "--progress", "none",
         "-q", *extra],
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 1):
        sys.exit(f"run failed ({result.returncode}): {result.stderr}")
    return out


def diff(a, b, *extra):
    result = subprocess.run(
        [BINARY, "diff", a, b, "--format", "json", "--out", os.path.join(b, "bench-diff.html"),
         *extra],
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 1):
        sys.exit(f"diff failed ({result.returncode}): {result.stderr}")
    report = json.loads(result.stdout)
    named = [c["id"] for c in report["cases"] if c["change"] == "regression"]
    return result.returncode == 1, named


def a_over_a(work, cases, builds):
    path = os.path.join(work, f"aa-{cases}.yaml")
    suite(path, cases, 0)
    alarms = {"discrete-holm": 0, "holm": 0, "none": 0}
    named = {"discrete-holm": 0, "holm": 0, "none": 0}
    for b in range(builds):
        a = run(path, os.path.join(work, f"aa-{cases}-{b}-a"), 1000 * b + 1)
        z = run(path, os.path.join(work, f"aa-{cases}-{b}-b"), 1000 * b + 2)
        for correction in alarms:
            failed, cases_named = diff(a, z, "--correction", correction)
            alarms[correction] += failed
            named[correction] += len(cases_named)
        for folder in (a, z):
            subprocess.run(["rm", "-rf", folder])
    print(f"\nA/A, {cases} cases × 20 runs, {builds} builds (false alarm: the build fails)")
    for correction, k in alarms.items():
        print(f"  {correction:14} builds failed {rate(k, builds)}; "
              f"cases named per build {named[correction] / builds:.2f}")


def b_over_a(work, cases, builds, runs):
    worse = max(1, cases // 20)
    before = os.path.join(work, f"ba-{cases}-before.yaml")
    after = os.path.join(work, f"ba-{cases}-after.yaml")
    suite(before, cases, 0, runs)
    suite(after, cases, worse, runs)
    failed_builds = found = false_builds = false_names = 0
    for b in range(builds):
        a = run(before, os.path.join(work, f"ba-{cases}-{b}-a"), 1000 * b + 3)
        z = run(after, os.path.join(work, f"ba-{cases}-{b}-b"), 1000 * b + 4)
        failed, named = diff(a, z)
        failed_builds += failed
        truly = [n for n in named if int(n[1:]) < worse]
        found += len(truly)
        wrong = len(named) - len(truly)
        false_names += wrong
        false_builds += wrong > 0
        for folder in (a, z):
            subprocess.run(["rm", "-rf", folder])
    print(f"\nB/A, {cases} cases × {runs} runs, {worse} made ~45 points worse, {builds} builds")
    print(f"  builds failed            {rate(failed_builds, builds)}")
    print(f"  regressed cases named    {rate(found, worse * builds)}")
    print(f"  builds naming an unregressed case {rate(false_builds, builds)} "
          f"({false_names / builds:.2f} per build)")


def adaptive(work, cases, builds, max_runs):
    worse = max(1, cases // 20)
    fixed = os.path.join(work, f"ad-{cases}-fixed.yaml")
    suite(fixed, cases, 0, "100")
    auto_same = os.path.join(work, f"ad-{cases}-same.yaml")
    auto_worse = os.path.join(work, f"ad-{cases}-worse.yaml")
    suite(auto_same, cases, 0, "auto", f"max_runs: {max_runs}")
    suite(auto_worse, cases, worse, "auto", f"max_runs: {max_runs}")
    print(f"\nadaptive: runs: auto (max {max_runs}) against a 100-run baseline, {cases} cases, {builds} builds")
    for label, path in (("A/A", auto_same), ("B/A", auto_worse)):
        alarms = found = used = fixed_runs = fixed_adaptive = unreachable = 0
        for b in range(builds):
            base = run(fixed, os.path.join(work, f"ad-{b}-base"), 1000 * b + 5)
            out = os.path.join(work, f"ad-{b}-{label[0]}")
            run(path, out, 1000 * b + 6, "--baseline", base)
            with open(os.path.join(out, "summary.json")) as f:
                s = json.load(f)
            named = [c["id"] for c in s["baseline_cases"] if c["change"] == "regression"]
            truly = [n for n in named if int(n[1:]) < worse] if label == "B/A" else []
            found += len(truly)
            alarms += len(named) > len(truly)
            used += s["adaptive"]["runs_used"]
            design = s["adaptive"].get("fixed_design") or {}
            fixed_runs += design.get("runs", 0)
            fixed_adaptive += design.get("adaptive_runs", 0)
            unreachable += design.get("unreachable", 0)
            for folder in (base, out):
                subprocess.run(["rm", "-rf", folder])
        print(f"  {label}: builds naming an unregressed case {rate(alarms, builds)}"
              + (f"; regressed cases found {rate(found, worse * builds)}" if label == "B/A" else ""))
        print(f"       runs used {used / builds:.0f} per build ({used / builds / cases:.1f} per case; "
              f"a fixed 100 would be {100 * cases}); where a fixed design with the same guarantees "
              f"exists it needs {fixed_runs / builds:.0f} runs for what auto did in "
              f"{fixed_adaptive / builds:.0f}; {unreachable / builds:.0f} cases per build have none")


def diff_time(work, cases):
    path = os.path.join(work, f"time-{cases}.yaml")
    suite(path, cases, 0)
    a = run(path, os.path.join(work, "time-a"), 1)
    b = run(path, os.path.join(work, "time-b"), 2)
    timings = {}
    for correction in ("discrete-holm", "none"):
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            diff(a, b, "--correction", correction)
            samples.append(time.perf_counter() - start)
        timings[correction] = sorted(samples)[1]
    print(f"\ndiff of two {cases}-case reports (median of 3): "
          f"{timings['discrete-holm']:.2f} s with the gate, {timings['none']:.2f} s with "
          f"--correction none: the family-wise statistics add {timings['discrete-holm'] - timings['none']:.2f} s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", type=int, default=40, help="A/A and B/A builds per size")
    parser.add_argument("--sizes", default="10,200,2000")
    parser.add_argument("--adaptive-builds", type=int, default=10)
    parser.add_argument("--adaptive-max", type=int, default=100, help="max_runs of the adaptive builds")
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release")
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as work:
        for cases in sizes:
            # Fewer builds where one build is 40,000 runs.
            builds = args.builds if cases < 1000 else max(10, args.builds // 4)
            a_over_a(work, cases, builds)
            b_over_a(work, cases, builds, "40")
        if args.adaptive_builds:
            adaptive(work, 200, args.adaptive_builds, args.adaptive_max)
        if max(sizes) >= 2000:
            diff_time(work, 2000)


if __name__ == "__main__":
    main()
