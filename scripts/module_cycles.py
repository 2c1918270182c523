#!/usr/bin/env python3
"""Prints the import cycles between the modules of src/.

A module is a file: src/wire/auth.rs is `wire::auth`, src/config/mod.rs is `config`. An
edge A -> B is a path to B written in A: `use crate::b::...`, `crate::b::x(...)` inline,
`use child::...` in a directory module, and `super::`/`self::` paths resolved from A (`super::tls` in wire/auth.rs is
`wire::tls`). A path names the longest module it reaches (`crate::wire::ReplicationStream`
is the module `wire`, `crate::wire::stream::x` is `wire::stream`); re-exports are not
followed, so an edge goes to the module a file names. Test modules (`#[cfg(test)] mod
tests`) are left out: a test may reach anywhere.

Prints each strongly connected component with more than one module (every cycle lies in
one), with one shortest cycle through it as an example, then the count. With --top, folds
modules to their top-level room (`wire::auth` -> `wire`) first: cycles between rooms.
Exits 0; the output is for reading.

Usage: scripts/module_cycles.py [--top] [SRC_DIR]
"""

import os
import re
import sys
from collections import deque

USE_PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_RELATIVE = re.compile(r"\buse\s+([a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)*)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}\s*;", re.S)


def module_of(src, path):
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def is_dir_module(path):
    return os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")


def strip_tests(text):
    """Drops `#[cfg(test)] mod name { ... }` blocks and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def resolve(modules, here, dir_module, root, segments):
    """The longest known module named by `root::segments` written in module `here`."""
    if root == "crate":
        base = ()
    else:
        # In a file module, `self` is the file itself and `super` its parent; in mod.rs,
        # `self` is the directory module and `super` the one above.
        base = here
        if root == "super":
            base = here[:-1]
    path = base + tuple(segments)
    for n in range(len(path), 0, -1):
        if path[:n] in modules:
            return path[:n]
    return None


def edges_of(src, files):
    modules = {module_of(src, f) for f in files}
    graph = {m: set() for m in modules}
    for f in files:
        here = module_of(src, f)
        with open(f, encoding="utf-8") as fh:
            text = strip_tests(fh.read())
        paths = []
        for m in USE_GROUP.finditer(text):
            prefix = [s for s in m.group(2).split("::") if s]
            for item in re.split(r",", m.group(3)):
                item = item.strip().split(" as ")[0].strip()
                first = item.split("::")[0].strip("{} \n")
                if first and first != "self":
                    paths.append((m.group(1), prefix + [s for s in item.split("::") if s and s != "{"]))
                else:
                    paths.append((m.group(1), prefix))
        for m in USE_PATH.finditer(text):
            paths.append((m.group(1), [s for s in m.group(2).split("::") if s]))
        # 2018-edition relative paths to a child module: `use tls::SslMode;` in mod.rs.
        for m in USE_RELATIVE.finditer(text):
            if here + (m.group(1),) in modules:
                paths.append(("self", [m.group(1)] + [s for s in m.group(2).split("::") if s]))
        for root, segments in paths:
            target = resolve(modules, here, is_dir_module(f), root, segments)
            if target is not None and target != here and target != ():
                # A module using its own child (mod.rs -> mod child) is containment, not an
                # import that can cycle back; it still counts when the child uses it back.
                graph[here].add(target)
    return graph


def fold(graph):
    folded = {}
    for a, targets in graph.items():
        top_a = a[:1]
        folded.setdefault(top_a, set())
        for b in targets:
            if b[:1] != top_a:
                folded[top_a].add(b[:1])
    return folded


def components(graph):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def shortest_cycle(graph, comp):
    members = set(comp)
    best = None
    for start in comp:
        prev = {start: None}
        queue = deque([start])
        while queue:
            v = queue.popleft()
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    path, x = [], v
                    while x is not None:
                        path.append(x)
                        x = prev[x]
                    path.reverse()
                    if best is None or len(path) < len(best):
                        best = path
                    queue.clear()
                    break
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
    return best


def name(m):
    return "::".join(m) or "crate"


def main(argv):
    top = "--top" in argv
    rest = [a for a in argv if a != "--top"]
    src = rest[0] if rest else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    files = []
    for dirpath, _, names in os.walk(src):
        files += [os.path.join(dirpath, n) for n in names if n.endswith(".rs")]
    graph = edges_of(src, files)
    if top:
        graph = fold(graph)
    comps = components(graph)
    for comp in comps:
        cycle = shortest_cycle(graph, comp)
        print(f"cycle among {len(comp)}: {', '.join(name(m) for m in comp)}")
        print(f"  e.g. {' -> '.join(name(m) for m in cycle + cycle[:1])}")
    kind = "rooms" if top else "modules"
    print(f"{len(comps)} cycle(s) between {kind} of {os.path.normpath(src)}")


if __name__ == "__main__":
    main(sys.argv[1:])
