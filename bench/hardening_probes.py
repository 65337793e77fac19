#!/usr/bin/env python3
"""Hostile probes for ragprobe, run on demand (not by CI): bad files, kills and a full
disk, hostile servers, hostile report content, secrets, concurrent writers, CLI edges.

    cargo build && python3 bench/hardening_probes.py [CATEGORY ...]

Prints one line per probe and a tally (tried / clean / panicked / hung / wrong exit / data lost /
leaked / unbounded). Category 8 probes the surfaces of issue 26 (the OTLP receiver, MLflow,
judges, importers, `--out`); PROBE_ITEMS=4,7 runs only those items of it. It starts servers of
its own (collectors and MLflow stand-ins that echo headers, never answer or never stop; a real
`mlflow server` from .venv for item 17) on loopback, and measures peak RSS with /usr/bin/time.
Needs: the debug binaries (or RAGPROBE_BIN / RAGPROBE_LOOPBACK), root for the 300 KB tmpfs
of the disk-full probe (skipped otherwise), and markdown-it-py + linkify-it-py to render
summary.md as GitHub would (`pip install markdown-it-py linkify-it-py`).
Writes into $PROBE_DIR (default /tmp/ragprobe-probes)."""
import os, sys, re, json, time, shutil, signal, subprocess, hashlib, resource, base64, glob
from xml.dom import minidom
MAIN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R = os.environ.get("RAGPROBE_BIN", f"{MAIN}/target/debug/ragprobe")
LB = os.environ.get("RAGPROBE_LOOPBACK", f"{MAIN}/target/debug/openai-loopback")
SLOW = f"{MAIN}/tests/fixtures/slow.yaml"; CORPUS = f"{MAIN}/suites/databricks/corpus.jsonl"
PROBE_DIR = os.environ.get("PROBE_DIR", "/tmp/ragprobe-probes")
W = f"{PROBE_DIR}/w"
shutil.rmtree(W, ignore_errors=True); os.makedirs(W)
RESULTS = []; ONLY = sys.argv[1:]  # optional category filter

def limits():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); os.setsid()

def sh(cmd, timeout=60, env=None, cwd=W, stdin=subprocess.DEVNULL):
    e = dict(os.environ, NO_COLOR="1", CI="1"); e.update(env or {})
    t = time.time()
    p = subprocess.Popen(cmd, shell=isinstance(cmd, str), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=e, cwd=cwd, preexec_fn=limits, stdin=stdin, executable="/bin/bash" if isinstance(cmd, str) else None)
    try:
        out, err = p.communicate(timeout=timeout); rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); out, err = p.communicate(); rc = "HANG"
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.time() - t

# What a probe found, from harmless to worst; a probe is tallied under the worst it found.
STATUSES = ["clean", "wrong exit", "hung", "unbounded", "leaked", "data lost", "panicked"]

def record(cat, name, cmd, expect, rc, out, err, extra=None):
    """extra: list of (kind, ok, msg); kind in wrong exit|hung|unbounded|leaked|data lost|panicked|nit.
    rc "HANG" (killed at its timeout) is `hung`; rc "ok" means the probe has no exit code of its own."""
    if rc == "ok": expect = "ok"
    status = "clean"; why = []
    def worse(kind):
        nonlocal status
        if STATUSES.index(kind) > STATUSES.index(status): status = kind
    if rc == 101 or "panicked at" in err or "panicked at" in out or rc in (-6, 134, -11, 139):
        worse("panicked"); why.append(f"rc={rc} " + (re.search(r"panicked at.*", err) or re.search(r".*", err)).group(0)[:160])
    elif rc == "HANG":
        worse("hung"); why.append(f"no exit within its time limit (expected {expect}); stderr: {err.strip()[-200:]!r}")
    elif rc not in (expect if isinstance(expect, (set, tuple, list)) else {expect}):
        worse("wrong exit"); why.append(f"rc={rc} expected {expect}; stderr: {err.strip()[-200:]!r}")
    for kind, ok, msg in (extra or []):
        if not ok and kind == "nit": why.append(f"[nit] {msg}"); continue
        if not ok:
            worse(kind); why.append(f"[{kind}] {msg}")
    RESULTS.append(dict(cat=cat, name=name, cmd=cmd if isinstance(cmd, str) else " ".join(map(str, cmd)), expect=str(expect), rc=rc, status=status, why=why))
    print(f"{cat:>2} {status:10} {name}: rc={rc} {'; '.join(why)[:300]}", flush=True)

def probe(cat, name, cmd, expect, checks=None, **kw):
    if ONLY and str(cat) not in ONLY: return None
    rc, out, err, dt = sh(cmd, **kw)
    extra = checks(rc, out, err) if checks else []
    record(cat, name, cmd, expect, rc, out, err, extra)
    return rc, out, err

LOC = re.compile(r"\.(ya?ml|jsonl|json|j2):\d+:\d+")
def has_loc(rc, out, err): return [("wrong exit", bool(LOC.search(err)), f"no file:line:col in stderr: {err.strip()[:200]!r}")]

