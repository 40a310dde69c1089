"""edgeship's own import graph: imports of edgeship modules made inside functions, and the import
circles (strongly connected components), over every import and over top-level imports only.

    python3 bench/import_graph.py        # from the repository root; reads the files, imports nothing
"""
import ast
import collections
import pathlib
import sys

roots = {"edgeship": "edgeship", "edgeship.convert": "convert", "edgeship.quantize": "quantize", "edgeship.runtime": "runtime", "edgeship.device_tests": "device_tests"}
def modname(p):
    p = pathlib.Path(p)
    for pkg, d in sorted(roots.items(), key=lambda kv: -len(kv[1])):
        try:
            rel = p.relative_to(d)
        except ValueError:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__": parts = parts[:-1]
        return ".".join([pkg] + parts)
mods = {}
for d in roots.values():
    for f in pathlib.Path(d).rglob("*.py"):
        mods[modname(f)] = f
inner = 0; top_edges = collections.defaultdict(set); all_edges = collections.defaultdict(set)
for m, f in mods.items():
    tree = ast.parse(f.read_text())
    pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
    def resolve(node):
        out = []
        if isinstance(node, ast.Import):
            for a in node.names: out.append(a.name)
        else:
            base = node.module or ""
            if node.level:
                b = pkg.split(".")
                b = b[: len(b) - node.level + 1]
                base = ".".join(b + ([base] if base else []))
            for a in node.names:
                cand = base + "." + a.name
                out.append(cand if cand in mods else base)
        return [o for o in out if o.split(".")[0] == "edgeship"]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            tgts = resolve(node)
            if not tgts: continue
            is_top = node in tree.body or any(node in getattr(n, "body", []) for n in tree.body if isinstance(n, (ast.If, ast.Try)))
            for t in tgts:
                all_edges[m].add(t)
                if is_top: top_edges[m].add(t)
            if not is_top: inner += 1
print("imports of edgeship modules inside functions:", inner)
def cycles(edges):
    # SCCs
    idx = {}; low = {}; st = []; on = set(); res = []; c = [0]
    def sc(v):
        idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in mods: continue
            if w not in idx: sc(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: res.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in mods:
        if v not in idx: sc(v)
    return res
print("cycles (all imports):")
for c in cycles(all_edges): print("  ", c)
print("cycles (top-level only):")
for c in cycles(top_edges): print("  ", c)
