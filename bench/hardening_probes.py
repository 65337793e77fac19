#!/usr/bin/env python3
"""Hostile probes for ragprobe, run on demand (not by CI): bad files, kills and a full
disk, hostile servers, hostile report content, secrets, concurrent writers, CLI edges.

    cargo build && python3 bench/hardening_probes.py [CATEGORY ...]

Prints one line per probe and a tally (tried / clean / panicked / wrong exit / data lost).
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

def record(cat, name, cmd, expect, rc, out, err, extra=None):
    if rc == "ok": expect = "ok"
    """extra: list of (kind, ok, msg); kind in wrong exit|data lost|panicked"""
    status = "clean"; why = []
    if rc == 101 or "panicked at" in err or "panicked at" in out or rc in (-6, 134, -11, 139):
        status = "panicked"; why.append(f"rc={rc} " + (re.search(r"panicked at.*", err) or re.search(r".*", err)).group(0)[:160])
    elif rc not in (expect if isinstance(expect, (set, tuple, list)) else {expect}):
        status = "wrong exit"; why.append(f"rc={rc} expected {expect}; stderr: {err.strip()[-200:]!r}")
    for kind, ok, msg in (extra or []):
        if not ok and kind == "nit": why.append(f"[nit] {msg}"); continue
        if not ok:
            if status == "clean" or (kind == "data lost" and status == "wrong exit"): status = kind
            why.append(f"[{kind}] {msg}")
    RESULTS.append(dict(cat=cat, name=name, cmd=cmd if isinstance(cmd, str) else " ".join(cmd), expect=str(expect), rc=rc, status=status, why=why))
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
                    r.append(("wrong exit", 0 < kb < rss_mb * 1024, f"max RSS {kb} kB"))
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
              lambda rc, o, e: errs(f"{d}/czero", 2)(rc, o, e) + [("wrong exit", int((re.search(r'MAXRSS (\d+)', e) or re.search('(0)', '0')).group(1)) < 600 * 1024, "RSS > 600MB: " + (re.search(r"MAXRSS \d+", e) or re.search("()", "")).group(0) + " kB")], timeout=60)
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
            return [("data lost", not hits, "; ".join(sorted(set(hits)))[:300])]
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

for f in (cat1, cat2, cat3, cat4, cat5, cat6, cat7):
    try: f()
    except Exception as ex:
        import traceback; traceback.print_exc(); print("HARNESS ERROR in", f.__name__, ex)
json.dump(RESULTS, open(f"{PROBE_DIR}/results.json", "w"), indent=1)
names = {1: "bad files", 2: "kills/disk-full", 3: "hostile servers", 4: "hostile content", 5: "secrets", 6: "concurrent writers", 7: "CLI edges"}
print("\ncategory | tried | clean | panicked | wrong exit | data lost")
T = [0] * 5
for c in range(1, 8):
    rs = [r for r in RESULTS if r["cat"] == c]
    row = [len(rs)] + [sum(r["status"] == s for r in rs) for s in ("clean", "panicked", "wrong exit", "data lost")]
    T = [a + b for a, b in zip(T, row)]
    print(f"{c}. {names[c]} | " + " | ".join(map(str, row)))
print("total | " + " | ".join(map(str, T)))
print("\nNOT CLEAN:")
for r in RESULTS:
    if r["status"] != "clean" or r["why"]: print(f"- [{r['cat']}] {r['name']} :: {r['cmd'][:200]} :: expected {r['expect']} got rc={r['rc']} :: {'; '.join(r['why'])[:300]}")