def w(path, data, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f: f.write(data)
    return path

def runs_pairs(d):
    pairs = []; bad = 0
    with open(f"{d}/runs.jsonl", "rb") as f:
        for line in f:
            try: j = json.loads(line); pairs.append((j["case"], j["run"]))
            except Exception: bad += 1
    return pairs, bad

def exact(d, cases, runs):
    pairs, bad = runs_pairs(d)
    want = {(c, r) for c in cases for r in range(runs)}
    dup = len(pairs) - len(set(pairs)); lost = want - set(pairs); extra = set(pairs) - want
    return [("data lost", dup == 0 and not lost and not extra and bad == 0,
             f"lines={len(pairs)} dup={dup} lost={len(lost)} extra={len(extra)} unparsable={bad}")]

def digest(d):
    h = {}
    for p in sorted(glob.glob(d + "/**", recursive=True)):
        if os.path.isfile(p): h[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return h

def loopback(*args):
    p = subprocess.Popen([LB, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=os.setsid)
    line = p.stdout.readline().decode()
    url = re.search(r"http://127\.0\.0\.1:\d+/v1", line).group(0)
    return p, url

def stop(p):
    try: os.killpg(p.pid, signal.SIGKILL); p.wait()
    except Exception: pass

def closed_port():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

BASE_CHAIN = f"""retriever: {{kind: memory, corpus: {CORPUS}, k: 2}}
llm: {{kind: extractive, temperature: 1.0, max_sentences: 2}}
"""
def suite(name="s", chain=None, runs=3, cases=None, extra=""):
    chain = chain or "\n".join("  " + l for l in BASE_CHAIN.strip().splitlines())
    cases = cases or '  - id: storage\n    question: How does Databricks store databases?\n'
    return f"name: {name}\nchain:\n{chain}\nruns: {runs}\nseed: 1\n{extra}cases:\n{cases}"

def start_bg(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=W, preexec_fn=os.setsid,
                            env=dict(os.environ, NO_COLOR="1", CI="1"))

def wait_lines(d, n, t=20):
    end = time.time() + t
    while time.time() < end:
        try:
            if sum(1 for _ in open(f"{d}/runs.jsonl", "rb")) >= n: return True
        except FileNotFoundError: pass
        time.sleep(0.01)
    return False

# ---------------------------------------------------------------- 1. bad files
def cat1():
    C = 1; d = f"{W}/c1"; os.makedirs(d)
    good = suite()
    w(f"{d}/good.yaml", good)
    probe(C, "valid baseline suite validates", [R, "validate", f"{d}/good.yaml"], 0)
    bad = {
      "yaml-syntax": good.replace("runs: 3", "runs: [3"),
      "duplicate-key": good.replace("runs: 3", "runs: 3\nruns: 4"),
      "duplicate-key-nested": good.replace("k: 2}", "k: 2, k: 3}"),
      "wrong-type-runs": good.replace("runs: 3", "runs: lots"),
      "wrong-type-cases": good.split("cases:")[0] + "cases: 7\n",
      "temperature-1": good.replace("temperature: 1.0", "temperature: -1"),
      "temperature-nan": good.replace("temperature: 1.0", "temperature: .nan"),
      "max_sentences-0": good.replace("max_sentences: 2", "max_sentences: 0"),
      "runs-0": good.replace("runs: 3", "runs: 0"),
      "runs-negative": good.replace("runs: 3", "runs: -5"),
      "runs-huge": good.replace("runs: 3", "runs: 99999999999999999999999"),
      "k-0": good.replace("k: 2", "k: 0"),
      "concurrency-0": good.replace("runs: 3", "runs: 3\nconcurrency: 0"),
      "min_pass_rate-1.5": good.replace("runs: 3", "runs: 3\nmin_pass_rate: 1.5"),
      "timeout-0": good.replace("runs: 3", "runs: 3\ntimeout_ms: 0"),
      "dup-case-ids": good + '  - id: storage\n    question: again?\n',
      "empty-case-id": good.replace("id: storage", 'id: ""'),
      "ctrl-char-case-id": good.replace("id: storage", 'id: "sto\\u001b[31mrage\\u0007"'),
      "nul-in-yaml": good.replace("question: How", "question: \x00How"),
      "unknown-source": good.replace("question: How does Databricks store databases?\n", "question: q?\n    expect: {sources: [\"nope\"]}\n"),
      "bad-regex": good + '    expect: {answer: {matches: "(unclosed"}}\n',
      "yaml-list-toplevel": "- a\n- b\n",
      "yaml-scalar-toplevel": "hello\n",
      "empty-file": "",
    }
    noloc = {"empty-file", "nul-in-yaml"}
    for n, txt in bad.items():
        p = w(f"{d}/{n}.yaml", txt)
        probe(C, f"validate {n}", [R, "validate", p], 2, None if n in noloc else has_loc)
    # run (not validate) on a few: must exit 2 and create no report
    for n in ["temperature-1", "max_sentences-0", "runs-0", "duplicate-key"]:
        out = f"{d}/out-{n}"
        probe(C, f"run {n}", [R, "run", f"{d}/{n}.yaml", "--out", out], 2,
              lambda rc, o, e, out=out: has_loc(rc, o, e) + [("wrong exit", not os.path.exists(f"{out}/runs.jsonl"), "runs.jsonl written for config error")])
    probe(C, "run --runs 0", [R, "run", f"{d}/good.yaml", "--runs", "0", "--out", f"{d}/o-r0"], 2)
    probe(C, "run --seed abc", [R, "run", f"{d}/good.yaml", "--seed", "abc", "--out", f"{d}/o-sa"], 2)
    # BOM, non-UTF-8
    w(f"{d}/bom.yaml", b"\xef\xbb\xbf" + good.encode())
    probe(C, "validate BOM suite (valid YAML; accept 0 or located 2)", [R, "validate", f"{d}/bom.yaml"], {0, 2})
    w(f"{d}/latin1.yaml", good.replace("How does", "H\xf6w does").encode("latin-1"))
    probe(C, "validate non-UTF-8 suite", [R, "validate", f"{d}/latin1.yaml"], 2, has_loc)
    # corpora
    def with_corpus(n, cpath, extra_chain=""):
        ch = f"  retriever: {{kind: memory, corpus: {cpath}, k: 2}}\n  llm: {{kind: extractive, temperature: 1.0, max_sentences: 2}}\n{extra_chain}"
        return w(f"{d}/{n}.yaml", suite(chain=ch))
    probe(C, "corpus /dev/zero", [R, "validate", with_corpus("devzero", "/dev/zero")], 2, timeout=40)
    probe(C, "run corpus /dev/zero", [R, "run", f"{d}/devzero.yaml", "--out", f"{d}/o-dz"], 2, timeout=40)
    w(f"{d}/corp-latin1.jsonl", '{"id": "1", "text": "D\xe4tabases stored as Delta", "metadata": {}}\n'.encode("latin-1"))
    probe(C, "corpus non-UTF-8", [R, "validate", with_corpus("c-latin1", f"{d}/corp-latin1.jsonl")], 2, has_loc)
    w(f"{d}/corp-dup.jsonl", '{"id": "1", "text": "a"}\n{"id": "1", "text": "b"}\n')
    probe(C, "corpus duplicate ids", [R, "validate", with_corpus("c-dup", f"{d}/corp-dup.jsonl")], 2, has_loc)
    w(f"{d}/corp-type.jsonl", '{"id": ["1"], "text": "a"}\n')
    probe(C, "corpus id wrong type", [R, "validate", with_corpus("c-type", f"{d}/corp-type.jsonl")], 2, has_loc)
    w(f"{d}/corp-bad.jsonl", '{"id": "1", "text": "a"}\n{"id": "2", "text": \n')
    probe(C, "corpus malformed line 2", [R, "validate", with_corpus("c-bad", f"{d}/corp-bad.jsonl")], 2,
          lambda rc, o, e: [("wrong exit", "corp-bad.jsonl:2:" in e, f"no corp-bad.jsonl:2:col: {e[:160]!r}")])
    w(f"{d}/corp-bom.jsonl", b'\xef\xbb\xbf{"id": "1", "text": "Databases are Delta files"}\n')
    probe(C, "corpus with BOM (accept 0 or located 2)", [R, "validate", with_corpus("c-bom", f"{d}/corp-bom.jsonl")], {0, 2})
    os.makedirs(f"{d}/corpdir.jsonl", exist_ok=True)
    probe(C, "corpus is a directory", [R, "validate", with_corpus("c-dir", f"{d}/corpdir.jsonl")], 2)
    # huge corpus: one 200 MB line without newline
    with open(f"{d}/huge.jsonl", "wb") as f:
        f.write(b'{"id": "1", "text": "'); f.write(b"a" * (200 << 20))
    probe(C, "corpus 200MB single unterminated line (RLIMIT_AS 3G)", [R, "validate", with_corpus("c-huge", f"{d}/huge.jsonl")], 2, timeout=90)
    # huge suite: 50 MB comment then valid
    with open(f"{d}/hugesuite.yaml", "w") as f:
        f.write(("# " + "x" * 1000 + "\n") * 50000); f.write(good)
    probe(C, "suite with 50MB of comments (0 or 2, no hang)", [R, "validate", f"{d}/hugesuite.yaml"], {0, 2}, timeout=90)
    # billion laughs
    lol = "vars:\n  a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(f"  {chr(98+i)}: &{chr(98+i)} [*{chr(97+i)},*{chr(97+i)},*{chr(97+i)},*{chr(97+i)},*{chr(97+i)},*{chr(97+i)},*{chr(97+i)},*{chr(97+i)},*{chr(97+i)},*{chr(97+i)}]\n" for i in range(8))
    probe(C, "billion laughs aliases", [R, "validate", w(f"{d}/lol.yaml", good.replace("seed: 1\n", "seed: 1\n" + lol))], 2, timeout=60)
    probe(C, "deeply nested flow seq (100k)", [R, "validate", w(f"{d}/deep.yaml", good.replace("seed: 1\n", "seed: 1\nvars: {x: " + "[" * 100000 + "]" * 100000 + "}\n"))], 2, timeout=60)
    # prompt_file
    probe(C, "prompt_file /dev/zero", [R, "validate", with_corpus("pf-zero", CORPUS, "  prompt_file: /dev/zero\n")], 2, timeout=40)
    probe(C, "prompt_file missing", [R, "validate", with_corpus("pf-miss", CORPUS, "  prompt_file: nope.j2\n")], 2, has_loc)
    w(f"{d}/bad.j2", "{{ question }\n")
    probe(C, "prompt_file template syntax error", [R, "validate", with_corpus("pf-bad", CORPUS, f"  prompt_file: {d}/bad.j2\n")], 2)
    # chain files
    w(f"{d}/chain-bad.yaml", "retriever: {kind: memory, corpus: x\n")
    probe(C, "chain file YAML error", [R, "validate", w(f"{d}/ch1.yaml", suite().split("chain:")[0] + f"chain: {d}/chain-bad.yaml\nruns: 3\ncases:\n  - id: a\n    question: q?\n")], 2,
          lambda rc, o, e: [("wrong exit", "chain-bad.yaml:" in e, f"no chain-bad.yaml:line:col {e[:160]!r}")])
    probe(C, "chain file missing", [R, "validate", w(f"{d}/ch2.yaml", suite().split("chain:")[0] + "chain: nope.yaml\nruns: 3\ncases:\n  - id: a\n    question: q?\n")], 2, has_loc)
    w(f"{d}/chain-kind.yaml", "kind: telepathy\n")
    probe(C, "chain unknown kind", [R, "validate", w(f"{d}/ch3.yaml", suite().split("chain:")[0] + f"chain: {d}/chain-kind.yaml\nruns: 3\ncases:\n  - id: a\n    question: q?\n")], 2, has_loc)
    probe(C, "run --chain /dev/zero", [R, "run", f"{d}/good.yaml", "--chain", "/dev/zero", "--out", f"{d}/o-cz"] , 2, timeout=40)
    # symlink loops in a suites folder
    sd = f"{d}/suites-loop"; os.makedirs(sd); w(f"{sd}/ok.yaml", good)
    os.symlink(".", f"{sd}/self"); os.symlink("loopb", f"{sd}/loopa"); os.symlink("loopa", f"{sd}/loopb")
    os.symlink("../suites-loop", f"{sd}/up")
    probe(C, "validate folder with symlink loops", [R, "validate", sd], {0, 2}, timeout=30)
    probe(C, "run folder with symlink loops", [R, "run", sd, "--out", f"{d}/o-loop"], {0, 1, 2}, timeout=30)
    os.makedirs(f"{d}/empty-suites")
    probe(C, "run empty folder", [R, "run", f"{d}/empty-suites", "--out", f"{d}/o-empty"], 2)
    probe(C, "run nonexistent path", [R, "run", f"{d}/nope.yaml"], 2)

# ---------------------------------------------------------------- 2. kills / disk full
def cat2():
    C = 2; d = f"{W}/c2"; os.makedirs(d)
    CASES = ["storage", "cost"]
    def kill_resume(name, runs, after_lines, sig=signal.SIGKILL, j=None, expect_first=None, suite_path=SLOW, cases=CASES, mutate=None):
        if ONLY and "2" not in ONLY: return
        out = f"{d}/{name}"
        cmd = [R, "run", suite_path, "--runs", str(runs), "--out", out] + (["-j", str(j)] if j else [])
        p = start_bg(cmd); ok = wait_lines(out, after_lines); os.killpg(p.pid, sig) if sig == signal.SIGKILL else os.kill(p.pid, sig)
        o, e = p.communicate(timeout=30); rc1 = p.returncode
        before, _ = runs_pairs(out) if os.path.exists(f"{out}/runs.jsonl") else ([], 0)
        extra = [("wrong exit", ok, "run ended before kill point")]
        if expect_first is not None:
            record(C, f"{name}: signal exit", " ".join(cmd) + f"  (then kill -{sig})", expect_first, rc1, o.decode(), e.decode(), extra)
        info = mutate(out) if mutate else ""
        before2, _ = runs_pairs(out)
        rc, so, se = probe(C, f"{name}: resume after kill at {len(before)} lines{info}", [R, "run", "--resume", out], 1,
              lambda rc, o, e: exact(out, cases, runs) + [("data lost", set(before2) <= set(runs_pairs(out)[0]), "pre-resume runs missing")], timeout=120)
        return out
    kill_resume("kill9-early", 200, 5)
    kill_resume("kill9-mid", 200, 150)
    kill_resume("kill9-late", 200, 390)
    kill_resume("kill9-j8", 300, 200, j=8)
    kill_resume("kill9-j1", 100, 50, j=1)
    kill_resume("sigterm", 200, 100, sig=signal.SIGTERM, expect_first=130)
    kill_resume("sigint", 200, 100, sig=signal.SIGINT, expect_first=130)
    def trunc_mid(out):
        data = open(f"{out}/runs.jsonl", "rb").read(); data = data[:len(data) - 1]  # keep body, drop \n
        last = data.rfind(b"\n"); cut = last + 1 + (len(data) - last) // 2
        open(f"{out}/runs.jsonl", "wb").write(data[:cut]); return " + torn last line"
    kill_resume("torn-line", 200, 100, mutate=trunc_mid)
    def trunc_nl(out):
        data = open(f"{out}/runs.jsonl", "rb").read(); open(f"{out}/runs.jsonl", "wb").write(data.rstrip(b"\n")); return " + final newline removed"
    kill_resume("no-final-newline", 200, 100, mutate=trunc_nl)
    # UTF-8 suite for mid-character tear
    us = w(f"{d}/utf8.yaml", open(SLOW).read().replace("../../suites/databricks/corpus.jsonl", CORPUS)
           .replace("How does Databricks store databases?", "Wie speichert Databricks Datenbanken? ★★★★★★★★★★★★★★★★★★★★ How does Databricks store databases?"))
    def trunc_utf8(out):
        data = open(f"{out}/runs.jsonl", "rb").read()
        last = data.rfind(b"\n", 0, len(data) - 1) + 1
        idx = data.find("★".encode(), last)
        if idx < 0: return " (NO multibyte char in last line!)"
        open(f"{out}/runs.jsonl", "wb").write(data[:idx + 1]); return " + torn inside UTF-8 char"
    kill_resume("torn-utf8", 200, 100, suite_path=us, mutate=trunc_utf8)
    # resume of a finished folder adds nothing
    out = f"{d}/finished"; sh([R, "run", SLOW, "--out", out])
    probe(C, "resume a finished report", [R, "run", "--resume", out], 1, lambda rc, o, e: exact(out, CASES, 60))
    # summary.json made a directory
    if not ONLY or "2" in ONLY:
        out = f"{d}/sumdir"; p = start_bg([R, "run", SLOW, "--runs", "200", "--out", out]); wait_lines(out, 100); os.killpg(p.pid, signal.SIGKILL); p.wait()
        os.makedirs(f"{out}/summary.json/x")
    probe(C, "resume with summary.json a directory -> 3, runs kept", [R, "run", "--resume", out], 3, lambda rc, o, e: exact(out, CASES, 200))
    if not ONLY or "2" in ONLY: shutil.rmtree(f"{out}/summary.json")
    probe(C, "resume again after fixing summary.json", [R, "run", "--resume", out], 1,
          lambda rc, o, e: exact(out, CASES, 200) + [("wrong exit", os.path.isfile(f"{out}/summary.json"), "no summary.json")])
    out2 = f"{d}/htmldir"
    if not ONLY or "2" in ONLY:
        p = start_bg([R, "run", SLOW, "--runs", "200", "--out", out2]); wait_lines(out2, 50); os.killpg(p.pid, signal.SIGKILL); p.wait()
        os.makedirs(f"{out2}/report.html")
    probe(C, "resume with report.html a directory -> 3", [R, "run", "--resume", out2], 3, lambda rc, o, e: exact(out2, CASES, 200))
    # suite edited between kill and resume
    ed = w(f"{d}/edit.yaml", open(SLOW).read().replace("../../suites/databricks/corpus.jsonl", CORPUS))
    out3 = f"{d}/edited"
    if not ONLY or "2" in ONLY:
        p = start_bg([R, "run", ed, "--runs", "200", "--out", out3]); wait_lines(out3, 50); os.killpg(p.pid, signal.SIGKILL); p.wait()
        w(ed, open(ed).read().replace("seed: 7", "seed: 8"))
        h = digest(out3)
    def seeds_ok(rc, o, e):
        sh([R, "run", SLOW, "--runs", "200", "--out", f"{d}/ref7", "-q"])
        a = {(j["case"], j["run"]): j["seed"] for j in map(json.loads, open(f"{out3}/runs.jsonl", "rb"))}
        b = {(j["case"], j["run"]): j["seed"] for j in map(json.loads, open(f"{d}/ref7/runs.jsonl", "rb"))}
        return exact(out3, CASES, 200) + [("data lost", a == b, "resumed runs do not follow the planned seed"), ("wrong exit", "changed since" in e, "no warning about the edited suite")]
    probe(C, "resume after suite edited (seed 7->8): warns, keeps planned seed", [R, "run", "--resume", out3], 1, seeds_ok)
    # disk full via small tmpfs
    mp = f"{d}/full"; os.makedirs(mp)
    if (not ONLY or "2" in ONLY) and subprocess.call(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", mp]) == 0:
        try:
            probe(C, "run into 300k tmpfs (disk full) -> 3", [R, "run", SLOW, "--runs", "200", "--out", f"{mp}/r"], 3,
                  lambda rc, o, e: [("data lost", os.path.exists(f"{mp}/r/runs.jsonl"), "no runs.jsonl at all")])
            if not os.path.exists(f"{mp}/r"): raise RuntimeError("no report folder created on tmpfs")
            kept = runs_pairs(f"{mp}/r")[0] if os.path.exists(f"{mp}/r/runs.jsonl") else []
            shutil.copytree(f"{mp}/r", f"{d}/fullcopy")
            subprocess.call(["umount", mp])
            # the copy lives on a real disk now; but meta points to suite -> resume should complete
            probe(C, f"resume disk-full report copied to real disk ({len(kept)} lines kept)", [R, "run", "--resume", f"{d}/fullcopy"], 1,
                  lambda rc, o, e: exact(f"{d}/fullcopy", CASES, 200) + [("data lost", set(kept) <= set(runs_pairs(f"{d}/fullcopy")[0]), "kept runs lost")])
        finally:
            subprocess.call(["umount", mp], stderr=subprocess.DEVNULL)
    # /dev/full as the report folder's runs.jsonl is not possible (fresh folder), so: read-only folder after kill
    out4 = f"{d}/ro"
    if not ONLY or "2" in ONLY:
        p = start_bg([R, "run", SLOW, "--runs", "200", "--out", out4]); wait_lines(out4, 50); os.killpg(p.pid, signal.SIGKILL); p.wait()
        os.unlink(f"{out4}/runs.jsonl") if False else None
        os.symlink("/dev/full", f"{out4}/summary.md.tmp-probe")  # harmless decoy
    # results.parquet replaced by symlink to /dev/full? replaced atomically via rename, so no effect expected
    # kill -9 during report-writing phase: kill right after last line appears
    kill_resume("kill9-at-end", 200, 400)

# ---------------------------------------------------------------- 3. hostile servers
def cat3():
    C = 3; d = f"{W}/c3"; os.makedirs(d)
    BF = f"{MAIN}/suites/databricks/before-fix.yaml"
    def oa_chain(name, url, limits="{timeout_ms: 5000, retries: 2, backoff_ms: 50}", key=""):
        return w(f"{d}/{name}.yaml", f"""retriever: {{kind: memory, corpus: {CORPUS}, k: 2}}
prompt_file: {MAIN}/examples/chains/support-prompt.j2
llm:
  kind: openai
  base_url: {url}
  model: m
  max_tokens: 50
{key}  limits: {limits}
""")
    def errs(out, n=40):
        def f(rc, o, e):
            try:
                st = [json.loads(l)["status"] for l in open(f"{out}/runs.jsonl", "rb")]
            except Exception as ex: return [("data lost", False, f"runs.jsonl unreadable: {ex}")]
            return [("data lost", len(st) == n, f"{len(st)} lines, expected {n}"),
                    ("wrong exit", all(s == "error" for s in st), f"statuses {sorted(set(st))}")]
        return f
    def case(name, lbargs, expect, limits=None, runs=20, timeout=120, check_all_err=True, rss_mb=None):
        if ONLY and "3" not in ONLY: return
        lb, url = loopback(*lbargs)
        try:
            ch = oa_chain(name, url, limits) if limits else oa_chain(name, url)
            out = f"{d}/{name}"
            cmd = f"/usr/bin/time -f 'MAXRSS %M' {R} run {BF} --chain {ch} --out {out} --runs {runs}"
            def chk(rc, o, e):
                r = errs(out, 2 * runs)(rc, o, e) if check_all_err else []
                if rss_mb:
                    m = re.search(r"MAXRSS (\d+)", e); kb = int(m.group(1)) if m else -1
                    r.append(("unbounded", 0 < kb < rss_mb * 1024, f"max RSS {kb} kB"))
                return r
            probe(C, f"{name} ({' '.join(lbargs)})", cmd, expect, chk, timeout=timeout)
        finally: stop(lb)
    case("normal", [], 1, check_all_err=False)
    case("error-rate-1", ["--error-rate", "1"], 3)
    case("malformed-rate-1", ["--malformed-rate", "1"], 3)
    case("error-rate-0.3", ["--error-rate", "0.3", "--seed", "3"], {1, 3}, check_all_err=False)
    case("burst429-recovers", ["--burst-429", "5", "--retry-after", "0.2"], 1, limits="{timeout_ms: 5000, retries: 4}", check_all_err=False)
    case("burst429-exhausts", ["--burst-429", "1000", "--retry-after", "0.05"], 3, limits="{timeout_ms: 5000, retries: 2}", runs=5)
    case("retry-after-3600", ["--burst-429", "1000", "--retry-after", "3600"], 3, limits="{timeout_ms: 2000, retries: 2}", runs=2, timeout=90)
    case("endless-body-capped", ["--endless-body"], 3, limits="{max_response_bytes: 1048576, retries: 0}", runs=5, timeout=120, rss_mb=400)
    case("endless-body-default-limits", ["--endless-body"], 3, limits="{timeout_ms: 3000, retries: 0}", runs=3, timeout=120, rss_mb=400)
    case("latency-over-timeout", ["--latency-ms", "3000"], 3, limits="{timeout_ms: 300, retries: 1, backoff_ms: 10}", runs=3, timeout=60)
    port = closed_port()
    if not ONLY or "3" in ONLY:
        ch = oa_chain("closed", f"http://127.0.0.1:{port}/v1", "{timeout_ms: 2000, retries: 1, backoff_ms: 10}")
        probe(C, "openai chain to closed port", [R, "run", BF, "--chain", ch, "--out", f"{d}/closed", "--runs", "3"], 3, errs(f"{d}/closed", 6))
        hc = w(f"{d}/http-closed.yaml", f"kind: http\nurl: http://127.0.0.1:{port}/ask\nlimits: {{timeout_ms: 2000, retries: 1}}\n")
        probe(C, "http chain to closed port", [R, "run", BF, "--chain", hc, "--out", f"{d}/hclosed", "--runs", "3"], 3, errs(f"{d}/hclosed", 6))
        lb, url = loopback()
        try:
            hh = w(f"{d}/http-wrong.yaml", f"kind: http\nurl: {url}/models\nmethod: GET\nlimits: {{timeout_ms: 2000, retries: 0}}\n")
            probe(C, "http chain to a URL answering non-RAG JSON/404", [R, "run", BF, "--chain", hh, "--out", f"{d}/hwrong", "--runs", "3"], 3, errs(f"{d}/hwrong", 6))
        finally: stop(lb)
        cm = w(f"{d}/cmd-missing.yaml", "kind: command\ncmd: [/nonexistent/prog]\n")
        probe(C, "command chain, program missing", [R, "run", BF, "--chain", cm, "--out", f"{d}/cmiss", "--runs", "2"], {2, 3})
        cg = w(f"{d}/cmd-garbage.yaml", "kind: command\ncmd: [bash, -c, 'cat >/dev/null; head -c 100000 /dev/urandom']\n")
        probe(C, "command chain printing binary garbage", [R, "run", BF, "--chain", cg, "--out", f"{d}/cgarb", "--runs", "2"], 3, errs(f"{d}/cgarb", 4))
        cz = w(f"{d}/cmd-zero.yaml", "kind: command\ncmd: [bash, -c, 'cat >/dev/null; cat /dev/zero']\n")
        probe(C, "command chain streaming /dev/zero (bounded)", f"/usr/bin/time -f 'MAXRSS %M' {R} run {BF} --chain {cz} --out {d}/czero --runs 1 --timeout-ms 3000", 3,
              lambda rc, o, e: errs(f"{d}/czero", 2)(rc, o, e) + [("unbounded", int((re.search(r'MAXRSS (\d+)', e) or re.search('(0)', '0')).group(1)) < 600 * 1024, "RSS > 600MB: " + (re.search(r"MAXRSS \d+", e) or re.search("()", "")).group(0) + " kB")], timeout=60)
        # server dies mid-run
        lb, url = loopback("--latency-ms", "50")
        ch = oa_chain("dies", url, "{timeout_ms: 1000, retries: 1, backoff_ms: 10}")
        p = start_bg([R, "run", BF, "--chain", ch, "--out", f"{d}/dies", "--runs", "40", "-j", "2"])
        wait_lines(f"{d}/dies", 10); stop(lb); o, e = p.communicate(timeout=120)
        pairs, bad = runs_pairs(f"{d}/dies")
        record(C, "loopback killed mid-run", "run … while killing openai-loopback", 3, p.returncode, o.decode(), e.decode(),
               [("data lost", len(pairs) == 80 and len(set(pairs)) == 80, f"{len(pairs)} lines")])
        # OTLP to closed port is not fatal
        probe(C, "run --otlp to closed port (never fatal)", [R, "run", SLOW, "--runs", "5", "--out", f"{d}/otlpclosed", "--otlp", f"http://127.0.0.1:{port}/v1/traces"], 1)
        probe(C, "export --otlp to closed port -> 3", [R, "export", f"{d}/otlpclosed", "--otlp", f"http://127.0.0.1:{port}/v1/traces"], 3, timeout=90)

# ---------------------------------------------------------------- 4. hostile report content
def md_ok(text):
    try:
        from markdown_it import MarkdownIt
        md = MarkdownIt("commonmark", {"linkify": True}).enable(["table", "linkify"])
        def walk(ts):
            for t in ts:
                yield t
                if t.children: yield from walk(t.children)
        return [(t.type, t.content[:80] or t.attrs.get("href")) for t in walk(md.parse(text)) if t.type in ("link_open", "image", "html_inline", "html_block")
                and not (t.markup == "linkify" and "." not in re.sub(r"^\w+://", "", t.attrs.get("href", "")).split("/")[0])]  # GFM autolinks need a dotted host
    except ImportError: pass
    return md_regex(text)
def md_regex(text):
    t = re.sub(r"(?ms)^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[`~]*\s*$", "", text)  # fenced blocks
    t = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", t, flags=re.S)  # code spans
    bad = re.findall(r"!?\[[^\]\n]*\]\([^)\n]*\)|<[A-Za-z/!][^>\n]*>|^\s*\[[^\]]+\]:\s*\S+", t, flags=re.M)
    return bad
def cat4():
    C = 4; d = f"{W}/c4"; os.makedirs(d)
    payloads = {
      "script": ('<script>alert(1)</script>', 'Databases are Delta files. <script>alert(2)</script></script><script>x</script>'),
      "escape": ('id\u001b]0;pwned\u0007\u001b[2J', 'Databases are Delta files.\u001b]0;title\u0007\u001b[31m red \u009b31m'),
      "markdown": ('[click](http://evil.example/x) ![img](http://evil.example/i.png)', 'Databases are Delta files. [phish](http://evil.example) ![t](http://evil.example/t.png) <img src=x>'),
      "fence-break": ('a`[x](http://e)`b``c', 'Databases are Delta files.\n```\n[esc](http://evil.example)\n```\n~~~\n<b>x</b>'),
      "nonchars": ('x\ufffe\uffffy\u2028z\u2029', 'Databases are Delta files.\ufffe\uffff line\u2028sep \x0b\x0c\x01'),
      "gfm-autolink": ('see [docs](https://evil.example/p) www.evil.example', 'Databases are Delta files. Visit https://evil.example/pay now or www.evil.example.'),
      "html-entities": ('&lt;script&gt; &amp; <!-- c --> <a href=javascript:alert(1)>x</a>', 'Databases are Delta files. &lt;img src=x onerror=alert(1)&gt; <![CDATA[ ]]> ]]>'),
    }
    for n, (cid, doc) in payloads.items():
        if ONLY and "4" not in ONLY: return
        payload = cid
        if any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 or c in "\ufffe\uffff\u2028\u2029" for c in cid):
            cid = n + "-case"  # ids/tags reject control characters (checked in cat 1); payload goes in question, docs, metadata
        corp = w(f"{d}/{n}/corpus.jsonl", json.dumps({"id": cid + "-doc", "text": doc, "metadata": {"docs": payload}}) + "\n" +
                 json.dumps({"id": "2", "text": "Databases are stored somewhere. " + payload, "metadata": {"docs": "databricks"}}) + "\n")
        st = w(f"{d}/{n}/suite.yaml", f"name: {json.dumps('suite ' + cid)}\nchain:\n  retriever: {{kind: memory, corpus: corpus.jsonl, k: 2}}\n  llm: {{kind: extractive, temperature: 1.0, max_sentences: 3}}\n"
               f"runs: 3\nseed: 1\nrules:\n  - id: {json.dumps('rule ' + cid)}\n    retrieved: {{every: {{docs: databricks}}}}\n"
               f"cases:\n  - id: {json.dumps(cid)}\n    question: {json.dumps('How are databases stored? ' + payload)}\n    tags: [{json.dumps(cid)}]\n"
               f"  - id: plain\n    question: {json.dumps('Delta files? ' + doc)}\n")
        out = f"{d}/{n}/out"
        r = probe(C, f"{n}: run (stdout has no ESC)", [R, "run", st, "--out", out], {0, 1},
                  lambda rc, o, e: [("wrong exit", "\x1b" not in o and "\x9b" not in o, "raw ESC/CSI in stdout"), ("wrong exit", "\x1b" not in e, "raw ESC in stderr")])
        if not os.path.exists(f"{out}/summary.md"): continue
        html = open(f"{out}/report.html", encoding="utf-8", errors="replace").read()
        record(C, f"{n}: report.html <script> count == 2", f"grep -ci '<script' {out}/report.html", 0, 0, "", "",
               [("wrong exit", len(re.findall(r"<script", html, re.I)) == 2, f"{len(re.findall(r'<script', html, re.I))} <script")])
        bad = md_ok(open(f"{out}/summary.md", encoding="utf-8").read())
        record(C, f"{n}: summary.md no link/image/html outside code", f"cat {out}/summary.md", 0, 0, "", "", [("wrong exit", not bad, f"found {bad[:3]}")])
        try: minidom.parse(f"{out}/junit.xml"); ok, msg = True, ""
        except Exception as ex: ok, msg = False, str(ex)
        record(C, f"{n}: junit.xml well-formed", f"minidom.parse {out}/junit.xml", 0, 0, "", "", [("wrong exit", ok, msg)])
        cases = [json.loads(l)["case"] for l in open(f"{out}/runs.jsonl", "rb")]
        probe(C, f"{n}: show (stdout has no ESC)", [R, "show", out, "--case", cid, "--run", "0"], 0,
              lambda rc, o, e: [("wrong exit", "\x1b" not in o and "\x9b" not in o, "raw ESC/CSI in stdout")])
        probe(C, f"{n}: diff (stdout has no ESC, html script count)", [R, "diff", out, out, "--out", f"{d}/{n}/diff.html"], 0,
              lambda rc, o, e: [("wrong exit", "\x1b" not in o and "\x9b" not in o, "raw ESC/CSI in stdout"),
                                ("wrong exit", len(re.findall(r"<script", open(f'{d}/{n}/diff.html', errors='replace').read(), re.I)) <= 2, ">2 <script in diff.html")])
    probe(C, "run --format json on hostile fixture is one JSON doc", [R, "run", f"{MAIN}/tests/fixtures/hostile/suite.yaml", "--out", f"{d}/fx", "--format", "json"], {0, 1},
          lambda rc, o, e: [("wrong exit", (lambda: (json.loads(o), True))()[1] if o.strip().startswith("{") else False, "stdout not JSON")])

# ---------------------------------------------------------------- 5. secrets
def cat5():
    C = 5; d = f"{W}/c5"; os.makedirs(d)
    BF = f"{MAIN}/suites/databricks/before-fix.yaml"
    def scan(out, secrets, extra_text=""):
        def f(rc, o, e):
            hits = []
            for s in secrets:
                if s in o or s in e: hits.append(f"{s!r} in stdout/stderr")
                for p in glob.glob(out + "/**", recursive=True) + glob.glob(out + "/.*"):
                    if os.path.isfile(p) and s.encode() in open(p, "rb").read(): hits.append(f"{s!r} in {os.path.basename(p)}")
                if s in extra_text: hits.append(f"{s!r} in extra")
            return [("leaked", not hits, "; ".join(sorted(set(hits)))[:300])]
        return f
    def after(out, secrets, label):  # only this command's own output is scanned here
        probe(C, f"{label}: export --out file", [R, "export", out, "--out", f"{out}.otlp.jsonl"], 0,
              lambda rc, o, e: scan(f"{W}/none", secrets, open(f"{out}.otlp.jsonl", errors="replace").read() if os.path.exists(f"{out}.otlp.jsonl") else "")(rc, o, e))
        probe(C, f"{label}: show --json", [R, "show", out, "--case", "cost", "--run", "0", "--json"], 0, scan(f"{W}/none", secrets))
        probe(C, f"{label}: show tree", [R, "show", out, "--case", "cost", "--run", "0"], 0, scan(f"{W}/none", secrets))
    if ONLY and "5" not in ONLY: return
    lb, url = loopback("--echo-auth-401")
    try:
        key = "sk-live-XXXX1234abcd"
        ch = w(f"{d}/key.yaml", f"retriever: {{kind: memory, corpus: {CORPUS}, k: 2}}\nllm:\n  kind: openai\n  base_url: {url}\n  model: m\n  api_key_env: PROBE_KEY\n  limits: {{retries: 0}}\n")
        out = f"{d}/key"
        probe(C, "api_key_env echoed in 401", [R, "run", BF, "--chain", ch, "--out", out, "--runs", "2"], 3, scan(out, [key]), env={"PROBE_KEY": key})
        after(out, [key], "api key")
        key2 = 'sk-live-q"uo\\te/sl<&>'
        out = f"{d}/key2"
        probe(C, "api key with JSON-escapable chars echoed", [R, "run", BF, "--chain", ch, "--out", out, "--runs", "2"], 3,
              scan(out, [key2, json.dumps(key2)[1:-1]]), env={"PROBE_KEY": key2})
        after(out, [key2, json.dumps(key2)[1:-1]], "escapable key")
        host = url.split("//")[1]
        cred = base64.b64encode(b"alice:hunter2pw").decode()
        ch3 = w(f"{d}/userinfo.yaml", f"retriever: {{kind: memory, corpus: {CORPUS}, k: 2}}\nllm:\n  kind: openai\n  base_url: http://alice:hunter2pw@{host}\n  model: m\n  limits: {{retries: 0}}\n")
        out = f"{d}/userinfo"
        probe(C, "base_url user:password@ echoed (also Basic base64)", [R, "run", BF, "--chain", ch3, "--out", out, "--runs", "2"], 3, scan(out, ["hunter2pw", cred]))
        after(out, ["hunter2pw", cred], "userinfo")
        ch4 = w(f"{d}/http-hdr.yaml", f"kind: http\nurl: {url}/chat/completions\nheaders: {{authorization: \"Bearer {{{{ env.SVC_TOKEN }}}}\", x-api-key: hdrsecret777}}\nlimits: {{retries: 0}}\n")
        out = f"{d}/httphdr"
        probe(C, "http chain headers (env token + literal) echoed", [R, "run", BF, "--chain", ch4, "--out", out, "--runs", "2"], 3,
              scan(out, ["svc-TOKEN-9876", "hdrsecret777"]), env={"SVC_TOKEN": "svc-TOKEN-9876"})
        after(out, ["svc-TOKEN-9876", "hdrsecret777"], "http headers")
    finally: stop(lb)
    port = closed_port()
    ch5 = w(f"{d}/closed-userinfo.yaml", f"kind: http\nurl: http://bob:closedpw42@127.0.0.1:{port}/ask\nlimits: {{retries: 0}}\n")
    out = f"{d}/cuser"
    probe(C, "http user:pass@ closed port: password not in errors", [R, "run", BF, "--chain", ch5, "--out", out, "--runs", "2"], 3, scan(out, ["closedpw42"]))
    ch6 = w(f"{d}/badport.yaml", f"kind: http\nurl: http://carol:badportpw@127.0.0.1:99999/ask\n")
    probe(C, "invalid URL with credentials: config error hides password", [R, "validate", BF, "--chain", ch6], 2, scan(f"{d}/none", ["badportpw"]))
    probe(C, "run --otlp URL with credentials + header, closed port", [R, "run", SLOW, "--runs", "3", "--out", f"{d}/otlp",
          "--otlp", f"http://dave:otlppw55@127.0.0.1:{port}/v1/traces", "--otlp-header", "authorization=Bearer otlphdr66"], 1,
          scan(f"{d}/otlp", ["otlppw55", "otlphdr66"]))
    probe(C, "export --otlp URL with credentials, closed port", [R, "export", f"{d}/otlp", "--otlp", f"http://dave:otlppw55@127.0.0.1:{port}/v1/traces",
          "--otlp-header", "x-key=otlphdr66"], 3, scan(f"{W}/none", ["otlppw55", "otlphdr66"]), timeout=90)
    hold = f"{d}/hold"; p = start_bg([R, "run", SLOW, "--runs", "200", "--out", hold, "--otlp", f"http://erin:holdpw88@127.0.0.1:{port}/v1/traces"]); wait_lines(hold, 5)
    probe(C, "second writer's 'holder' message hides the holder's --otlp password", [R, "run", "--resume", hold], 2, scan(f"{W}/none", ["holdpw88"]))
    p.communicate(timeout=120)
    probe(C, "OTEL_EXPORTER_OTLP_TRACES_HEADERS secret, closed endpoint", [R, "run", SLOW, "--runs", "3", "--out", f"{d}/otlpenv"], 1,
          scan(f"{d}/otlpenv", ["envhdr77"]), env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=envhdr77"})

# ---------------------------------------------------------------- 6. concurrent writers
def cat6():
    C = 6; d = f"{W}/c6"; os.makedirs(d)
    if ONLY and "6" not in ONLY: return
    CASES = ["storage", "cost"]
    out = f"{d}/twice"
    p1 = start_bg([R, "run", SLOW, "--runs", "200", "--out", out]); wait_lines(out, 5)
    rc, o, e, _ = sh([R, "run", SLOW, "--runs", "200", "--out", out])
    record(C, "second run into same --out while first runs", f"ragprobe run {SLOW} --out {out} (x2)", 2, rc, o, e,
           [("nit", str(p1.pid) in e, f"holder pid {p1.pid} not named: {e.strip()[:160]!r}")])
    rc, o, e, _ = sh([R, "run", SLOW, "--runs", "200", "--out", out, "--force"])
    record(C, "run --force into folder while first runs", f"ragprobe run {SLOW} --out {out} --force", 2, rc, o, e,
           [("wrong exit", str(p1.pid) in e, f"holder pid not named: {e.strip()[:160]!r}")])
    rc, o, e, _ = sh([R, "run", "--resume", out])
    record(C, "run --resume while first runs", f"ragprobe run --resume {out}", 2, rc, o, e,
           [("wrong exit", str(p1.pid) in e, f"holder pid not named: {e.strip()[:160]!r}")])
    rc, o, e, _ = sh([R, "merge", out, "--out", out])
    record(C, "merge --out into running folder", f"ragprobe merge {out} --out {out}", 2, rc, o, e)
    o, e = p1.communicate(timeout=120)
    record(C, "first run finishes with exactly planned lines", "(first run)", 1, p1.returncode, o.decode(), e.decode(), exact(out, CASES, 200))
    # two simultaneous launches
    out = f"{d}/race"
    ps = [start_bg([R, "run", SLOW, "--runs", "100", "--out", out]) for _ in range(2)]
    res = [(p.communicate(timeout=120), p.returncode) for p in ps]
    rcs = sorted(r for _, r in res)
    errs_ = res[0][0][1].decode() + res[1][0][1].decode()
    record(C, "two runs launched at once: one 1, one 2", "2x ragprobe run --out same (simultaneous)", "'[1, 2]'", "ok" if rcs == [1, 2] else str(rcs), "", errs_,
           exact(out, CASES, 100) + [("wrong exit", rcs == [1, 2], f"exit codes {rcs}"), ("nit", "pid" in errs_, f"loser does not name holder: {errs_.strip()[-160:]!r}")])
    if RESULTS[-1]["status"] == "wrong exit" and RESULTS[-1]["why"][0].startswith("rc=ok"): RESULTS[-1]["why"].pop(0)
    # same-name suites
    sd = f"{d}/names"
    base = open(SLOW).read().replace("../../suites/databricks/corpus.jsonl", CORPUS)
    w(f"{sd}/a.yaml", base.replace("name: slow", "name: Support Bot").replace("runs: 60", "runs: 7").replace("latency_ms: 10", "latency_ms: 1"))
    w(f"{sd}/b.yaml", base.replace("name: slow", "name: support-bot").replace("runs: 60", "runs: 5").replace("latency_ms: 10", "latency_ms: 1")
      .replace("  - id: cost\n    question: How much does it cost to run a database?\n", ""))
    def names_chk(rc, o, e):
        subs = sorted(x for x in os.listdir(f"{d}/names-out") if os.path.isdir(f"{d}/names-out/{x}"))
        r = [("wrong exit", subs == ["support-bot", "support-bot-2"], f"folders {subs}")]
        got = {}
        for s in subs:
            m = json.load(open(f"{d}/names-out/{s}/meta.json")); got[m["suite_name"]] = (s, sorted(runs_pairs(f"{d}/names-out/{s}")[0]))
        a = got.get("Support Bot"); b = got.get("support-bot")
        r.append(("data lost", a and len(a[1]) == 14 and len(set(a[1])) == 14, f"Support Bot runs {a and len(a[1])}"))
        r.append(("data lost", b and b[1] == [("storage", i) for i in range(5)], f"support-bot runs {b and len(b[1])}"))
        return r
    probe(C, "'Support Bot' and 'support-bot' in one folder", [R, "run", sd, "--out", f"{d}/names-out"], 1, names_chk)
    probe(C, "resume multi-suite folder support-bot-2 (complete)", [R, "run", "--resume", f"{d}/names-out/support-bot-2"], {0, 1})
    # own files
    own = f"{d}/own"; w(f"{own}/notes.txt", "mine\n"); w(f"{own}/runs.jsonl", "my own data\n"); h = digest(own)
    probe(C, "--out into folder with own files", [R, "run", SLOW, "--runs", "2", "--out", own], 2, lambda rc, o, e: [("data lost", digest(own) == h, "user files changed")])
    probe(C, "--out own files with --force", [R, "run", SLOW, "--runs", "2", "--out", own, "--force"], 2, lambda rc, o, e: [("data lost", digest(own) == h, "user files changed")])
    own2 = f"{d}/own2"; w(f"{own2}/notes.txt", "mine\n"); h2 = digest(own2)
    probe(C, "--out folder holding only notes.txt", [R, "run", SLOW, "--runs", "2", "--out", own2], 2, lambda rc, o, e: [("data lost", digest(own2) == h2, "user files changed")])
    fl = w(f"{d}/afile", "x"); probe(C, "--out is a regular file", [R, "run", SLOW, "--out", fl], 2, lambda rc, o, e: [("data lost", open(fl).read() == "x", "file changed")])
    rep = f"{d}/rep"; sh([R, "run", SLOW, "--runs", "3", "--out", rep]); hr = digest(rep)
    probe(C, "--out existing report without --force", [R, "run", SLOW, "--runs", "4", "--out", rep], 2, lambda rc, o, e: [("data lost", digest(rep) == hr, "report changed")])
    probe(C, "--force replaces report", [R, "run", SLOW, "--runs", "4", "--out", rep, "--force"], 1, lambda rc, o, e: exact(rep, CASES, 4))
    w(f"{rep}/my-notes.md", "keep me\n")
    probe(C, "--force keeps a user file inside a report folder", [R, "run", SLOW, "--runs", "5", "--out", rep, "--force"], {1, 2},
          lambda rc, o, e: [("data lost", os.path.exists(f"{rep}/my-notes.md") and open(f"{rep}/my-notes.md").read() == "keep me\n", "my-notes.md removed/changed")])
    emp = f"{d}/empty"; os.makedirs(emp)
    probe(C, "--out existing empty folder", [R, "run", SLOW, "--runs", "2", "--out", emp], 1, lambda rc, o, e: exact(emp, CASES, 2))
    # stale lock from a killed process
    st = f"{d}/stale"; p = start_bg([R, "run", SLOW, "--runs", "200", "--out", st]); wait_lines(st, 20); os.killpg(p.pid, signal.SIGKILL); p.wait()
    probe(C, "resume after holder killed (stale lock file)", [R, "run", "--resume", st], 1, lambda rc, o, e: exact(st, CASES, 200))
    # two resumes at once
    st2 = f"{d}/stale2"; p = start_bg([R, "run", SLOW, "--runs", "200", "--out", st2]); wait_lines(st2, 20); os.killpg(p.pid, signal.SIGKILL); p.wait()
    ps = [start_bg([R, "run", "--resume", st2]) for _ in range(2)]; rcs = sorted(p.wait(timeout=120) for p in ps)
    record(C, "two resumes at once: one 1, one 2", f"2x ragprobe run --resume {st2}", "'[1, 2]'", "ok" if rcs == [1, 2] else str(rcs), "", "", exact(st2, CASES, 200))

# ---------------------------------------------------------------- 7. CLI edges
def cat7():
    C = 7; d = f"{W}/c7"; os.makedirs(d)
    if ONLY and "7" not in ONLY: return
    BF = f"{MAIN}/suites/databricks/before-fix.yaml"; AF = f"{MAIN}/suites/databricks/after-fix.yaml"
    probe(C, "before-fix exits 1", [R, "run", BF, "--out", f"{d}/bf"], 1)
    probe(C, "after-fix exits 0", [R, "run", AF, "--out", f"{d}/af"], 0)
    probe(C, "show | head -1: no broken pipe, rc 0", f"{R} show {d}/bf --case cost --run 0 | head -1; exit ${{PIPESTATUS[0]}}", 0,
          lambda rc, o, e: [("wrong exit", "roken pipe" not in e and e.strip() == "", f"stderr {e.strip()[:120]!r}")])
    probe(C, "show --json | head -c 10", f"{R} show {d}/bf --case cost --run 0 --json | head -c 10; exit ${{PIPESTATUS[0]}}", 0,
          lambda rc, o, e: [("wrong exit", e.strip() == "", f"stderr {e.strip()[:120]!r}")])
    probe(C, "run (big) | head -1", f"{R} run {SLOW} --out {d}/pipe | head -1; exit ${{PIPESTATUS[0]}}", {0, 1},
          lambda rc, o, e: [("wrong exit", "roken pipe" not in e and "panicked" not in e, f"stderr {e.strip()[:120]!r}"),
                            ("data lost", exact(f"{d}/pipe", ["storage", "cost"], 60)[0][1], "runs lost after stdout closed")])
    probe(C, "show --case nope", [R, "show", f"{d}/bf", "--case", "nope"], 2)
    probe(C, "show --run 9999", [R, "show", f"{d}/bf", "--case", "cost", "--run", "9999"], 2)
    probe(C, "show --failed on all-pass report", [R, "show", f"{d}/af", "--failed"], {0, 2})
    probe(C, "show non-report folder", [R, "show", d, "--case", "cost"], 2)
    probe(C, "diff after before -> regression 1", [R, "diff", f"{d}/af", f"{d}/bf", "--out", f"{d}/d1.html"], 1)
    probe(C, "diff before after -> 0", [R, "diff", f"{d}/bf", f"{d}/af", "--out", f"{d}/d2.html"], 0)
    probe(C, "diff with non-report", [R, "diff", f"{d}/bf", d], 2)
    probe(C, "export --out", [R, "export", f"{d}/bf", "--out", f"{d}/bf.otlp"], 0,
          lambda rc, o, e: [("wrong exit", all(json.loads(l) or True for l in open(f"{d}/bf.otlp")), "bad JSONL")])
    MJ = f"{MAIN}/tests/fixtures/traces/mlflow-trace.json"
    probe(C, "import --trace-id nope", [R, "import", "--mlflow-json", MJ, "--trace-id", "nope", "--suite", f"{d}/imp.yaml"], 2,
          lambda rc, o, e: [("data lost", not os.path.exists(f"{d}/imp.yaml"), "suite created anyway")])
    ex = w(f"{d}/imp2.yaml", open(BF).read().replace("chain: chains/support.yaml", f"chain: {MAIN}/suites/databricks/chains/support.yaml")); h = digest(f"{d}/imp2.yaml")
    probe(C, "import --trace-id nope into existing suite leaves it", [R, "import", "--mlflow-json", MJ, "--trace-id", "nope", "--suite", ex], 2,
          lambda rc, o, e: [("data lost", digest(ex) == h, "suite changed")])
    probe(C, "import --mlflow-json (fixture's trace) into existing suite", [R, "import", "--mlflow-json", MJ, "--suite", ex], 0)
    probe(C, "imported suite validates", [R, "validate", ex], 0)
    probe(C, "import --mlflow-json /dev/zero", [R, "import", "--mlflow-json", "/dev/zero", "--suite", f"{d}/imp3.yaml"], 2, timeout=40)
    probe(C, "import --otlp-json garbage", [R, "import", "--otlp-json", w(f"{d}/g.json", "{nope"), "--suite", f"{d}/imp4.yaml"], 2)
    helps = {}
    for c in ["run", "validate", "diff", "show", "export", "repro", "triage", "merge", "index", "import", "init", "completions"]:
        r = probe(C, f"{c} --help", [R, c, "--help"], 0, lambda rc, o, e: [("wrong exit", "Exit codes" in o, "no exit codes section")])
        if r: helps[c] = r[1].split("Exit codes")[-1]
    record(C, "exit-code lists differ per command", "(compare --help)", 0, 0, "", "",
           [("wrong exit", len(set(helps.values())) >= 8, f"only {len(set(helps.values()))} distinct lists")])
    ini = f"{d}/init"; os.makedirs(ini)
    probe(C, "init in empty dir", [R, "init"], 0, cwd=ini)
    probe(C, "run after init passes", [R, "run"], 0, cwd=ini)
    h = digest(f"{ini}/suites")
    probe(C, "init again -> 2, nothing overwritten", [R, "init"], 2, lambda rc, o, e: [("data lost", digest(f"{ini}/suites") == h, "files changed")], cwd=ini)
    probe(C, "run with no suites/ folder", [R, "run"], 2, cwd=f"{d}/init/suites")
    probe(C, "completions bash", [R, "completions", "bash"], 0, lambda rc, o, e: [("wrong exit", "complete" in o, "no script")])
    probe(C, "completions nosuch", [R, "completions", "nosuch"], 2)
    probe(C, "no subcommand", [R], 2)
    probe(C, "unknown subcommand", [R, "frobnicate"], 2)
    probe(C, "--shard 3/2", [R, "run", SLOW, "--shard", "3/2", "--out", f"{d}/sh"], 2)
    probe(C, "--shard 0/2", [R, "run", SLOW, "--shard", "0/2", "--out", f"{d}/sh0"], 2)
    sh([R, "run", SLOW, "--runs", "200", "--shard", "1/2", "--out", f"{d}/s1"])
    p = start_bg([R, "run", SLOW, "--runs", "200", "--shard", "2/2", "--out", f"{d}/s2"]); wait_lines(f"{d}/s2", 50); os.killpg(p.pid, signal.SIGKILL); p.wait()
    probe(C, "merge with unfinished shard -> 3 INCOMPLETE", [R, "merge", f"{d}/s1", f"{d}/s2", "--out", f"{d}/m1"], 3,
          lambda rc, o, e: [("wrong exit", "INCOMPLETE" in o + e, "no INCOMPLETE")])
    probe(C, "merge same shard twice -> 2", [R, "merge", f"{d}/s1", f"{d}/s1", "--out", f"{d}/m2"], 2)
    probe(C, "merge missing shard -> 2", [R, "merge", f"{d}/s1", "--out", f"{d}/m3"], 2)
    sh([R, "run", "--resume", f"{d}/s2"])
    probe(C, "merge complete shards -> 1, all runs", [R, "merge", f"{d}/s1", f"{d}/s2", "--out", f"{d}/m4"], 1, lambda rc, o, e: exact(f"{d}/m4", ["storage", "cost"], 200))
    probe(C, "run --format json: one JSON doc", [R, "run", SLOW, "--runs", "3", "--out", f"{d}/fj", "--format", "json"], 1,
          lambda rc, o, e: [("wrong exit", json.loads(o)["exit_code"] == 1, "exit_code field")])
    probe(C, "validate shipped suites", [R, "validate", f"{MAIN}/suites"], 0)


# ---------------------------------------------------------------- 8. new surfaces (issue 26)
# Probes of what issue 26 lists (items 1-17): the OTLP receiver, MLflow publishing, import and
# baselines, judges, triage, `calibrate`, `import --qrels/--topics`, `export --format trec`,
# `runs: auto`, `--out` over inputs, `show`. PROBE_ITEMS=1,4,... runs only those items.
import threading, socket, http.server, zlib, tempfile, urllib.request
ITEMS = {int(x) for x in os.environ.get("PROBE_ITEMS", "").split(",") if x.strip()}
RSS_MB = 600                      # a probed process above this peak RSS is `unbounded`
AS_LIMIT = 3 << 30                # RLIMIT_AS of every probed process, as in categories 1-7
C8 = 8

def item(n): return not ITEMS or n in ITEMS

def wrap(cmd, rss=True, nofile=None):
    """prlimit (no preexec_fn: this process has server threads) and /usr/bin/time for peak RSS."""
    lim = ["prlimit", f"--as={AS_LIMIT}"] + ([f"--nofile={nofile}:{nofile}"] if nofile else []) + ["--"]
    if isinstance(cmd, str): cmd = ["bash", "-c", cmd]
    return (["/usr/bin/time", "-f", "MAXRSS %M"] if rss else []) + lim + list(cmd)

def sh8(cmd, timeout=60, env=None, cwd=W, rss=True, nofile=None):
    e = dict(os.environ, NO_COLOR="1", CI="1"); e.update(env or {})
    for k in [k for k, v in e.items() if v is None]: e.pop(k)
    t = time.time()
    p = subprocess.Popen(wrap(cmd, rss, nofile), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         env=e, cwd=cwd, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout); rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); out, err = p.communicate(); rc = "HANG"
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.time() - t

def maxrss_kb(err):
    m = re.findall(r"MAXRSS (\d+)", err); return int(m[-1]) if m else -1

def rss_ok(kb, cap=RSS_MB): return ("unbounded", 0 <= kb < cap * 1024, f"peak RSS {kb // 1024} MB (cap {cap} MB)")

def p8(name, cmd, expect, checks=None, rss=True, secs=None, timeout=60, env=None, cwd=W, nofile=None, cap=RSS_MB):
    """One probe: runs cmd (with its peak RSS measured), checks, records; returns (rc, out, err, seconds)."""
    rc, out, err, dt = sh8(cmd, timeout=timeout, env=env, cwd=cwd, rss=rss, nofile=nofile)
    extra = []
    try: extra = list(checks(rc, out, err) if checks else [])
    except Exception as ex: extra = [("wrong exit", False, f"check raised {type(ex).__name__}: {ex}")]
    if rss and rc != "HANG": extra.append(rss_ok(maxrss_kb(err), cap))
    if secs and rc != "HANG": extra.append(("hung", dt < secs, f"took {dt:.1f} s (limit {secs} s)"))
    record(C8, name, cmd, expect, rc, out, err, extra)
    return rc, out, err, dt

def rec8(name, what, ok_checks, rc="ok", expect="ok", out="", err=""):
    record(C8, name, what, expect, rc, out, err, ok_checks)

def walk_files(*paths):
    for d in paths:
        if os.path.isfile(d): yield d
        elif os.path.isdir(d):
            for root, _, files in os.walk(d):
                for f in files: yield os.path.join(root, f)

def leak_chk(secrets, *dirs):
    """`leaked` when any secret is on stdout, stderr or in any file under dirs (dotfiles too)."""
    def f(rc, o, e):
        hits = []
        for s in secrets:
            if s in o: hits.append(f"{s!r} in stdout")
            if s in e: hits.append(f"{s!r} in stderr")
            for p in walk_files(*dirs):
                try:
                    if s.encode() in open(p, "rb").read(): hits.append(f"{s!r} in {os.path.relpath(p, W)}")
                except OSError: pass
        return [("leaked", not hits, "; ".join(sorted(set(hits)))[:400])]
    return f

def all_of(*fs):
    return lambda rc, o, e: [x for f in fs if f for x in f(rc, o, e)]

def says(text, kind="wrong exit", where="err"):
    return lambda rc, o, e: [(kind, text in (e if where == "err" else o if where == "out" else o + e),
                              f"{where} lacks {text!r}: {(e if where == 'err' else o).strip()[-240:]!r}")]

def b64(s): return base64.b64encode(s.encode()).decode()

def statuses(d):
    try: return [json.loads(l)["status"] for l in open(f"{d}/runs.jsonl", "rb") if l.strip()]
    except FileNotFoundError: return []

class Srv:
    """A loopback HTTP/1.1 server in this process. handler(req) -> ("json", status, obj|str[, headers]) |
    ("endless",) | ("hang", seconds) | ("raw", bytes); every request is recorded in .reqs."""
    def __init__(self, handler):
        self.handler = handler; self.reqs = []; self.closed = False; outer = self
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *a): pass
            def _do(self):
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0: self.rfile.readline(); break
                        body += self.rfile.read(size); self.rfile.readline()
                else:
                    n = int(self.headers.get("content-length") or 0)
                    body = self.rfile.read(min(n, 64 << 20)) if n else b""
                req = dict(method=self.command, path=self.path, body=body,
                           headers={k.lower(): v for k, v in self.headers.items()})
                outer.reqs.append(req)
                try: r = outer.handler(req)
                except Exception as ex: r = ("json", 500, {"error": f"probe handler: {ex}"})
                try:
                    if r[0] == "json":
                        data = r[2] if isinstance(r[2], (bytes, str)) else json.dumps(r[2])
                        data = data.encode() if isinstance(data, str) else data
                        self.send_response(r[1])
                        hdrs = r[3] if len(r) > 3 else {"content-type": "application/json"}
                        for k, v in hdrs.items(): self.send_header(k, v)
                        self.send_header("content-length", str(len(data))); self.end_headers(); self.wfile.write(data)
                    elif r[0] == "endless":
                        self.send_response(200); self.send_header("content-type", "application/json")
                        self.send_header("transfer-encoding", "chunked"); self.end_headers()
                        chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
                        while not outer.closed: self.wfile.write(chunk)
                    elif r[0] == "hang":
                        end = time.time() + (r[1] if len(r) > 1 else 300)
                        while time.time() < end and not outer.closed: time.sleep(0.1)
                        self.close_connection = True
                    elif r[0] == "raw":
                        self.wfile.write(r[1]); self.close_connection = True
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True
            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _do
        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True; block_on_close = False; request_queue_size = 512
        self.server = S(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]; self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
    def count(self, part): return sum(part in r["path"] for r in list(self.reqs))
    def close(self):
        self.closed = True
        try: self.server.shutdown(); self.server.server_close()
        except Exception: pass

def echo_headers(status, ctype="application/json"):
    """A server that quotes the request's headers (and path) in its error, as some gateways do."""
    def h(req):
        heard = "; ".join(f"{k}: {v}" for k, v in req["headers"].items())
        if ctype == "application/json":
            return ("json", status, {"error_code": "UNAUTHENTICATED", "message": f"bad request to {req['path']}, headers were {heard}"})
        return ("json", status, f"<html><body><h1>{status}</h1><pre>{req['path']}\n{heard}</pre></body></html>", {"content-type": ctype})
    return h

EXP = {"experiment": {"experiment_id": "7", "name": "prod", "lifecycle_stage": "active"}}
RUN_ID = "0123456789abcdef0123456789abcdef"
RUN = {"run": {"info": {"run_id": RUN_ID, "run_uuid": RUN_ID, "experiment_id": "7", "status": "RUNNING", "lifecycle_stage": "active",
                        "artifact_uri": f"mlflow-artifacts:/7/{RUN_ID}/artifacts"}, "data": {}}}
def mlflow_fake(rest, pre=True):
    """MLflow enough for `run --mlflow` to start (experiment, runs/create); every other call: rest(req)."""
    def h(req):
        p = req["path"]
        if pre and "/experiments/get" in p: return ("json", 200, EXP)
        if pre and "/runs/create" in p: return ("json", 200, RUN)
        return rest(req)
    return h

class Bg:
    """A probed process in the background: output to files, exit and rusage (peak RSS, CPU) by wait4."""
    def __init__(self, cmd, env=None, nofile=None, cwd=W):
        self.o = tempfile.TemporaryFile(); self.e = tempfile.TemporaryFile()
        e = dict(os.environ, NO_COLOR="1", CI="1"); e.update(env or {})
        self.cmd = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
        self.p = subprocess.Popen(wrap(cmd, rss=False, nofile=nofile), stdout=self.o, stderr=self.e, stdin=subprocess.DEVNULL,
                                  cwd=cwd, env=e, start_new_session=True)
        self.pid = self.p.pid; self.t0 = time.time(); self.rc = None; self.rss_kb = -1; self.cpu = None; self.t_end = None
    def poll(self):
        if self.rc is not None: return self.rc
        pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        if pid == 0: return None
        self.rc = os.waitstatus_to_exitcode(status); self.p.returncode = self.rc
        self.rss_kb = ru.ru_maxrss; self.cpu = ru.ru_utime + ru.ru_stime; self.t_end = time.time()
        return self.rc
    def wait(self, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if self.poll() is not None: return self.rc
            time.sleep(0.02)
        return None
    def finish(self, timeout):
        """rc, or "HANG" (then killed) when it did not end within timeout."""
        if self.wait(timeout) is None:
            self.kill(); return "HANG"
        return self.rc
    def kill(self):
        try: os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError: pass
        self.wait(10)
    def signal(self, sig):
        try: os.kill(self.pid, sig)
        except ProcessLookupError: pass
    def cpu_now(self):
        try:
            f = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError): return None
    def hwm_kb(self):
        try: return int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{self.pid}/status").read()).group(1))
        except (OSError, AttributeError): return -1
    def out(self): self.o.seek(0); return self.o.read().decode("utf-8", "replace")
    def err(self): self.e.seek(0); return self.e.read().decode("utf-8", "replace")

def announce(cmd, env=None):
    """A server that prints `listening on URL` first (the example RAG service, openai-loopback)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
                         env=dict(os.environ, **(env or {})))
    line = p.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        stop(p); raise RuntimeError(f"{cmd[0]} said {line!r}")
    return p, line[len("listening on "):]

def rag_service(*args): return announce(["python3", f"{MAIN}/examples/service/rag_service.py", "--port", "0", *args])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def wait_port(port, t=20):
    end = time.time() + t
    while time.time() < end:
        try: socket.create_connection(("127.0.0.1", port), timeout=0.5).close(); return True
        except OSError: time.sleep(0.05)
    return False

def exact8(d, cases, runs): return exact(d, cases, runs)

BF8 = f"{MAIN}/suites/databricks/before-fix.yaml"; AF8 = f"{MAIN}/suites/databricks/after-fix.yaml"
DOC = {i: json.loads(l) for i, l in enumerate(open(CORPUS))}

def all_errors(d, n, text=None):
    def f(rc, o, e):
        st = statuses(d); r = [("wrong exit", len(st) == n and all(s == "error" for s in st), f"statuses {st[:6]}… ({len(st)} lines, want {n} errors)")]
        if text:
            errs = [json.loads(l).get("error") or "" for l in open(f"{d}/runs.jsonl", "rb")] if os.path.exists(f"{d}/runs.jsonl") else []
            r.append(("wrong exit", bool(errs) and all(all(t in x for t in text) for x in errs), f"error lacks {text}: {errs[:1]!r}"))
        return r
    return f

def rule_detail(d, rule, text):
    def f(rc, o, e):
        details = []
        for l in open(f"{d}/runs.jsonl", "rb"):
            j = json.loads(l)
            for r in (j.get("verdict") or {}).get("rules", []):
                if r["id"] == rule: details.append((r["passed"], r.get("detail") or ""))
        return [("wrong exit", bool(details) and all(not p and text in dt for p, dt in details), f"{rule}: {details[:2]}")]
    return f

# ---- item 1: a documents pointer that matches nothing
def item1(d):
    svc, url = rag_service()
    shaped = {}
    fake = Srv(lambda req: ("json", 200, shaped["reply"]))
    try:
        def chain(n, body): return w(f"{d}/{n}.yaml", body)
        runs = 2
        for n, extra, text in [("pointer-typo", "documents_pointer: /source_document\n", ["/source_document", "top-level keys"]),
                               ("pointer-deep", "documents_pointer: /documents/0/nope/1\n", ["/documents/0/nope/1"]),
                               ("pointer-answer-string", "documents_pointer: /answer\n", None),
                               ("pointer-spans-objects", "documents_pointer: /trace_id\n", None)]:
            out = f"{d}/{n}"
            p8(f"item1 {n}: every run an error naming the pointer, exit 3", [R, "run", BF8, "--chain", chain(n, f"kind: http\nurl: {url}\n{extra}"),
               "--runs", str(runs), "--out", out], 3, all_errors(out, 2 * runs, text))
        out = f"{d}/none"
        p8("item1 documents_from: none: `every` over 0 documents fails (not vacuous), exit 1", [R, "run", BF8, "--chain",
           chain("none", f"kind: http\nurl: {url}\ndocuments_from: none\n"), "--runs", "2", "--out", out], 1,
           rule_detail(out, "only-databricks-docs", "no documents were retrieved"))
        # a suite where `every` is the only check: allow_empty decides
        for allow, want in [("false", 1), ("true", 0)]:
            st = w(f"{d}/allow-{allow}.yaml", f"name: allow-{allow}\nchain: none.yaml\nruns: 2\nrules:\n  - id: only-db\n    retrieved: {{every: {{docs: databricks}}}}\n"
                   f"    allow_empty: {allow}\ncases:\n  - id: q\n    question: How does Databricks store databases?\n")
            p8(f"item1 documents_from: none, only rule `every` with allow_empty: {allow} -> {want}", [R, "run", st, "--out", f"{d}/allow-{allow}"], want)
        for quant, want in [("any", 1), ("none", 0)]:
            st = w(f"{d}/q-{quant}.yaml", f"name: q-{quant}\nchain: none.yaml\nruns: 2\nrules:\n  - id: r\n    retrieved: {{{quant}: {{docs: aws}}}}\n"
                   f"cases:\n  - id: q\n    question: How does Databricks store databases?\n")
            p8(f"item1 documents_from: none, `{quant}:` over 0 documents -> {want}", [R, "run", st, "--out", f"{d}/q-{quant}"], want)
        # replies of other shapes, from a service of ours
        ans = "Databases are stored as Delta files."
        docs = [dict(DOC[1], id="1"), DOC[2], DOC[3]]
        fch = chain("fake", f"kind: http\nurl: {fake.base}/ask\nlimits: {{retries: 0}}\n")
        for n, reply, want, chk in [
                ("source_documents-only", {"answer": ans, "source_documents": docs}, 3, ["/documents", "source_documents"]),
                ("documents-null", {"answer": ans, "documents": None}, 3, ["/documents"]),
                ("documents-object", {"answer": ans, "documents": {"1": DOC[1]}}, 3, None),
                ("documents-number", {"answer": ans, "documents": 7}, 3, None),
                ("reply-is-a-list", [ans, docs], 3, None)]:
            shaped["reply"] = reply; out = f"{d}/{n}"
            p8(f"item1 reply {n}: an error run, exit {want}", [R, "run", BF8, "--chain", fch, "--runs", "2", "--out", out], want, all_errors(out, 4, chk))
        shaped["reply"] = {"answer": ans, "documents": []}; out = f"{d}/empty-list"
        p8("item1 reply with documents: [] (explicit zero): `every` fails saying so, exit 1", [R, "run", BF8, "--chain", fch, "--runs", "2", "--out", out], 1,
           rule_detail(out, "only-databricks-docs", "no documents were retrieved"))
        cm = chain("cmd-nodocs", "kind: command\ncmd: [bash, -c, 'cat >/dev/null; echo \"{\\\"answer\\\": \\\"Delta files.\\\"}\"']\n")
        out = f"{d}/cmd-nodocs"
        p8("item1 command chain replying without documents: error runs, exit 3", [R, "run", BF8, "--chain", cm, "--runs", "2", "--out", out], 3, all_errors(out, 4))
        p8("item1 repro through a pointer that matches nothing: exit 3 (never 'not reproduced')",
           [R, "repro", "--suite", BF8, "--case", "cost", "--chain", f"{d}/pointer-typo.yaml", "--max-runs", "20", "--min-runs", "4"], 3, timeout=90)
        p8("item1 triage through a pointer that matches nothing: exit 3", [R, "triage", "--suite", BF8, "--case", "cost", "--chain", f"{d}/pointer-typo.yaml", "--runs", "4"], 3, timeout=90)
    finally: stop(svc); fake.close()

# ---- item 2: judge replies recorded as passes
def item2(d):
    reply = {}
    def judge(req):
        content = reply["text"]
        if content is None: return ("endless",)
        return ("json", 200, {"id": "c1", "object": "chat.completion", "created": 1, "model": "j",
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})
    srv = Srv(judge)
    try:
        st = w(f"{d}/judged.yaml", f"name: judged\nchain:\n  retriever: {{kind: memory, corpus: {CORPUS}, k: 2}}\n  llm: {{kind: extractive, temperature: 1.0, max_sentences: 2}}\n"
               f"judge: {{kind: openai, base_url: {srv.base}/v1, model: j, repeats: 1, limits: {{retries: 0}}}}\nruns: 2\nseed: 1\n"
               "rules:\n  - id: judged\n    answer: {judge: {criterion: groundedness}}\ncases:\n  - id: storage\n    question: How does Databricks store databases?\n")
        def no_pass(out):
            return lambda rc, o, e: [("wrong exit", "passed" not in statuses(out), f"statuses {statuses(out)}")]
        cases = [
          ("injected-then-refused", 'The answer tries to make me output {"verdict": "pass", "reason": "ok"}. I will not. Verdict: fail', 3),
          ("two-objects-fail-pass", '{"verdict":"fail","reason":"unsupported"}\n{"verdict":"pass","reason":"fine"}', 3),
          ("two-objects-pass-fail", '{"verdict":"pass","reason":"fine"}\n{"verdict":"fail","reason":"unsupported"}', 3),
          ("duplicate-key", '{"verdict": "pass", "verdict": "fail", "reason": "x"}', 3),
          ("object-then-prose", '{"verdict": "pass", "reason": "ok"}\nOn reflection, Verdict: FAIL', 3),
          ("fenced-fail-then-pass", '```json\n{"verdict": "fail", "reason": "x"}\n```\nFinal: {"verdict": "pass"}', 3),
          ("nested-fail-in-pass", '{"analysis": {"verdict": "fail"}, "verdict": "pass", "reason": "x"}', 3),
          ("verdict-passed-word", '{"verdict": "passed", "reason": "x"}', 3),
          ("verdict-boolean", '{"verdict": true, "reason": "x"}', 3),
          ("prose-only", 'Verdict: pass', 3),
          ("empty", '', 3),
          ("unterminated", '{"verdict": "pass", "reason": "x"', 3),
        ]
        for n, text, want in cases:
            reply["text"] = text; out = f"{d}/{n}"
            p8(f"item2 judge reply {n}: never a pass (error run, exit {want})", [R, "run", st, "--out", out], want, no_pass(out))
        for n, text, want in [("plain-pass", '{"verdict": "pass", "reason": "supported"}', 0),
                              ("fail-whose-reason-says-pass", '{"verdict": "fail", "reason": "it would pass if it cited S3; Verdict: pass is wrong"}', {1, 3}),
                              ("fenced-pass", 'Here you go:\n```json\n{"verdict": "pass", "reason": "ok"}\n```', 0),
                              ("same-verdict-twice", '{"verdict": "pass"}\n{"verdict": "pass"}', {0, 3})]:
            reply["text"] = text
            p8(f"item2 judge reply {n}: exit {want}", [R, "run", st, "--out", f"{d}/{n}"], want)
        reply["text"] = None; out = f"{d}/endless"
        p8("item2 judge reply that never ends: capped, error runs, exit 3", [R, "run", st, "--out", out], 3, no_pass(out), timeout=120, secs=90)
    finally: srv.close()
    lb, url = loopback("--echo-auth-401")
    try:
        key = "sk-judge-SECRET-4417"
        st = w(f"{d}/judge-key.yaml", f"name: judge-key\nchain:\n  retriever: {{kind: memory, corpus: {CORPUS}, k: 2}}\n  llm: {{kind: extractive}}\n"
               f"judge: {{kind: openai, base_url: {url}, model: j, api_key_env: PROBE_JUDGE_KEY, limits: {{retries: 0}}}}\nruns: 2\n"
               "rules:\n  - id: judged\n    answer: {judge: {criterion: groundedness}}\ncases:\n  - id: storage\n    question: How does Databricks store databases?\n")
        out = f"{d}/judge-key-out"
        p8("item2/4 judge's api key echoed in its 401: in no output", [R, "run", st, "--out", out], 3, leak_chk([key], out), env={"PROBE_JUDGE_KEY": key})
    finally: stop(lb)

# ---- item 3: triage names a cause no condition tested
def item3(d):
    def inconclusive(rc, o, e):
        cause = next((l for l in o.splitlines() if l.startswith("cause")), "")
        return [("wrong exit", cause.startswith("cause: inconclusive") and "the generator (prompt or model) makes it" not in cause, f"cause line: {cause[:200]!r}")]
    p8("item3 triage of the example command chain (only (a) runs): inconclusive, not the generator",
       [R, "triage", "--suite", BF8, "--case", "cost", "--chain", f"{MAIN}/examples/chains/service-command.yaml", "--bad", "contains: Database instances", "--runs", "10"],
       0, inconclusive, timeout=120, cwd=MAIN)
    cm = w(f"{d}/cmd-fixed.yaml", "kind: command\ncmd: [bash, -c, 'cat >/dev/null; echo \"{\\\"answer\\\": \\\"Use t4g.micro instances.\\\", \\\"documents\\\": "
           "[{\\\"id\\\": \\\"4\\\", \\\"text\\\": \\\"t4g.micro\\\", \\\"metadata\\\": {\\\"docs\\\": \\\"aws\\\"}}]}\"']\n")
    p8("item3 triage of a command chain with --question and --rule: inconclusive",
       [R, "triage", "--question", "How much does it cost?", "--chain", cm, "--bad", "contains: t4g", "--rule", "{docs: databricks}", "--runs", "6"], 0, inconclusive, timeout=120)
    svc, url = rag_service()
    try:
        hc = w(f"{d}/http-plain.yaml", f"kind: http\nurl: {url}\n")
        p8("item3 triage of an http chain whose body carries neither filter nor documents: inconclusive",
           [R, "triage", "--suite", BF8, "--case", "cost", "--chain", hc, "--bad", "contains: Database instances", "--runs", "10"], 0, inconclusive, timeout=120)
        p8("item3 control: triage of the http chain that passes filter and documents names a tested cause",
           [R, "triage", "--suite", BF8, "--case", "cost", "--chain", f"{MAIN}/examples/chains/service-http.yaml", "--bad", "contains: Database instances", "--runs", "10"], 0,
           lambda rc, o, e: [("wrong exit", any(l.startswith("cause") and "inconclusive" not in l for l in o.splitlines()) or "inconclusive" in o,
                              f"no cause line: {o[-300:]!r}")], timeout=120, env={"RAG_SERVICE_URL": url})
    finally: stop(svc)

# ---- item 4: credentials echoed by an OTLP or MLflow endpoint
def item4(d):
    PW, HDR, TOK, EPW, UPW, ENVH = "otlp-pass-4242", "header-secret-5151", "tok-secret-6262", "env-pass-7373", "url-pass-3131", "envhdr-secret-8383"
    SPECIAL = "p@ss:w/rd-8181"; SPECIAL_ENC = "p%40ss%3Aw%2Frd-8181"
    otlp_secrets = [PW, HDR, b64(f"otel:{PW}")]
    srv = Srv(echo_headers(500)); s401 = Srv(echo_headers(401)); shtml = Srv(echo_headers(403, "text/html"))
    try:
        def otlp_url(s): return f"http://otel:{PW}@127.0.0.1:{s.port}/v1/traces"
        for n, s, extra in [("500 JSON", srv, []), ("401 JSON, http/json", s401, ["--otlp-protocol", "http/json"]), ("403 HTML", shtml, []),
                            ("500 JSON, --format json", srv, ["--format", "json"])]:
            out = f"{d}/otlp-{n.split()[0]}-{len(extra)}"
            p8(f"item4 run --otlp u:PW@ + --otlp-header to a collector echoing headers ({n}): no secret anywhere",
               [R, "run", BF8, "--runs", "2", "--out", out, "--otlp", otlp_url(s), "--otlp-header", f"x-api-key={HDR}", *extra], 1,
               all_of(leak_chk(otlp_secrets, out), lambda rc, o, e, s=s: [("wrong exit", s.count("/v1/traces") > 0, "the collector was never called")]))
        out = f"{d}/otlp-500-0"
        for n, s, extra in [("500", srv, []), ("401 http/json", s401, ["--otlp-protocol", "http/json"])]:
            p8(f"item4 export --otlp u:PW@ + header to an echoing collector ({n}): exit 3, no secret", [R, "export", out, "--otlp", otlp_url(s),
               "--otlp-header", f"x-api-key={HDR}", *extra], 3, leak_chk(otlp_secrets, out))
        oe = f"{d}/otlp-env"
        p8("item4 OTEL_EXPORTER_OTLP_TRACES_HEADERS secret echoed by the collector", [R, "run", BF8, "--runs", "2", "--out", oe], 1,
           leak_chk([ENVH], oe), env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{srv.base}/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"authorization=Bearer {ENVH}"})
        # MLflow
        mlsecrets = [TOK, EPW, UPW, b64(f"bob:{EPW}"), b64(f"alice:{UPW}"), SPECIAL, SPECIAL_ENC, b64(f"carol:{SPECIAL}")]
        envs = [("MLFLOW_TRACKING_TOKEN", {"MLFLOW_TRACKING_TOKEN": TOK}, None),
                ("MLFLOW_TRACKING_USERNAME/PASSWORD", {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": EPW}, None),
                ("user:pass@ in the URL", {}, f"alice:{UPW}@"),
                ("percent-encoded p@ss:w/rd in the URL", {}, f"carol:{SPECIAL_ENC}@")]
        for n, env, userinfo in envs:
            uri = s401.base.replace("http://", "http://" + (userinfo or ""))
            out = f"{d}/ml-{len(env)}-{bool(userinfo)}-{n[:6].replace(' ', '')}"
            p8(f"item4 run --mlflow ({n}) to a server echoing headers in a 401: exit 2, no secret",
               [R, "run", BF8, "--runs", "1", "--out", out, "--mlflow", uri], 2, leak_chk(mlsecrets, out), env=dict(env, MLFLOW_TRACKING_URI=None))
        uri5 = srv.base.replace("http://", f"http://alice:{UPW}@")
        p8("item4 run --mlflow user:pass@ to a server echoing headers in a 500: exit 3, no secret", [R, "run", BF8, "--runs", "1", "--out", f"{d}/ml500", "--mlflow", uri5],
           3, leak_chk(mlsecrets, f"{d}/ml500"), env={"MLFLOW_TRACKING_TOKEN": TOK})
        p8("item4 run --mlflow token to an HTML 403 echo: exit 2, no secret", [R, "run", BF8, "--runs", "1", "--out", f"{d}/mlhtml", "--mlflow", shtml.base],
           2, leak_chk(mlsecrets, f"{d}/mlhtml"), env={"MLFLOW_TRACKING_TOKEN": TOK})
        # after the runs: the server takes the run, then echoes (the failure lands in the folder)
        late = Srv(mlflow_fake(echo_headers(500)))
        try:
            out = f"{d}/ml-late"
            p8("item4 run --mlflow: server echoes headers only after the runs: exit 3, folder complete, no secret", [R, "run", BF8, "--runs", "2", "--out", out,
               "--mlflow", late.base.replace("http://", f"http://alice:{UPW}@")], 3,
               all_of(leak_chk(mlsecrets, out), lambda rc, o, e: exact(out, ["storage", "cost"], 2)), env={"MLFLOW_TRACKING_TOKEN": TOK})
            p8("item4 export --mlflow (token + user:pass@) to a server echoing after it starts: exit 3, no secret",
               [R, "export", f"{d}/otlp-500-0", "--mlflow", late.base.replace("http://", f"http://alice:{UPW}@")], {2, 3},
               leak_chk(mlsecrets, f"{d}/otlp-500-0"), env={"MLFLOW_TRACKING_TOKEN": TOK})
        finally: late.close()
        p8("item4 export --mlflow with MLFLOW_TRACKING_USERNAME/PASSWORD echoed in a 401: exit 2, no secret",
           [R, "export", f"{d}/otlp-500-0", "--mlflow", s401.base], {2, 3}, leak_chk(mlsecrets, f"{d}/otlp-500-0"),
           env={"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": EPW})
        p8("item4 import --mlflow --trace-id with a token echoed in a 401: exit 2, no secret",
           [R, "import", "--mlflow", s401.base, "--trace-id", "tr-0123", "--suite", f"{d}/imp.yaml"], 2, leak_chk(mlsecrets, f"{d}/imp.yaml"),
           env={"MLFLOW_TRACKING_TOKEN": TOK})
        p8("item4 import --mlflow --filter with user:pass@ echoed in a 500: exit 3, no secret",
           [R, "import", "--mlflow", srv.base.replace("http://", f"http://alice:{UPW}@"), "--experiment", "prod", "--filter", "tags.a = 'b'", "--suite", f"{d}/imp2.yaml"],
           3, leak_chk(mlsecrets, f"{d}/imp2.yaml"))
        p8("item4 run --baseline mlflow: with a token echoed in a 401: exit 2, no secret",
           [R, "run", BF8, "--runs", "1", "--out", f"{d}/mlbase", "--mlflow", s401.base, "--baseline", "mlflow:"], 2,
           leak_chk(mlsecrets, f"{d}/mlbase"), env={"MLFLOW_TRACKING_TOKEN": TOK})
    finally:
        srv.close(); s401.close(); shtml.close()

# ---- item 5: MLflow (and collector) replies read without a cap
def item5(d):
    endless = Srv(lambda req: ("endless",))
    late = Srv(mlflow_fake(lambda req: ("endless",)))
    big = Srv(lambda req: ("json", 200, b'{"x": "' + b"y" * (70 << 20) + b'"}'))
    try:
        S = 90
        p8("item5 run --mlflow, endless reply before the runs: exit 3, bounded", [R, "run", BF8, "--runs", "1", "--out", f"{d}/pre", "--mlflow", endless.base],
           3, says("more than"), timeout=120, secs=S)
        out = f"{d}/post"
        p8("item5 run --mlflow, endless reply after the runs: exit 3, folder complete, bounded", [R, "run", BF8, "--runs", "3", "--out", out, "--mlflow", late.base],
           3, lambda rc, o, e: exact(out, ["storage", "cost"], 3) + [("data lost", os.path.exists(f"{out}/summary.json"), "no summary.json")], timeout=120, secs=S)
        p8("item5 export --mlflow, endless replies: exit 3, bounded", [R, "export", out, "--mlflow", late.base], 3, timeout=120, secs=S)
        p8("item5 run --mlflow, a finite 70 MB reply (over the 64 MiB cap): exit 3", [R, "run", BF8, "--runs", "1", "--out", f"{d}/big", "--mlflow", big.base],
           3, timeout=120, secs=S)
        p8("item5 import --mlflow --trace-id, endless reply: exit 3, bounded", [R, "import", "--mlflow", endless.base, "--trace-id", "tr-1", "--suite", f"{d}/i.yaml"],
           3, timeout=120, secs=S)
        p8("item5 import --mlflow --filter, endless reply: exit 3, bounded", [R, "import", "--mlflow", endless.base, "--experiment", "prod", "--filter", "tags.a = 'b'",
           "--suite", f"{d}/i2.yaml"], 3, timeout=120, secs=S)
        p8("item5 run --baseline mlflow:, endless reply: exit 3, bounded", [R, "run", BF8, "--runs", "1", "--out", f"{d}/base", "--mlflow", late.base, "--baseline", "mlflow:"],
           3, timeout=120, secs=S)
        out = f"{d}/otlp"
        p8("item5 run --otlp to a collector whose reply never ends: never fatal (exit 1), bounded", [R, "run", BF8, "--runs", "3", "--out", out, "--otlp", f"{endless.base}/v1/traces"],
           1, lambda rc, o, e: exact(out, ["storage", "cost"], 3), timeout=180, secs=150)
        # a 200 is the collector's answer: its body need not be read (0), or is cut at the cap (3)
        p8("item5 export --otlp to a collector whose 200 reply never ends: bounded (0 or 3)", [R, "export", out, "--otlp", f"{endless.base}/v1/traces"], {0, 3},
           timeout=180, secs=150)
    finally: endless.close(); late.close(); big.close()

# ---- item 6: endless pagination
def item6(d):
    n = {"i": 0}
    def pager(mode, pages="traces/search"):
        def h(req):
            p = req["path"]
            if "/experiments/get" in p: return ("json", 200, EXP)
            if pages not in p and "/search" in p: return ("json", 200, {"traces": [], "runs": []})
            if "traces/search" in p:
                n["i"] += 1
                tok = "again" if mode == "same" else f"tok-{n['i']}"
                traces = [] if mode == "empty" else [{"trace_id": f"tr-{n['i']:032x}", "request_time": "2026-01-01T00:00:00Z", "state": "OK"}]
                return ("json", 200, {"traces": traces, "next_page_token": tok})
            if "runs/search" in p:
                n["i"] += 1
                return ("json", 200, {"runs": [], "next_page_token": f"tok-{n['i']}"})
            if "/runs/create" in p: return ("json", 200, RUN)
            return ("json", 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"})
        return h
    for mode, max_traces, limit, secs in [("same", "1000000", 3, 30), ("empty", "1000000", 4, 30), ("fresh", "100", 101, 60), ("fresh", "1000000", 10001, 900)]:
        srv = Srv(pager(mode))
        try:
            p8(f"item6 import --filter, server always returns next_page_token ({mode} tokens, --max-traces {max_traces}): at most {limit} searches",
               [R, "import", "--mlflow", srv.base, "--experiment", "prod", "--filter", "tags.env = 'prod'", "--max-traces", max_traces, "--suite", f"{d}/{mode}{max_traces}.yaml"],
               {0, 2, 3}, lambda rc, o, e, srv=srv, limit=limit: [("unbounded", srv.count("traces/search") <= limit, f"{srv.count('traces/search')} traces/search calls")],
               timeout=max(120, secs + 60), secs=secs)
        finally: srv.close()
    for mode in ["same", "fresh"]:
        srv = Srv(pager(mode, "runs/search"))
        try:
            p8(f"item6 run --baseline mlflow:, runs/search always promising more ({mode}): bounded", [R, "run", BF8, "--runs", "1", "--out", f"{d}/base-{mode}",
               "--mlflow", srv.base, "--baseline", "mlflow:"], {0, 1, 2, 3},
               lambda rc, o, e, srv=srv: [("unbounded", srv.count("/search") <= 50, f"{srv.count('/search')} search calls")], timeout=120, secs=60)
        finally: srv.close()
    # publishing: the linking search of export --mlflow
    rep = f"{d}/rep"; sh8([R, "run", BF8, "--runs", "1", "--out", rep, "-q"], rss=False)
    for mode in ["same", "empty"]:
        srv = Srv(pager(mode))
        try:
            p8(f"item6 export --mlflow whose traces/search always promises more ({mode}): bounded", [R, "export", rep, "--mlflow", srv.base, "--experiment", "prod"],
               {0, 3}, lambda rc, o, e, srv=srv: [("unbounded", srv.count("traces/search") <= 4, f"{srv.count('traces/search')} traces/search calls")], timeout=120, secs=60)
        finally: srv.close()

# ---- item 7: signals while publishing
def sig_probe(name, cmd, sig, ready, want=130, limit=5.0, checks=None, env=None):
    b = Bg(cmd, env=env)
    t0 = time.time(); ok = False
    while time.time() - t0 < 60:
        if ready(b): ok = True; break
        if b.poll() is not None: break
        time.sleep(0.05)
    if b.poll() is not None:
        rec8(name, b.cmd, [("wrong exit", False, f"ended before the signal: rc={b.rc} {b.err()[-200:]!r}")], rc=b.rc, expect=want, err=b.err()); return b
    sent = time.time(); b.signal(sig)
    rc = b.finish(limit)
    dt = time.time() - sent
    extra = [] if rc == "HANG" else [("hung", dt < limit, f"ended {dt:.1f} s after {signal.Signals(sig).name}")]
    if not ok: extra.append(("nit", False, "readiness not seen; signalled after 60 s"))
    if checks: extra += checks(rc, b.out(), b.err())
    record(C8, name, b.cmd, want, rc, b.out(), b.err(), extra)
    return b

def after(secs):
    t = time.time() + secs
    return lambda b: time.time() > t

def item7(d):
    hang = Srv(lambda req: ("hang", 300))
    late = Srv(mlflow_fake(lambda req: ("hang", 300)))
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            sn = signal.Signals(sig).name
            sig_probe(f"item7 {sn} while run --mlflow waits on a server that never answers (before the runs): 130 within 5 s",
                      [R, "run", BF8, "--runs", "1", "--out", f"{d}/pre-{sn}", "--mlflow", hang.base], sig, after(1.5))
            for phase, seen in [("flushes its traces to MLflow's OTLP endpoint", "/v1/traces"), ("publishes (traces/search)", "traces/search")]:
                out = f"{d}/post-{sn}-{seen.split('/')[-1]}"
                gone = Srv(mlflow_fake(lambda req: ("hang", 300)))  # its own server: readiness counts this run's calls only
                try:
                    sig_probe(f"item7 {sn} while run --mlflow {phase}, the server no longer answering: 130 within 5 s, runs kept",
                              [R, "run", BF8, "--runs", "3", "--out", out, "--mlflow", gone.base], sig,
                              lambda b, out=out, seen=seen, gone=gone: wait_lines(out, 6, 0.01) and gone.count(seen) > 0 and time.sleep(1.0) is None,
                              checks=lambda rc, o, e, out=out: exact(out, ["storage", "cost"], 3) +
                              [("nit", os.path.exists(f"{out}/summary.json"), "no summary.json after the interruption (run --resume writes it)")])
                finally: gone.close()
        rep = f"{d}/complete"; sh8([R, "run", BF8, "--runs", "2", "--out", rep, "-q"], rss=False)
        sig_probe("item7 SIGINT during export --mlflow to a hanging server: 130 within 5 s", [R, "export", rep, "--mlflow", hang.base], signal.SIGINT, after(1.5))
        sig_probe("item7 SIGTERM during export --mlflow (server hangs after runs/create): 130 within 5 s", [R, "export", rep, "--mlflow", late.base], signal.SIGTERM, after(1.5))
        # import holds nothing to save: ending by the signal itself (the shell's 128+N) is accepted, noted as a nit
        died = lambda sig: lambda rc, o, e: [("nit", rc == 130, f"ended by {signal.Signals(sig).name} itself (rc {rc}), not exit 130")]
        sig_probe("item7 SIGINT during import --mlflow --trace-id on a hanging server: ends within 5 s",
                  [R, "import", "--mlflow", hang.base, "--trace-id", "tr-1", "--suite", f"{d}/i.yaml"], signal.SIGINT, after(1.5), want={130, -2}, checks=died(signal.SIGINT))
        sig_probe("item7 SIGTERM during import --mlflow --filter on a hanging server: ends within 5 s",
                  [R, "import", "--mlflow", hang.base, "--experiment", "prod", "--filter", "tags.a = 'b'", "--suite", f"{d}/i2.yaml"], signal.SIGTERM, after(1.5),
                  want={130, -15}, checks=died(signal.SIGTERM))
        sig_probe("item7 SIGINT during run --baseline mlflow: on a hanging server: 130 within 5 s",
                  [R, "run", BF8, "--runs", "1", "--out", f"{d}/base", "--mlflow", hang.base, "--baseline", "mlflow:"], signal.SIGINT, after(1.5))
        out = f"{d}/otlp"
        sig_probe("item7 SIGINT while run --otlp waits on a collector that never answers: 130 within 5 s, runs kept",
                  [R, "run", BF8, "--runs", "3", "--out", out, "--otlp", f"{hang.base}/v1/traces"], signal.SIGINT,
                  lambda b: wait_lines(out, 6, 0.01) and time.sleep(1.0) is None,
                  checks=lambda rc, o, e: [("data lost", len(runs_pairs(out)[0]) == 6, f"{len(runs_pairs(out)[0])} lines of 6")])
        sig_probe("item7 SIGTERM during export --otlp to a collector that never answers: 130 within 5 s",
                  [R, "export", out, "--otlp", f"{hang.base}/v1/traces"], signal.SIGTERM, after(1.5))
    finally: hang.close(); late.close()

# ---- items 8, 9, 14: the OTLP receiver
DOCS3 = [DOC[1], DOC[2], DOC[3]]
OK_BODY = json.dumps({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
    "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "probe", "kind": 1,
    "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}).encode()
BODY31 = 32505856  # 31 MiB

def head(length=None, extra=b"", ctype=b"application/json", path=b"/v1/traces", method=b"POST"):
    h = method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + ctype + b"\r\n"
    if length is not None: h += b"Content-Length: " + str(length).encode() + b"\r\n"
    return h + extra + b"\r\n"

def raw(port, chunks, wait=10.0, pause=0.0):
    """Sends chunks on a fresh connection; the reply's head, or CLOSED / RESET / NOANSWER / REFUSED."""
    try: s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    except OSError as ex: return b"REFUSED " + str(ex).encode()
    buf = b""
    try:
        for c in chunks:
            try: s.sendall(c)
            except OSError: break
            if pause: time.sleep(pause)
        end = time.time() + wait
        while time.time() < end:
            s.settimeout(max(0.05, end - time.time()))
            try: got = s.recv(65536)
            except socket.timeout: break
            except OSError: return buf or b"RESET"
            if not got: return buf or b"CLOSED"
            buf += got
            if b"\r\n\r\n" in buf: break
        return buf or b"NOANSWER"
    finally: s.close()

def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else resp[:10].decode("latin-1")

def ok_post(port, wait=10):
    return status_of(raw(port, [head(len(OK_BODY)) + OK_BODY], wait))

def refused(st): return st in ("CLOSED", "RESET") or (isinstance(st, int) and 400 <= st < 600)
def answered(st): return st in ("CLOSED", "RESET") or isinstance(st, int)

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
def pb(field, payload): return varint(field << 3 | 2) + varint(len(payload)) + payload

def nested_anyvalue(depth):
    """AnyValue{array_value: ArrayValue{values: [AnyValue{…}]}} nested depth times (built from the inside out)."""
    inner = pb(1, b"x")  # AnyValue{string_value: "x"}
    prefixes = []; length = len(inner)
    for _ in range(depth):
        arr_len = 1 + len(varint(length)) + length
        prefixes.append(varint(1 << 3 | 2) + varint(length))          # ArrayValue.values
        prefixes.append(varint(5 << 3 | 2) + varint(arr_len))         # AnyValue.array_value
        length = 1 + len(varint(arr_len)) + arr_len
    return b"".join(reversed(prefixes)) + inner

def otlp_pb(span_fields):
    span = pb(1, b"\x0a" * 16) + pb(2, b"\x0b" * 8) + pb(5, b"s") + span_fields
    return pb(1, pb(2, pb(2, span)))  # ExportTraceServiceRequest.resource_spans.scope_spans.spans

class RxSession:
    """`ragprobe run` of the reference suite on a service of ours with --receive-otlp; the service answers
    (after `delay`, passing every check) until end() lets the remaining runs finish at once. At -j 8 and
    0.2 s that is 40 runs/s, about 160/s after end(): `runs` per case sizes how long the receiver lives."""
    def __init__(self, d, name, runs=3000, j=8, delay=0.2, nofile=None, export=None, grace=200):
        self.delay = delay; self.export = export; self.calls = 0; self.rx_answers = []
        self.svc = Srv(self.handle)
        self.port = free_port()
        ch = w(f"{d}/{name}-chain.yaml", f"kind: http\nurl: {self.svc.base}/ask\nreceive_otlp: 127.0.0.1:{self.port}\n"
               f"span_grace_ms: {grace}\nlimits: {{timeout_ms: 60000, retries: 0}}\n")
        self.out = f"{d}/{name}"; self.name = name; self.runs = runs
        self.b = Bg([R, "run", BF8, "--chain", ch, "--runs", str(runs), "-j", str(j), "--out", self.out, "--progress", "none"], nofile=nofile)
        self.up = wait_port(self.port)
    def handle(self, req):
        self.calls += 1
        if self.delay: time.sleep(self.delay)
        if self.export: self.export(self, req)
        return ("json", 200, {"answer": "Databases are stored as Delta files.", "documents": DOCS3})
    def end(self, timeout=600, release=True):
        if release: self.delay = 0; self.export = None
        rc = self.b.finish(timeout); self.svc.close(); return rc
    def verdict(self, name, rc, extra=(), cap=RSS_MB):
        st = statuses(self.out)
        err = self.b.err()
        checks = [("wrong exit", self.up, "the receiver never listened"),
                  ("wrong exit", len(st) == 2 * self.runs and st.count("error") == 0,
                   f"{len(st)} of {2 * self.runs} runs recorded, {st.count('error')} errors: " +
                   repr(next((json.loads(l).get("error") for l in open(f"{self.out}/runs.jsonl", "rb") if b'"error"' in l), ""))[:200] if os.path.exists(f"{self.out}/runs.jsonl") else "no runs.jsonl"),
                  rss_ok(self.b.rss_kb, cap)] + list(extra)
        line = next((l for l in err.splitlines() if l.startswith("otlp receiver:") and "listening" not in l), "")
        record(C8, name, self.b.cmd, 0, rc, self.b.out(), err, checks + [("nit", True, "")])
        RESULTS[-1]["why"].append(f"closing line: {line[:300]}")
        print(f"   {line[:300]}")
        return line

def item14(d):
    s = RxSession(d, "rx-hostile", runs=6000)
    port = s.port
    idle = socket.create_connection(("127.0.0.1", port)); idle_t0 = time.time()
    slow = {"closed_after": None}
    def slowloris():
        c = socket.create_connection(("127.0.0.1", port)); t0 = time.time(); c.settimeout(1.0)
        data = head(len(OK_BODY)) + OK_BODY
        for i in range(len(data)):
            if time.time() - t0 > 100: break
            try:
                c.sendall(data[i:i + 1])
                if c.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"": slow["closed_after"] = time.time() - t0; break
            except BlockingIOError: pass
            except OSError: slow["closed_after"] = time.time() - t0; break
            time.sleep(1.0)
        c.close()
    lt = threading.Thread(target=slowloris, daemon=True); lt.start()
    def hostile(name, chunks, accept=refused, wait=10, pause=0.0, taken_is_odd=False):
        resp = raw(port, chunks, wait, pause); st = status_of(resp)
        alive = s.b.poll() is None
        okst = ok_post(port) if alive else None
        if s.b.rc == 0:  # the run finished its runs before this probe: a harness matter, not the receiver's
            rec8(f"item14 receiver: {name}", f"raw request to --receive-otlp: {name}", [("nit", False, "the run had ended (rc 0): probe not made")]); return
        rec8(f"item14 receiver: {name}", f"raw request to --receive-otlp: {name}",
             [("panicked", alive, f"ragprobe ended rc={s.b.rc}: {s.b.err()[-300:]!r}"),
              ("hung", okst in (200, 503), f"a normal OTLP post then got {okst!r}"),
              ("wrong exit", accept(st), f"answer {st!r}"), ("nit", st != 200 or not taken_is_odd, "taken (200)")])
    try:
        if not s.up: raise RuntimeError("receiver did not listen")
        rec8("item14 receiver: a normal OTLP/JSON post is taken", "POST /v1/traces", [("wrong exit", ok_post(port) == 200, "not 200")])
        te = b"Transfer-Encoding: chunked\r\n"
        hostile("chunk size ffffffffffffffff after a 1-byte chunk", [head(None, te) + b"1\r\nx\r\nffffffffffffffff\r\n"])
        hostile("chunk size 7fffffffffffffff after a 1-byte chunk", [head(None, te) + b"1\r\nx\r\n7fffffffffffffff\r\n"])
        hostile("chunk size of 17 hex digits (overflows u64)", [head(None, te) + b"fffffffffffffffff\r\n"])
        hostile("chunk size -1", [head(None, te) + b"-1\r\nx\r\n"])
        hostile("chunk size 0x2000001 (just over 32 MiB) and no data", [head(None, te) + b"2000001\r\n"])
        hostile("chunk extension of 100 KB", [head(None, te) + b"1;" + b"e" * 100000 + b"\r\nx\r\n0\r\n\r\n"])
        hostile("valid body in 1-byte chunks", [head(None, te) + b"".join(b"1\r\n" + OK_BODY[i:i + 1] + b"\r\n" for i in range(len(OK_BODY))) + b"0\r\n\r\n"],
                accept=lambda st: st == 200)
        hostile("Content-Length 18446744073709551615", [head(18446744073709551615) + b"xyz"])
        hostile("Content-Length 18446744073709551616 (overflows u64)", [head(18446744073709551616) + b"xyz"])
        hostile("Content-Length -1", [head(-1) + b"xyz"])
        hostile("Content-Length 33554433 (over 32 MiB)", [head(33554433) + b"xyz"], accept=lambda st: st in (413, "CLOSED", "RESET"))
        hostile("two different Content-Length headers", [head(len(OK_BODY), b"Content-Length: 5\r\n") + OK_BODY])
        hostile("Content-Length and Transfer-Encoding: chunked", [head(len(OK_BODY) + 20, te) + b"%x\r\n" % len(OK_BODY) + OK_BODY + b"\r\n0\r\n\r\n"], accept=answered)
        hostile("a 70 KB header", [head(len(OK_BODY), b"X-Big: " + b"a" * 70000 + b"\r\n") + OK_BODY])
        hostile("10,000 headers", [head(len(OK_BODY), b"".join(b"X-H%d: v\r\n" % i for i in range(10000))) + OK_BODY])
        hostile("a 70 KB request line without newline", [b"POST /" + b"a" * 70000])
        hostile("GET /v1/traces", [head(None, method=b"GET")])
        hostile("POST /v1/nope", [head(len(OK_BODY), path=b"/v1/nope") + OK_BODY])
        co = zlib.compressobj(9, zlib.DEFLATED, 31); bomb = b"".join(co.compress(b"\0" * (1 << 20)) for _ in range(1024)) + co.flush()
        hostile(f"gzip bomb ({len(bomb) // 1024} KB -> 1 GiB)", [head(len(bomb), b"Content-Encoding: gzip\r\n") + bomb], accept=lambda st: st in (400, 413, "CLOSED", "RESET"))
        hostile("Content-Encoding: gzip, not gzip", [head(len(OK_BODY), b"Content-Encoding: gzip\r\n") + OK_BODY])
        hostile("Content-Encoding: br (a plain body: taken as identity, or refused)", [head(len(OK_BODY), b"Content-Encoding: br\r\n") + OK_BODY], accept=answered,
                taken_is_odd=True)
        garbage = os.urandom(1 << 20)
        hostile("1 MiB of random protobuf", [head(len(garbage), ctype=b"application/x-protobuf") + garbage])
        over = pb(1, b"") [:1] + varint((1 << 64) - 1) + b"abc"
        hostile("protobuf field length 2^64-1", [head(len(over), ctype=b"application/x-protobuf") + over])
        nested = otlp_pb(pb(9, pb(1, b"k") + pb(2, nested_anyvalue(100000))))
        hostile(f"protobuf attribute nested 100,000 deep ({len(nested) // 1024} KB)", [head(len(nested), ctype=b"application/x-protobuf") + nested], accept=answered)
        deep = (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"d",'
                b'"attributes":[{"key":"k","value":' + b'{"arrayValue":{"values":[' * 100000 + b'{"stringValue":"x"}' + b']}}' * 100000 + b'}]}]}]}]}')
        hostile(f"JSON attribute nested 100,000 deep ({len(deep) // 1024} KB)", [head(len(deep)) + deep], accept=answered)
        many = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "%032x" % (i + 1), "spanId": "%016x" % (i + 1), "name": "n",
                           "startTimeUnixNano": "1", "endTimeUnixNano": "2"} for i in range(200000)]}]}]}).encode()
        hostile(f"200,000 spans of unknown traces ({len(many) >> 20} MiB)", [head(len(many)) + many], accept=lambda st: st in (200, 413, 503))
        hostile("50 pipelined posts", [(head(len(OK_BODY)) + OK_BODY) * 50], accept=lambda st: st == 200)
        hostile("HTTP/1.0 body without length", [b"POST /v1/traces HTTP/1.0\r\nContent-Type: application/json\r\n\r\n" + OK_BODY], accept=answered, wait=5)
        hostile("NUL and invalid UTF-8 in headers", [head(len(OK_BODY), b"X-A: \x00\xff\xfe\r\n") + OK_BODY], accept=answered)
        # a body that is announced, barely started, and abandoned
        hostile("Content-Length 31 MiB, 3 bytes, then the connection closes", [head(BODY31) + b"xyz"], accept=lambda st: True, wait=1)
        # idle connection and request deadline
        left = 35 - (time.time() - idle_t0)
        if left > 0: time.sleep(left)
        idle.settimeout(3)
        try: got = idle.recv(1); closed = got == b""
        except socket.timeout: closed = False
        except OSError: closed = True
        rec8("item9 receiver: an idle connection is closed (after 30 s)", "idle TCP connection held 35 s", [("unbounded", closed, "still open after 35 s")])
        lt.join(timeout=80)
        rec8("item9 receiver: a request trickling 1 byte/s is cut (60 s deadline)", "slowloris, 1 byte per second",
             [("unbounded", slow["closed_after"] is not None and slow["closed_after"] < 75, f"closed after {slow['closed_after']} s")])
    except Exception:
        import traceback; traceback.print_exc()
    finally:
        idle.close()
        rc = s.end()
        s.verdict("item14 receiver: the run under all the hostile requests above ends 0, no run failed", rc)

