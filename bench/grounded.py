#!/usr/bin/env python3
"""How well the offline `grounded` rule catches unsupported sentences: the reference suite's
questions on the shipped retriever and prompt, the model behind `openai-loopback
--unsupported-rate R` (which appends one claim no document makes to a share R of answers),
and a suite-wide `answer: {grounded: {min_support: M}}` rule.

The truth is read from the answers, not from the rule: the loopback model otherwise only
copies sentences of the retrieved documents, so an answer sentence found verbatim in no
corpus document is an added one. Prints the catch rate (flagged among answers with an added
sentence), the false-alarm rate (flagged among the others), and which added sentences slip
through.

    cargo build --release && python3 bench/grounded.py [runs-per-case] [rate] [min_support]
"""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
BINARY = os.environ.get("RAGPROBE_BIN") or os.path.join(RELEASE, "ragprobe")
LOOPBACK = os.environ.get("RAGPROBE_LOOPBACK") or os.path.join(RELEASE, "openai-loopback")
CORPUS = os.path.join(ROOT, "suites", "databricks", "corpus.jsonl")
PROMPT = os.path.join(ROOT, "examples", "chains", "support-prompt.j2")

SUITE = """name: grounded-bench
chain:
  retriever: {{kind: memory, corpus: '{corpus}', k: 2}}
  prompt_file: '{prompt}'
  llm: {{kind: openai, base_url: '{url}', model: loopback-chat, temperature: 1.0}}
runs: {runs}
seed: 7
vars: {{product: Databricks}}
rules:
  - id: grounded
    answer: {{grounded: {{min_support: {min_support}}}}}
cases:
  - id: storage
    question: How does Databricks store databases?
  - id: cost
    question: How much does it cost to run a database?
  - id: serverless
    question: How are serverless SQL warehouses billed?
  - id: delta
    question: What are Delta files made of?
"""


def sentences(text):
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 250
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    min_support = float(sys.argv[3]) if len(sys.argv) > 3 else 0.8
    for path in (BINARY, LOOPBACK):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: cargo build --release")
    with open(CORPUS) as f:
        corpus_sentences = {s for line in f if line.strip()
                            for s in sentences(json.loads(line)["text"])}
    model = subprocess.Popen([LOOPBACK, "--addr", "127.0.0.1:0", "--unsupported-rate", str(rate)],
                             stdout=subprocess.PIPE, text=True)
    url = model.stdout.readline().strip().removeprefix("listening on ")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            suite = os.path.join(tmp, "suite.yaml")
            with open(suite, "w") as f:
                f.write(SUITE.format(corpus=CORPUS, prompt=PROMPT, url=url, runs=runs,
                                     min_support=min_support))
            out = os.path.join(tmp, "out")
            subprocess.run([BINARY, "run", suite, "--out", out, "--progress", "none", "-q"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            counts = {"added": 0, "caught": 0, "clean": 0, "false_alarm": 0}
            missed = {}
            with open(os.path.join(out, "runs.jsonl")) as f:
                for line in f:
                    record = json.loads(line)
                    if record.get("verdict") is None:
                        continue
                    added = [s for s in sentences(record["answer"]) if s not in corpus_sentences]
                    flagged = any(r["id"] == "grounded" and not r["passed"]
                                  for r in record["verdict"]["rules"])
                    if added:
                        counts["added"] += 1
                        counts["caught"] += flagged
                        if not flagged:
                            for s in added:
                                missed[s] = missed.get(s, 0) + 1
                    else:
                        counts["clean"] += 1
                        counts["false_alarm"] += flagged
    finally:
        model.kill()
    total = counts["added"] + counts["clean"]
    print(f"{total} answers (4 questions × {runs} runs), unsupported-rate {rate}, "
          f"min_support {min_support}")
    print(f"answers with an added sentence: {counts['added']}, caught {counts['caught']} "
          f"→ catch rate {counts['caught'] / max(counts['added'], 1):.1%}")
    print(f"answers without: {counts['clean']}, flagged {counts['false_alarm']} "
          f"→ false-alarm rate {counts['false_alarm'] / max(counts['clean'], 1):.1%}")
    for sentence, n in sorted(missed.items(), key=lambda kv: -kv[1]):
        print(f"  missed {n}×: {sentence}")


if __name__ == "__main__":
    main()
