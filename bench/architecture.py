#!/usr/bin/env python3
"""The crate's shape in numbers: lines per module, imports between files, import cycles,
imports that point up a layer, and the longest functions.

    python3 bench/architecture.py            # the table
    python3 bench/architecture.py --edges    # also every upward import

Layers are listed below, lowest first; a file may import from its own layer or lower ones.
A module not listed counts as the top layer (commands, cli, main). Cycles are counted
between files and between folders (top-level modules), so two folders of one layer that
import each other show up even when no two files do.
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Lowest first. A file in layer N may import layers <= N.
LAYERS = [
    ("foundation", ["model", "seed", "exit_codes", "rules", "trace", "text", "config", "out",
                    "redact", "secrets", "limits", "atomic", "invisible", "sequential",
                    "distributions"]),
    ("transport", ["backend", "receiver"]),
    ("chain", ["chain"]),
    ("suite", ["suite", "judge"]),
    ("plan", ["plan", "checks", "events"]),
    ("runner", ["runner", "schedule"]),
    ("store", ["store", "results"]),
    ("aggregate", ["aggregate", "stats", "baseline", "diff", "retrieval", "multiple", "gate",
                   "power"]),
    ("report", ["report", "export", "import", "repro", "session", "mlflow", "ci"]),
    ("commands", ["commands", "cli", "error", "lib", "main", "bin"]),
]


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)


def layer_of(module):
    top = module.split("::")[0]
    for i, (_, prefixes) in enumerate(LAYERS):
        if top in prefixes:
            return i
    return len(LAYERS) - 1


def strip_tests(text):
    # Unit tests may reach anywhere; only product code counts.
    cut = re.search(r"^#\[cfg\(test\)\]", text, re.M)
    return text[: cut.start()] if cut else text


def references(text, modules):
    found = set()
    # `use crate::a::b::{c, d::e}` and inline `crate::a::b::f(…)`.
    for m in re.finditer(r"crate::([A-Za-z_][A-Za-z0-9_:]*)(::\{([^;]*?)\})?", text, re.S):
        base = m.group(1).rstrip(":")
        candidates = [base]
        if m.group(3):
            for item in re.split(r"[,\s]+", m.group(3)):
                item = item.strip("{} ")
                if item and item != "self":
                    candidates.append(base + "::" + item.split("::{")[0])
        for c in candidates:
            parts = c.split("::")
            while parts and "::".join(parts) not in modules:
                parts.pop()
            if parts:
                found.add("::".join(parts))
    return found


def tarjan(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def functions(path, text):
    lines = text.split("\n")
    out = []
    start = re.compile(r"^(\s*)(pub(\([a-z]+\))? )?(async )?fn ([a-z_0-9]+)")
    for i, line in enumerate(lines):
        m = start.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        for j in range(i + 1, len(lines)):
            if lines[j] == indent + "}":
                out.append((j - i + 1, f"{os.path.relpath(path, ROOT)}:{i + 1} {m.group(5)}"))
                break
    return out


def main():
    files = []
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                files.append(os.path.join(dirpath, name))
    files.sort()
    modules = {module_of(f): f for f in files}
    graph = defaultdict(set)
    lines_per_layer = defaultdict(int)
    fn_lengths = []
    upward = []
    for module, path in modules.items():
        text = open(path, encoding="utf-8").read()
        product = strip_tests(text)
        lines_per_layer[layer_of(module)] += text.count("\n")
        graph[module]
        for target in references(product, modules):
            if target == module or module.startswith(target + "::") and target in ("chain", "suite", "report", "export", "commands"):
                # A parent's re-exports are not an import edge.
                if target == module:
                    continue
            graph[module].add(target)
            if layer_of(target) > layer_of(module):
                upward.append((module, target))
        fn_lengths.extend(functions(path, product))

    cycles = tarjan(graph)
    edges = sum(len(v) for v in graph.values())
    # The same graph by folder (top-level module): a folder that imports a folder which
    # imports it back is a cycle even when no two files import each other, and layers that
    # hold several folders would hide it.
    folders = defaultdict(set)
    folder_edges = defaultdict(list)
    for module, targets in graph.items():
        a = module.split("::")[0]
        folders[a]
        for target in targets:
            b = target.split("::")[0]
            if a != b:
                folders[a].add(b)
                folder_edges[(a, b)].append(f"{module} -> {target}")
    folder_cycles = tarjan(folders)
    print(f"files: {len(files)}, lines: {sum(open(f, encoding='utf-8').read().count(chr(10)) for f in files)}")
    print(f"import edges between files: {edges}")
    print(f"import cycles (strongly connected groups of files): {len(cycles)}")
    for c in cycles:
        print(f"  {len(c)} files: {', '.join(c)}")
    print(f"import cycles between folders: {len(folder_cycles)}")
    for c in folder_cycles:
        members = set(c)
        inside = [e for (a, b), es in folder_edges.items() if a in members and b in members for e in es]
        print(f"  {', '.join(c)}: {'; '.join(sorted(inside)[:6])}")
    print(f"imports pointing up a layer: {len(upward)}")
    if "--edges" in sys.argv:
        for a, b in sorted(upward):
            print(f"  {a} -> {b}")
    print("lines per layer:")
    for i, (name, _) in enumerate(LAYERS):
        print(f"  {i} {name:<11} {lines_per_layer[i]:>6}")
    print("ten longest functions (lines):")
    for n, where in sorted(fn_lengths, reverse=True)[:10]:
        print(f"  {n:>4}  {where}")


if __name__ == "__main__":
    main()