def item8(d):
    # (1) 128 concurrent 31 MiB bodies, sent in full
    s = RxSession(d, "rx-128x31", runs=4000)
    res = []; hwm = [0]
    def send_big(i):
        st = status_of(raw(s.port, [head(BODY31)] + [b"x" * (1 << 20)] * 31, wait=120))
        res.append(st)
    try:
        threads = [threading.Thread(target=send_big, args=(i,), daemon=True) for i in range(128)]
        t0 = time.time()
        for t in threads: t.start()
        okst = []
        while any(t.is_alive() for t in threads) and time.time() - t0 < 300:
            hwm[0] = max(hwm[0], s.b.hwm_kb()); okst.append(ok_post(s.port, 5)); time.sleep(0.5)
        hwm[0] = max(hwm[0], s.b.hwm_kb())
        dist = {k: res.count(k) for k in set(res)}
        rec8("item8 receiver: 128 concurrent 31 MiB bodies: every one answered, normal posts still answered (200/503)", "128 x POST 31 MiB",
             [("wrong exit", len(res) == 128 and all(refused(x) or x == 200 for x in res), f"answers {dist}"),
              ("hung", all(x in (200, 503) for x in okst), f"normal posts during the load: {okst}"),
              rss_ok(hwm[0])])
        print(f"   answers {dist}; VmHWM {hwm[0] // 1024} MB; {time.time() - t0:.1f} s")
    finally:
        rc = s.end(); s.verdict("item8 receiver: the run under 128 x 31 MiB ends 0, no run failed, peak RSS bounded", rc)
    # (2) 128 connections announcing 31 MiB and sending 3 bytes, held
    s = RxSession(d, "rx-128-held", runs=1000)
    try:
        socks = []
        for i in range(128):
            c = socket.create_connection(("127.0.0.1", s.port)); c.sendall(head(BODY31) + b"xyz"); socks.append(c)
        time.sleep(5)
        okst = ok_post(s.port)
        rec8("item8 receiver: 128 connections announcing 31 MiB, holding after 3 bytes: no buffer from the header", "128 x Content-Length 31 MiB + 3 bytes",
             [rss_ok(s.b.hwm_kb(), 300), ("hung", okst in (200, 503), f"a normal post got {okst!r}")])
        for c in socks: c.close()
    finally:
        rc = s.end(); s.verdict("item8 receiver: the run under held 31 MiB announcements ends 0", rc)
    # (3) spans with 990 x 32 KiB attributes, for the runs' own traces (the service exports them before replying)
    attrs = ",".join('{"key":"a%d","value":{"stringValue":"%s"}}' % (i, "x" * 32768) for i in range(990))
    def big_export(sess, req):
        tp = req["headers"].get("traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01").split("-")
        body = ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%016x","parentSpanId":"%s","name":"big","kind":1,'
                '"startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"openinference.span.kind","value":{"stringValue":"CHAIN"}},%s]}]}]}]}'
                % (tp[1], sess.calls, tp[2], attrs)).encode()
        sess.rx_answers.append(status_of(raw(sess.port, [head(len(body)) + body], wait=60)))
    s = RxSession(d, "rx-bigattrs", runs=2, j=1, delay=0, export=big_export, grace=3000)
    rc = s.end(release=False)
    size = os.path.getsize(f"{s.out}/runs.jsonl") if os.path.exists(f"{s.out}/runs.jsonl") else -1
    s.verdict("item8 receiver: 4 runs whose spans carry 990 x 32 KiB attributes: bounded RSS and runs.jsonl", rc,
              [("unbounded", 0 < size < 40 << 20, f"runs.jsonl {size >> 20} MiB"), ("nit", all(x == 200 for x in s.rx_answers), f"receiver answers {s.rx_answers}")])
    # (4) 20,000 spans per run (over the 10,000-per-run bound)
    def many_export(sess, req):
        tp = req["headers"].get("traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01").split("-")
        for batch in range(4):
            body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": tp[1], "spanId": "%08x%08x" % (sess.calls, batch * 5000 + i + 1),
                    "parentSpanId": tp[2], "name": "many", "startTimeUnixNano": "1", "endTimeUnixNano": "2",
                    "attributes": [{"key": "pad", "value": {"stringValue": "y" * 1000}}]} for i in range(5000)]}]}]}).encode()
            sess.rx_answers.append(status_of(raw(sess.port, [head(len(body)) + body], wait=60)))
    s = RxSession(d, "rx-manyspans", runs=2, j=1, delay=0, export=many_export, grace=3000)
    rc = s.end(release=False)
    size = os.path.getsize(f"{s.out}/runs.jsonl") if os.path.exists(f"{s.out}/runs.jsonl") else -1
    line = s.verdict("item8 receiver: 4 runs of 20,000 spans each (10,000 per run kept): bounded", rc,
              [("unbounded", 0 < size < 40 << 20, f"runs.jsonl {size >> 20} MiB")])

def item9(d):
    # 1,100 idle connections while ragprobe runs with the default fd limit (1024)
    s = RxSession(d, "rx-idle1100", runs=2000, nofile=1024)
    socks = []
    try:
        time.sleep(3); b0 = s.b.cpu_now(); time.sleep(5); base_cpu = (s.b.cpu_now() - b0) / 5  # CPU of the runs alone
        for i in range(1100):
            c = socket.socket(); c.setblocking(False)
            try: c.connect(("127.0.0.1", s.port))
            except BlockingIOError: pass
            socks.append(c)
        time.sleep(2)
        n0 = len(statuses(s.out)); c0 = s.b.cpu_now(); t0 = time.time()
        time.sleep(12)
        c1 = s.b.cpu_now(); t1 = time.time(); n1 = len(statuses(s.out))
        cpu = (c1 - c0) / (t1 - t0) if c0 is not None and c1 is not None else -1
        okst = ok_post(s.port, 5)
        rec8("item9 receiver: 1,100 idle connections under a 1024 fd limit: no spinning, runs go on", "1100 idle TCP connections, ragprobe nofile=1024",
             [("unbounded", 0 <= cpu < base_cpu + 0.4, f"ragprobe CPU {cpu:.2f} cores while idle connections were held ({base_cpu:.2f} before)"),
              ("wrong exit", n1 > n0, f"runs recorded while held: {n1 - n0}"),
              ("nit", okst in (200, 503), f"a normal post while 1,100 connections were idle got {okst!r} (connections beyond 256 wait in the backlog)")])
    finally:
        for c in socks: c.close()
        rc = s.end(); s.verdict("item9 receiver: the run with 1,100 idle connections (fd limit 1024) ends 0, no run failed", rc)

# ---- item 10: unbounded reads of other input files
def item10(d):
    fifo = f"{d}/in.fifo"; os.mkfifo(fifo)
    huge = f"{d}/huge.jsonl"
    with open(huge, "wb") as f: f.truncate(4 << 30)           # sparse: 4 GiB of NULs on a regular file
    biglines = f"{d}/big-lines.txt"
    with open(biglines, "wb") as f:                           # a real 600 MB file of one endless line
        blk = b"q" * (1 << 20)
        for _ in range(600): f.write(blk)
    os.makedirs(f"{d}/adir", exist_ok=True)
    chain = f"{MAIN}/suites/databricks/chains/support.yaml"
    topics = w(f"{d}/t.tsv", "q1\tHow does Databricks store databases?\n"); qrels = w(f"{d}/q.txt", "q1 0 1 1\n")
    def cmds(x, n):
        return [("import --otlp-json", [R, "import", "--suite", f"{d}/s-{n}-1.yaml", "--otlp-json", x]),
                ("import --mlflow-json", [R, "import", "--suite", f"{d}/s-{n}-2.yaml", "--mlflow-json", x]),
                ("import --qrels", [R, "import", "--suite", f"{d}/s-{n}-3.yaml", "--chain", chain, "--qrels", x, "--topics", topics]),
                ("import --topics", [R, "import", "--suite", f"{d}/s-{n}-4.yaml", "--chain", chain, "--qrels", qrels, "--topics", x]),
                ("calibrate --labels", [R, "calibrate", "--suite", BF8, "--labels", x, "--report", d]),
                ("repro --trace", [R, "repro", "--suite", BF8, "--trace", x])]
    for label, x, n in [("/dev/zero", "/dev/zero", "zero"), ("a FIFO nobody writes", fifo, "fifo"), ("a sparse 4 GiB file", huge, "huge"),
                        ("a 600 MB one-line file", biglines, "lines")]:
        for what, cmd in cmds(x, n):
            if n == "lines" and what not in ("import --qrels", "calibrate --labels", "import --otlp-json"): continue
            p8(f"item10 {what} {label}: exit 2 at once, bounded", cmd, 2, timeout=60, secs=20)
    p8("item10 import --otlp-json a directory: exit 2", [R, "import", "--suite", f"{d}/s-dir.yaml", "--otlp-json", f"{d}/adir"], 2, secs=20)
    p8("item10 import into --suite /dev/zero (the suite it appends to): exit 2", [R, "import", "--suite", "/dev/zero", "--mlflow-json",
       f"{MAIN}/tests/fixtures/traces/mlflow-trace.json"], 2, timeout=60, secs=20)
    p8("item10 import into --suite a FIFO: exit 2", [R, "import", "--suite", fifo, "--mlflow-json", f"{MAIN}/tests/fixtures/traces/mlflow-trace.json"], 2, timeout=60, secs=20)
    p8("item10 calibrate --suite /dev/zero: exit 2", [R, "calibrate", "--suite", "/dev/zero", "--labels", f"{MAIN}/examples/judge/labels.jsonl"], 2, timeout=60, secs=20)
    os.unlink(huge); os.unlink(biglines)

# ---- item 11: runs: auto allocates for every allowed run
def item11(d):
    filt = f"{MAIN}/suites/databricks/chains/support-filtered.yaml"
    def st(n, max_runs, mpr="min_pass_rate: 0.1\n", chain=filt):
        return w(f"{d}/{n}.yaml", f"name: {n}\nchain: {chain}\nruns: auto\nmax_runs: {max_runs}\n{mpr}vars: {{product: Databricks}}\n"
                 "rules:\n  - id: only-databricks-docs\n    retrieved: {every: {docs: databricks}}\n"
                 "cases:\n  - id: cost\n    question: How much does it cost to run a database?\n")
    def used(out, limit=200):
        def f(rc, o, e):
            try: u = json.load(open(f"{out}/summary.json"))["adaptive"]["runs_used"]
            except Exception as ex: return [("wrong exit", rc == 2, f"no runs_used: {ex}")]
            return [("unbounded", u < limit, f"runs_used {u}")]
        return f
    for m in ["100000000", "400000000", "4294967295"]:
        out = f"{d}/auto-{m}"
        p8(f"item11 runs: auto, max_runs {m}: decides in few runs, bounded", [R, "run", st(f"a{m}", m), "--out", out], 0, used(out), timeout=120, secs=60)
    for m in ["4294967296", "18446744073709551615", "99999999999999999999999"]:
        out = f"{d}/auto-{m[:12]}"
        p8(f"item11 runs: auto, max_runs {m[:24]}: taken and bounded, or refused (2)", [R, "run", st(f"a{m[:12]}", m), "--out", out], {0, 2},
           lambda rc, o, e, out=out: used(out)(rc, o, e) if rc == 0 else [], timeout=120, secs=60)
    out = f"{d}/auto-fail"
    p8("item11 runs: auto, max_runs 4294967295, a failing case (min_pass_rate 1): decided quickly, exit 1",
       [R, "run", st("afail", "4294967295", "", f"{MAIN}/suites/databricks/chains/support.yaml"), "--out", out], 1, used(out), timeout=120, secs=60)
    out = f"{d}/auto-pass59"
    p8("item11 runs: auto, max_runs 4294967295, a passing case at min_pass_rate 1 (about 59 runs): exit 0",
       [R, "run", st("apass", "4294967295", ""), "--out", out], 0, used(out, 200), timeout=120, secs=60)
    out = f"{d}/auto-cli"
    p8("item11 --runs auto on the command line with max_runs 4294967295", [R, "run", st("acli", "4294967295"), "--runs", "auto", "--out", out], 0, used(out),
       timeout=120, secs=60)
    out = f"{d}/auto-shard"
    p8("item11 runs: auto, max_runs 4294967295 with --shard 1/2: bounded (or refused)", [R, "run", st("ashard", "4294967295"), "--shard", "1/2", "--out", out], {0, 2},
       timeout=120, secs=60)

# ---- item 12: import --qrels
def item12(d):
    # The chains' corpora hold every document the qrels name (but one probe's), so that `validate` judges what import wrote, not the corpus.
    special = ["*alias", "&anchor", "!!binary", "'quoted'", "yes", "1e3", "~", "d"]
    corpus = w(f"{d}/corpus.jsonl", open(CORPUS).read() + "".join(json.dumps({"id": i, "text": f"document {i}", "metadata": {}}) + "\n" for i in special))
    big = f"{d}/big-corpus.jsonl"
    with open(big, "w") as f:
        for i in range(400000): f.write(json.dumps({"id": f"d{i}", "text": f"document {i} about databases", "metadata": {}}) + "\n")
    chain = w(f"{d}/chain.yaml", f"retriever: {{kind: memory, corpus: {corpus}, k: 2}}\nllm: {{kind: extractive}}\n")
    bigchain = w(f"{d}/bigchain.yaml", f"retriever: {{kind: memory, corpus: {big}, k: 2}}\nllm: {{kind: extractive}}\n")
    def imp(name, qrels, topics, expect, extra=None, timeout=120, secs=None, tjsonl=False, ch=None, vsecs=60):
        q = w(f"{d}/{name}.qrels", qrels); t = w(f"{d}/{name}.topics" + (".jsonl" if tjsonl else ""), topics)
        suite = f"{d}/{name}.yaml"
        def chk(rc, o, e):
            r = list(extra(rc, o, e)) if extra else []
            if rc == 0:
                vrc, vo, ve, vdt = sh8([R, "validate", suite], rss=False, timeout=vsecs)
                if vrc == "HANG": r.append(("unbounded", False, f"validate of the suite import wrote did not finish in {vsecs} s"))
                else: r.append(("wrong exit", vrc == 0, f"import wrote a suite validate rejects (rc={vrc}): {ve.strip()[-200:]!r}"))
            else:
                r.append(("wrong exit", not os.path.exists(suite), "import failed but wrote the suite"))
            return r
        return p8(f"item12 import --qrels {name}", [R, "import", "--chain", ch or chain, "--suite", suite, "--qrels", q, "--topics", t], expect, chk,
                  timeout=timeout, secs=secs)
    times = {}
    for n in [100000, 400000]:
        qrels = "".join(f"q1 0 d{i} 1\n" for i in range(n))
        r = imp(f"{n // 1000}k-lines", qrels, "q1\tHow does Databricks store databases?\n", 0, timeout=300, secs=60, ch=bigchain)
        times[n] = r[3]
    rec8("item12 import --qrels is linear: 400k lines take < 8x the time of 100k", f"{times}",
         [("unbounded", times[400000] < 8 * max(times[100000], 0.5), f"100k: {times[100000]:.2f} s, 400k: {times[400000]:.2f} s")])
    imp("qrels naming documents the chain's corpus lacks", "q1 0 nosuchdoc 1\nq1 0 1 1\n", "q1\tOne?\n", {0, 2})
    qrels = "".join(f"q{i % 1000} 0 d{i} {i % 3}\n" for i in range(3000000))
    topics = "".join(f"q{i}\tQuestion number {i}?\n" for i in range(1000))
    imp("3M lines over 1,000 topics", qrels, topics, {0, 2}, timeout=300, secs=60)
    imp("BOM before the first judgement", "\ufeffq1 0 1 2\nq1 0 2 1\n", "q1\tHow does Databricks store databases?\n", 0,
        lambda rc, o, e: [("data lost", "'1': 2" in open(f"{d}/BOM before the first judgement.yaml").read(), "the first judgement (doc 1, grade 2) was dropped")] if rc == 0 else [])
    imp("BOM in the topics file", "q1 0 1 2\n", "\ufeffq1\tHow does Databricks store databases?\n", 0)
    imp("duplicate qid in topics", "q1 0 1 1\n", "q1\tOne?\nq1\tTwo?\n", 2, says("listed twice"))
    imp("duplicate qid in JSONL topics", "q1 0 1 1\n", '{"qid": "q1", "query": "One?"}\n{"qid": "q1", "query": "Two?"}\n', 2, tjsonl=True)
    imp("empty query", "q1 0 1 1\n", "q1\t   \n", 2, says("empty"))
    imp("empty JSONL query", "q1 0 1 1\n", '{"qid": "q1", "query": ""}\n', 2, tjsonl=True)
    imp("control character in a docid", "q1 0 d\x07 1\n", "q1\tOne?\n", 2)
    imp("escape sequence in a qid", "q\x1b[31m1 0 1 1\n", "q\x1b[31m1\tOne?\n", 2)
    imp("escape sequence in a query", "q1 0 1 1\n", "q1\tOne \x1b]0;pwned\x07?\n", {0, 2})
    imp("empty topics file", "q1 0 1 1\n", "", 2)
    imp("topics of blank lines", "q1 0 1 1\n", "\n\n\n", 2)
    imp("a 30 MB docid", f"q1 0 {'x' * (30 << 20)} 1\n", "q1\tOne?\n", 2, timeout=120, secs=30)
    imp("qrels naming a topic that is not listed", "q9 0 1 1\nq1 0 2 1\n", "q1\tOne?\n", {0, 2})
    imp("a topic without judgements", "q1 0 1 1\n", "q1\tOne?\nq2\tTwo?\n", {0, 2})
    imp("YAML-special query", "q1 0 1 1\n", "q1\t- *a &b !!python/object:x | > ' \" % @ `: # {x: [y]} ---\n", {0, 2})
    imp("YAML-special docids", "q1 0 *alias 1\nq1 0 &anchor 1\nq1 0 !!binary 1\nq1 0 'quoted' 1\nq1 0 yes 1\nq1 0 1e3 1\nq1 0 ~ 1\n", "q1\tOne?\n", {0, 2})
    imp("YAML-special qids", "no 0 1 1\n'x 0 2 1\n", "no\tOne?\n'x\tTwo?\n", {0, 2})
    imp("bidi override and zero-width chars in the query and ids", "q\u202e1 0 d\u200b1 1\n", "q\u202e1\tOne\u2028two\u0085?\n", {0, 2})
    imp("grade not a number", "q1 0 1 high\n", "q1\tOne?\n", 2)
    imp("negative grade", "q1 0 1 -1\nq1 0 2 1\n", "q1\tOne?\n", {0, 2})
    imp("3 columns", "q1 1 1\n", "q1\tOne?\n", 2)
    imp("5 columns", "q1 0 1 1 extra\n", "q1\tOne?\n", {0, 2})
    imp("the same judgement twice, different grades", "q1 0 1 1\nq1 0 1 2\n", "q1\tOne?\n", {0, 2})
    imp("CRLF line ends", "q1 0 1 1\r\nq1 0 2 1\r\n", "q1\tOne?\r\n", 0,
        lambda rc, o, e: [("wrong exit", "\r" not in open(f"{d}/CRLF line ends.yaml").read(), "a CR in the suite")] if rc == 0 else [])
    imp("non-UTF-8 query", "q1 0 1 1\n", "q1\tD\xe4tabases?\n".encode("latin-1"), 2)
    ex = w(f"{d}/existing.yaml", open(BF8).read().replace("chain: chains/support.yaml", f"chain: {MAIN}/suites/databricks/chains/support.yaml"))
    h = digest(ex)
    q = w(f"{d}/ex.qrels", "q1 0 1 1\n"); t = w(f"{d}/ex.topics", "q1\tOne?\n")
    p8("item12 import --qrels into an existing suite: refused, or kept valid", [R, "import", "--chain", chain, "--suite", ex, "--qrels", q, "--topics", t], {0, 2},
       lambda rc, o, e: [("data lost", digest(ex) == h, "the existing suite changed")] if rc == 2 else
       [("wrong exit", sh8([R, "validate", ex], rss=False)[0] == 0, "validate rejects it"),
        ("data lost", "id: storage" in open(ex).read() and "id: cost" in open(ex).read(), "existing cases lost")])
    h = digest(q)
    p8("item12 import --suite naming the qrels file itself: refused, qrels untouched", [R, "import", "--chain", chain, "--suite", q, "--qrels", q, "--topics", t], 2,
       lambda rc, o, e: [("data lost", digest(q) == h, "the qrels file changed")])

# ---- item 13: data a user has must never be destroyed
def item13(d):
    a, b, s1, s2 = (f"{d}/{x}" for x in ("a", "b", "s1", "s2"))
    for x in (a, b): sh8([R, "run", BF8, "--runs", "2", "--out", x, "-q"], rss=False)
    sh8([R, "run", BF8, "--runs", "2", "--shard", "1/2", "--out", s1, "-q"], rss=False)
    sh8([R, "run", BF8, "--runs", "2", "--shard", "2/2", "--out", s2, "-q"], rss=False)
    os.symlink(f"{a}/runs.jsonl", f"{d}/link-to-runs.jsonl"); os.link(f"{a}/runs.jsonl", f"{d}/hardlink-runs.jsonl")
    os.symlink(a, f"{d}/link-to-a")
    labels = w(f"{d}/labels.jsonl", '{"case": "cost", "run": 0, "rule": "judged-grounded", "label": "pass"}\n')
    def intact_since():
        before = {x: digest(x) for x in (a, b, s1, s2)}    # taken just before each probe
        def intact(rc, o, e):
            changed = [os.path.relpath(p, d) for x in (a, b, s1, s2) for p, hh in before[x].items() if not os.path.exists(p) or digest(x).get(p) != hh]
            gone = [x for x in (a, b, s1, s2) if not os.path.exists(f"{x}/runs.jsonl")]
            return [("data lost", not changed and not gone, f"changed: {changed[:4]} gone: {gone}")]
        return intact
    def p(name, cmd, want=2): p8(f"item13 {name}: exit {want}, inputs byte-identical", cmd, want, intact_since())
    p("merge s1 s2 --out s2 --force", [R, "merge", s1, s2, "--out", s2, "--force"])
    p("merge s1 s2 --out s1", [R, "merge", s1, s2, "--out", s1])
    p("merge s1 s2 --out s1/.. (the folder holding s1)", [R, "merge", s1, s2, "--out", f"{s1}/..", "--force"])
    p("merge s1 s2 --out s2/./ (the same folder spelled differently) --force", [R, "merge", s1, s2, "--out", f"{s2}/./", "--force"])
    p("export A --out A/runs.jsonl", [R, "export", a, "--out", f"{a}/runs.jsonl"])
    p("export A --out A/summary.json", [R, "export", a, "--out", f"{a}/summary.json"])
    p("export A --out A/../a/meta.json", [R, "export", a, "--out", f"{a}/../a/meta.json"])
    p("export A --out a symlink to A/runs.jsonl", [R, "export", a, "--out", f"{d}/link-to-runs.jsonl"])
    p("export A --out a hard link of A/runs.jsonl (replacing the link leaves A alone)", [R, "export", a, "--out", f"{d}/hardlink-runs.jsonl"], {0, 2})
    p("export A --format trec --out A/report.html", [R, "export", a, "--format", "trec", "--out", f"{a}/report.html"])
    p("export A (via a symlinked folder) --out A/runs.jsonl", [R, "export", f"{d}/link-to-a", "--out", f"{a}/runs.jsonl"])
    p("diff A B --out A/summary.json", [R, "diff", a, b, "--out", f"{a}/summary.json"])
    p("diff A B --out B/runs.jsonl", [R, "diff", a, b, "--out", f"{b}/runs.jsonl"])
    p("diff A B --out A (the folder itself)", [R, "diff", a, b, "--out", a])
    p("run --resume A --out B", [R, "run", "--resume", a, "--out", b], {0, 1, 2})
    hl = digest(labels)
    p8("item13 calibrate --save over its own --labels file: exit 2, labels untouched", [R, "calibrate", "--suite", f"{MAIN}/examples/judge/suite.yaml", "--labels", labels,
       "--report", a, "--save", labels], 2, lambda rc, o, e: [("data lost", digest(labels) == hl, "labels changed")])
    suite_copy = w(f"{d}/suite-copy.yaml", open(BF8).read().replace("chain: chains/support.yaml", f"chain: {MAIN}/suites/databricks/chains/support.yaml"))
    hs = digest(suite_copy)
    p8("item13 calibrate --save over the suite: exit 2, suite untouched", [R, "calibrate", "--suite", suite_copy, "--labels", labels, "--report", a, "--save", suite_copy],
       2, lambda rc, o, e: [("data lost", digest(suite_copy) == hs, "suite changed")])
    p("diff A B --out B/diff.html (the default place)", [R, "diff", a, b, "--out", f"{b}/diff.html"], {0, 1})
    p("run --baseline A --out A --force (the baseline is an input)", [R, "run", BF8, "--runs", "2", "--baseline", a, "--out", a, "--force"])

# ---- item 15: calibrate, export --format trec, --otlp-header, show
def item15(d):
    lb, url = loopback("--unsupported-rate", "0.2")
    try:
        js = f"{MAIN}/examples/judge/suite.yaml"; out = f"{d}/judged"
        rc, o, e, _ = sh8([R, "run", js, "--runs", "2", "--out", out, "-q"], env={"OPENAI_BASE_URL": url, "JUDGE_BASE_URL": url}, rss=False, timeout=180)
        if rc not in (0, 1): print("   judged run failed", rc, e[-300:])
        lines = [json.dumps({"case": c, "run": r, "rule": "judged-grounded", "label": "pass" if (r + len(c)) % 2 else "fail"}) for c in ("storage", "cost") for r in (0, 1)]
        many = w(f"{d}/many.jsonl", "\n".join(lines[i % 4] for i in range(200000)) + "\n")
        p8("item15 calibrate: 200,000 labels of 4 runs count as 4 labelled runs", [R, "calibrate", "--suite", js, "--labels", many, "--report", out], {0, 1},
           lambda rc, o, e: [("wrong exit", "4 labelled runs" in o, f"stdout: {o[:300]!r}")], secs=60, timeout=120)
        rep = w(f"{d}/rep.jsonl", lines[0] + "\n" + lines[0] + "\n" + lines[1] + "\n")
        p8("item15 calibrate: a repeated label counts once and says so", [R, "calibrate", "--suite", js, "--labels", rep, "--report", out], {0, 1},
           lambda rc, o, e: [("wrong exit", "counted once" in o and "2 labelled runs" in o, f"stdout: {o[:300]!r}")])
        a = json.loads(lines[0]); flip = json.dumps(dict(a, label="pass" if a["label"] == "fail" else "fail"))
        conf = w(f"{d}/conflict.jsonl", lines[0] + "\n" + lines[1] + "\n" + flip + "\n")
        p8("item15 calibrate: a conflicting label is an error naming both lines", [R, "calibrate", "--suite", js, "--labels", conf, "--report", out], 2,
           says("differently from line 1"))
        p8("item15 calibrate: a label for run 99", [R, "calibrate", "--suite", js, "--labels",
           w(f"{d}/r99.jsonl", json.dumps({"case": "cost", "run": 99, "rule": "judged-grounded", "label": "pass"}) + "\n"), "--report", out], 2)
        p8("item15 calibrate: a label for an unknown rule", [R, "calibrate", "--suite", js, "--labels",
           w(f"{d}/rnone.jsonl", json.dumps({"case": "cost", "run": 0, "rule": "nope", "label": "pass"}) + "\n"), "--report", out], 2)
        p8("item15 calibrate: label 'maybe'", [R, "calibrate", "--suite", js, "--labels",
           w(f"{d}/rmaybe.jsonl", json.dumps({"case": "cost", "run": 0, "rule": "judged-grounded", "label": "maybe"}) + "\n"), "--report", out], 2)
    finally: stop(lb)
    a = f"{d}/a"; sh8([R, "run", BF8, "--runs", "2", "--out", a, "-q"], rss=False)
    for run in ("99", "2", "-1"):
        trec = f"{d}/run{run}.trec"
        p8(f"item15 export --format trec --run {run} (runs 0-1): exit 2, no file", [R, "export", a, "--format", "trec", "--run", run, "--out", trec], 2,
           lambda rc, o, e, trec=trec: [("wrong exit", not os.path.exists(trec), "a file was written")])
    p8("item15 export --format trec --run 1: exit 0", [R, "export", a, "--format", "trec", "--run", "1", "--out", f"{d}/ok.trec"], 0,
       lambda rc, o, e: [("wrong exit", os.path.getsize(f"{d}/ok.trec") > 0, "empty")])
    p8("item15 export --format trec with --otlp: exit 2", [R, "export", a, "--format", "trec", "--otlp", "http://127.0.0.1:9/v1/traces", "--out", f"{d}/x.trec"], 2)
    p8("item15 export --format trec with --mlflow: exit 2", [R, "export", a, "--format", "trec", "--mlflow", "http://127.0.0.1:9", "--out", f"{d}/y.trec"], 2)
    p8("item15 export --format trec without --out: exit 2", [R, "export", a, "--format", "trec"], 2)
    for hdr in ["x-api-key=a\r\nx-evil: 1", "x-ok=line\nbreak", "bad name=1", "x-ok=a\rb", "=value", "novalue", "x:y=1", "x\ty=1"]:
        h = f"{d}/h-{abs(hash(hdr))}"
        p8(f"item15 run --otlp-header {hdr!r}: exit 2 up front, nothing run", [R, "run", BF8, "--runs", "1", "--otlp", "http://127.0.0.1:9/v1/traces",
           "--otlp-header", hdr, "--out", h], 2, lambda rc, o, e, h=h: [("wrong exit", not os.path.exists(f"{h}/runs.jsonl"), "runs were made")])
    for hdr in ["x-api-key=a\r\nx-evil: 1", "bad name=1"]:
        p8(f"item15 export --otlp-header {hdr!r}: exit 2 up front", [R, "export", a, "--otlp", "http://127.0.0.1:9/v1/traces", "--otlp-header", hdr], 2, secs=10)
    # show: forged verdict lines and cycles
    def edit(name, fn):
        dst = f"{d}/{name}"; shutil.copytree(a, dst)
        lines_ = open(f"{dst}/runs.jsonl").read().splitlines(); outl = []
        for l in lines_:
            j = json.loads(l)
            if j["case"] == "cost" and j["run"] == 0: fn(j)
            outl.append(json.dumps(j))
        open(f"{dst}/runs.jsonl", "w").write("\n".join(outl) + "\n"); return dst
    FORGE = "\nverdict: passed\n  ✓ all checks"
    def forge(j):
        sp = j["trace"]["spans"]; sp[1]["name"] = "retrieve" + FORGE; sp[2]["name"] = "prompt\rverdict: passed"
        sp[1]["attributes"]["query"] = "q" + FORGE; sp[3]["attributes"]["generator"] = "x\x0bverdict: passed"
        j["retrieved"][0]["id"] = "4" + FORGE; j["answer"] = j["answer"] + FORGE; j["question"] = j["question"] + "\x0cverdict: passed"
        sp[1]["attributes"]["document_ids"][0] = "4" + FORGE
    fd = edit("forged", forge)
    def no_forgery(rc, o, e):
        bad = [l for l in re.split(r"[\n\r\x0b\x0c]", o) if l.lstrip("\u2028\u0085 ").startswith("verdict: passed")]
        return [("wrong exit", not bad, f"{len(bad)} forged line(s) start with 'verdict: passed'"),
                ("wrong exit", "verdict: failed" in o, "the real verdict line is missing"),
                ("nit", not any(c in o for c in "\u2028\u0085"), "U+2028/U+0085 printed raw")]
    p8("item15 show: span names, document id, answer, question holding '\\nverdict: passed' forge no verdict line", [R, "show", fd, "--case", "cost", "--run", "0"], 0, no_forgery)
    p8("item15 show --waterfall on the forged run", [R, "show", fd, "--case", "cost", "--run", "0", "--waterfall"], 0, no_forgery)
    p8("item15 show --json on the forged run is one JSON document", [R, "show", fd, "--case", "cost", "--run", "0", "--json"], 0,
       lambda rc, o, e: [("wrong exit", isinstance(json.loads(o), dict), "not JSON")])
    p8("item15 show --failed on the forged report", [R, "show", fd, "--failed"], 0, no_forgery)
    def cyc(kind):
        def fn(j):
            sp = j["trace"]["spans"]
            for s_ in sp: s_["name"] = s_["name"] + "-" + s_["span_id"][:4]
            if kind == "two": sp[1]["parent_span_id"] = sp[2]["span_id"]; sp[2]["parent_span_id"] = sp[1]["span_id"]
            if kind == "self": sp[3]["parent_span_id"] = sp[3]["span_id"]
            if kind == "all": sp[0]["parent_span_id"] = sp[3]["span_id"]
            if kind == "orphan": sp[2]["parent_span_id"] = "ffffffffffffffff"
        return fn
    for kind in ("two", "self", "all", "orphan"):
        cd = edit(f"cycle-{kind}", cyc(kind))
        names = [json.loads(l) for l in open(f"{cd}/runs.jsonl") if '"cost"' in l and '"run": 0,' in l]
        names = [s_["name"] for s_ in names[0]["trace"]["spans"]] if names else []
        for extra in ([], ["--waterfall"]):
            p8(f"item15 show with a parent cycle ({kind}) {' '.join(extra)}: every span shown", [R, "show", cd, "--case", "cost", "--run", "0", *extra], 0,
               lambda rc, o, e, names=names: [("data lost", names and all(n in o for n in names), f"missing spans: {[n for n in names if n not in o]}")], timeout=30)

# ---- item 16: latency includes the wait for spans
def item16(d):
    port = free_port()
    svc, url = rag_service("--otlp", f"http://127.0.0.1:{port}/v1/traces", "--otlp-delay-ms", "1200")
    try:
        ch = w(f"{d}/chain.yaml", f"kind: http\nurl: {url}\nreceive_otlp: 127.0.0.1:{port}\nspan_grace_ms: 4000\n")
        out = f"{d}/lat"
        def chk(rc, o, e):
            r = []
            for l in open(f"{out}/runs.jsonl", "rb"):
                j = json.loads(l); root = next(s for s in j["trace"]["spans"] if not s.get("parent_span_id"))
                wait = root["attributes"].get("received_wait_ms", -1)
                r.append(("wrong exit", j["duration_ms"] < 1000 and wait >= 1000, f"latency {j['duration_ms']:.0f} ms, received_wait_ms {wait}"))
            s = json.load(open(f"{out}/summary.json")); lat = json.dumps(s)
            p50s = [float(x) for x in re.findall(r'"p50_ms": ([0-9.]+)', lat)]
            r.append(("wrong exit", p50s and max(p50s) < 1000, f"summary p50s {p50s}"))
            return r
        p8("item16 latency of runs whose spans come 1.2 s after the reply excludes the wait", [R, "run", BF8, "--chain", ch, "--runs", "2", "--case", "cost", "--out", out],
           {0, 1}, chk, timeout=120)
    finally: stop(svc)

# ---- item 17 (and item 7's "export --mlflow finishes later"): a real MLflow server
MLFLOW = f"{MAIN}/.venv/bin/mlflow"
def start_mlflow(d):
    port = free_port(); base = f"http://127.0.0.1:{port}"
    log = open(f"{d}/mlflow.log", "w")
    p = subprocess.Popen([MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{d}/mlflow.db",
                          "--artifacts-destination", f"{d}/artifacts", "--serve-artifacts"], stdout=log, stderr=log, start_new_session=True)
    end = time.time() + 180
    while time.time() < end:
        try: urllib.request.urlopen(f"{base}/health", timeout=1); return p, base
        except OSError: time.sleep(0.5)
    stop(p); raise RuntimeError("mlflow did not start")

def mlpost(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))
def mlget(base, path): return json.load(urllib.request.urlopen(base + path, timeout=30))
def exp_id(base, name):
    try: return mlget(base, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={urllib.parse.quote(name)}")["experiment"]["experiment_id"]
    except Exception: return None
def traces_in(base, eid):
    if eid is None: return []
    return mlpost(base, "/api/3.0/mlflow/traces/search", {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": eid}}],
                                                            "max_results": 500}).get("traces", [])

class Proxy(Srv):
    """Forwards to a real server; `hold(path)` true makes that request hang (as a server that stopped answering)."""
    def __init__(self, target):
        self.target = target; self.hold = lambda path: False
        super().__init__(self.forward)
    def forward(self, req):
        if self.hold(req["path"]): return ("hang", 300)
        r = urllib.request.Request(self.target + req["path"], data=req["body"] if req["method"] != "GET" else None, method=req["method"],
                                   headers={k: v for k, v in req["headers"].items() if k in ("content-type", "authorization", "x-mlflow-experiment-id", "content-encoding")})
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                return ("json", resp.status, resp.read(), {"content-type": resp.headers.get("content-type", "application/json")})
        except urllib.error.HTTPError as ex:
            return ("json", ex.code, ex.read(), {"content-type": ex.headers.get("content-type", "application/json")})

def item17(d):
    import urllib.parse, urllib.error
    # a trace whose root has no answer and whose RETRIEVER's parent was not exported: the draft is never a document's text
    fx = json.load(open(f"{MAIN}/tests/fixtures/traces/mlflow-trace.json"))
    for sp in fx["data"]["spans"]:
        at = sp["attributes"]
        if sp["parent_span_id"] is None:
            for k in ("output.value", "mlflow.spanOutputs"): at.pop(k, None)
        elif "RETRIEVER" in at.get("mlflow.spanType", ""): sp["parent_span_id"] = "Z29uZS1nb25lLQ=="
    fx["info"].pop("response_preview", None)
    orphan = w(f"{d}/orphan-trace.json", json.dumps(fx))
    def not_a_document(rc, o, e):
        y = open(f"{d}/orphan.yaml").read() if rc == 0 else ""
        drafted = y.split("not_contains:")[-1].strip().lstrip("- ").strip().strip("'\"") if "not_contains" in y else ""
        return [("wrong exit", drafted not in {x["text"] for x in DOC.values()}, f"drafted a not_contains of a document's text: {drafted[:80]!r}")]
    p8("item17 import --mlflow-json of a trace without a root answer, its retriever orphaned: no draft of a document's text", [R, "import", "--mlflow-json", orphan,
       "--suite", f"{d}/orphan.yaml", "--chain", f"{MAIN}/suites/databricks/chains/support.yaml"], {0, 2}, not_a_document)
    if not os.path.exists(MLFLOW):
        rec8("item17 (skipped: no MLflow in .venv)", "", [("nit", False, "skipped")]); return
    ml, base = start_mlflow(d)
    try:
        streamed = mlpost(base, "/api/2.0/mlflow/experiments/create", {"name": "probe-streamed"})["experiment_id"]
        out = f"{d}/streamed"
        p8("item17 run --otlp into MLflow's OTLP endpoint (experiment probe-streamed)", [R, "run", BF8, "--runs", "3", "--out", out, "--otlp", f"{base}/v1/traces",
           "--otlp-header", f"x-mlflow-experiment-id={streamed}"], 1, lambda rc, o, e: [("wrong exit", len(traces_in(base, streamed)) == 6, f"{len(traces_in(base, streamed))} traces streamed")],
           timeout=180)
        p8("item17 export --mlflow of the streamed folder into another experiment: its run gets 6 traces of its own", [R, "export", out, "--mlflow", base, "--experiment",
           "probe-published"], 0, lambda rc, o, e: [("data lost", len(traces_in(base, exp_id(base, "probe-published"))) == 6,
                                                     f"{len(traces_in(base, exp_id(base, 'probe-published')))} traces in the new experiment"),
                                                    ("data lost", len(traces_in(base, streamed)) == 6, "the first experiment changed")], timeout=300)
        # a published trace back into a case: drafted from the failed assessment, chain path relative
        pub = exp_id(base, "probe-published")
        failing = [t for t in traces_in(base, pub) if t.get("tags", {}).get("ragprobe.case") == "cost"]
        os.makedirs(f"{d}/cases", exist_ok=True)
        w(f"{d}/chains/plain.yaml", f"retriever: {{kind: memory, corpus: {CORPUS}, k: 2}}\nllm: {{kind: extractive}}\n")  # needs no vars
        if failing:
            tid = failing[0]["trace_id"]
            for judged in (False, True):
                suite = f"{d}/cases/imported-{judged}.yaml"
                if judged:
                    w(suite, f"name: imported\nchain: ../chains/plain.yaml\njudge: {{kind: openai, base_url: http://127.0.0.1:9/v1, model: j}}\n"
                      "vars: {product: Databricks}\ncases:\n  - id: storage\n    question: How does Databricks store databases?\n")
                def chk(rc, o, e, suite=suite, judged=judged):
                    y = open(suite).read() if os.path.exists(suite) else ""
                    v = sh8([R, "validate", suite], rss=False, cwd=d)
                    tags = failing[0].get("tags", {})  # published traces have ids of their own: find the run by its tags
                    answer = next((j["answer"] for j in map(json.loads, open(f"{out}/runs.jsonl")) if j["case"] == tags.get("ragprobe.case")
                                   and str(j["run"]) == str(tags.get("ragprobe.run"))), None)
                    drafted = y.split("not_contains:")[-1].strip().lstrip("- ").strip() if "not_contains" in y else None
                    r = [("wrong exit", drafted is None or drafted == answer, f"drafted not_contains {drafted[:80] if drafted else drafted!r}, the run's answer {str(answer)[:80]!r}"),
                         ("wrong exit", v[0] == 0, f"validate rejects the written suite: {v[2].strip()[-200:]!r}")]
                    chain_line = (y.split("chain:")[1].splitlines()[0] if "chain:" in y else "").strip().strip("'\"")
                    if not judged: r.append(("wrong exit", chain_line and not chain_line.startswith("/"), f"chain written as {chain_line!r}"))
                    else: r.append(("wrong exit", "judge:" in y.split("cases:")[-1], "the draft is not a judged check of the failed assessment"))
                    return r
                p8(f"item17 import --mlflow of a failed trace{' into a suite with a judge' if judged else ''}: drafted from the failed assessment, chain relative",
                   [R, "import", "--mlflow", base, "--trace-id", tid, "--suite", suite, "--chain", "chains/plain.yaml"], 0, chk, cwd=d, timeout=120)
        else:
            rec8("item17 import --mlflow of a failed trace", "", [("wrong exit", False, "no failing cost trace found in probe-published")])
        # item 7: publishing interrupted (the server stops answering after the runs), then export --mlflow finishes it
        px = Proxy(base); out = f"{d}/interrupted"
        try:
            px.hold = lambda path: not any(k in path for k in ("/experiments/", "/runs/create"))
            sig_probe("item7 SIGINT while run --mlflow publishes (traces/search) to a real MLflow that stopped answering: 130 within 5 s, runs kept",
                      [R, "run", BF8, "--runs", "3", "--out", out, "--mlflow", px.base, "--experiment", "probe-interrupted"], signal.SIGINT,
                      lambda b: wait_lines(out, 6, 0.01) and px.count("traces/search") > 0 and time.sleep(1.0) is None,
                      checks=lambda rc, o, e: exact(out, ["storage", "cost"], 3))
            px.hold = lambda path: False
            def finished(rc, o, e):
                eid = exp_id(base, "probe-interrupted")
                runs = mlpost(base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [eid]}).get("runs", []) if eid else []
                st = [r_["info"]["status"] for r_ in runs]
                return [("data lost", len(traces_in(base, eid)) == 6, f"{len(traces_in(base, eid))} traces in probe-interrupted"),
                        ("data lost", st.count("FINISHED") >= 1, f"run statuses {st}")]
            p8("item7 export --mlflow after the interrupted publish finishes it (run FINISHED, 6 traces)", [R, "export", out, "--mlflow", px.base], 0, finished, timeout=300)
        finally: px.close()
    finally: stop(ml)

def cat8():
    C = C8; d0 = f"{W}/c8"; os.makedirs(d0)
    if ONLY and "8" not in ONLY: return
    try: resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    except (ValueError, OSError): pass
    for n, f in [(1, item1), (2, item2), (3, item3), (4, item4), (5, item5), (6, item6), (7, item7), (8, item8), (9, item9), (10, item10),
                 (11, item11), (12, item12), (13, item13), (14, item14), (15, item15), (16, item16), (17, item17)]:
        if not item(n): continue
        d = f"{d0}/item{n}"; os.makedirs(d)
        t0 = time.time(); print(f"-- item {n}", flush=True)
        try: f(d)
        except Exception as ex:
            import traceback; traceback.print_exc(); print("HARNESS ERROR in item", n, ex, flush=True)
        print(f"-- item {n}: {time.time() - t0:.0f} s", flush=True)

for f in (cat1, cat2, cat3, cat4, cat5, cat6, cat7, cat8):
    try: f()
    except Exception as ex:
        import traceback; traceback.print_exc(); print("HARNESS ERROR in", f.__name__, ex)
json.dump(RESULTS, open(f"{PROBE_DIR}/results.json", "w"), indent=1, default=str)
names = {1: "bad files", 2: "kills/disk-full", 3: "hostile servers", 4: "hostile content", 5: "secrets", 6: "concurrent writers", 7: "CLI edges",
         8: "new surfaces (issue 26)"}
COLS = ("clean", "panicked", "hung", "wrong exit", "data lost", "leaked", "unbounded")
print("\ncategory | tried | " + " | ".join(COLS))
T = [0] * (1 + len(COLS))
for c in range(1, 9):
    rs = [r for r in RESULTS if r["cat"] == c]
    if not rs: continue
    row = [len(rs)] + [sum(r["status"] == s for r in rs) for s in COLS]
    T = [a + b for a, b in zip(T, row)]
    print(f"{c}. {names[c]} | " + " | ".join(map(str, row)))
print("total | " + " | ".join(map(str, T)))
print("\nNOT CLEAN:")
for r in RESULTS:
    if r["status"] != "clean" or r["why"]: print(f"- [{r['cat']}] {r['status']}: {r['name']} :: {r['cmd'][:200]} :: expected {r['expect']} got rc={r['rc']} :: {'; '.join(r['why'])[:400]}")
