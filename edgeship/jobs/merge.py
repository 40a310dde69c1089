"""`edgeship merge`: the plan's stored results judged as `edgeship check` judges its own.

The validation records the jobs stored are handed to check's own end (checking.judge: the same
gates, reports and exit code), so merge and check cannot disagree on the same measurements.
Every result must carry the plan's tool versions: one made with other tools is never used.

--against OLD_DIR: per (target, device), the change in accuracy and latency from the results in
another store (the newest there for the same model, target and device), and which tool versions
differ: toolchain.json and toolchain.md in the report folder, a table on the terminal. A report,
not a gate: gate a toolchain change with --baseline (check's regression gates).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from edgeship.checking import CheckOptions, CheckOutcome, judge
from edgeship.config import LoadedConfig, load_config
from edgeship.console import console
from edgeship.errors import InputError
from edgeship.gates.regression import load_baseline
from edgeship.jobs.plan import load_plan, make_plan
from edgeship.jobs.store import Store


@dataclass
class MergeOptions:
    results: Path
    plan: Path
    report_dir: Path | None = None
    baseline: Path | None = None
    against: Path | None = None
    config: Path | None = None
    verbose: bool = False


def _ordered(plan: dict, cfg: LoadedConfig) -> list[dict]:
    """The validation jobs in check's order: device, then format, then recipe (as one bundle lists them)."""
    p = cfg.project
    formats = list(dict.fromkeys(t.format for t in p.targets))
    recipes = list(dict.fromkeys(t.recipe for t in p.targets))
    jobs = [j for j in plan["jobs"] if j["kind"] == "validate"]
    return sorted(jobs, key=lambda j: (p.devices.index(j["device"]), formats.index(j["format"]),
                                       recipes.index(j["recipe"])))


def load_results(plan: dict, cfg: LoadedConfig, store: Store) -> tuple[list[dict], list[dict], list[dict]]:
    """(results, contexts, stored results) of the plan's validation jobs, in check's order."""
    jobs = _ordered(plan, cfg)
    missing = [j for j in jobs if not store.done(j["key"])]
    if missing:
        names = ", ".join(f"{j['target']}@{j['device']}" for j in missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise InputError(f"{len(missing)} of {len(jobs)} validation jobs have no result in '{store.root}': {names}",
                         hint="run them first: edgeship run --plan PLAN --results DIR (done jobs are skipped)")
    results, contexts, stored = [], [], []
    for j in jobs:
        r = store.result(j["key"])
        if r.get("versions") != plan["versions"]:
            raise InputError(f"the result of {j['target']}@{j['device']} in '{store.root}' was made with other tool "
                             "versions than the plan's", hint="run the plan again into a fresh results store")
        results += r["records"]
        if r.get("context"):  # the bundle where this store is mounted now, not where the job ran
            contexts.append({**r["context"], "bundle": str(store.path(j["needs"][0]) / "bundle")})
        stored.append(r)
    return results, contexts, stored


def merge(opts: MergeOptions) -> CheckOutcome:
    t0 = time.perf_counter()
    plan = load_plan(opts.plan)
    config = opts.config or Path(plan["config"])
    if not opts.config and not config.exists():
        raise InputError(f"the plan's project file '{config}' is not here", hint="pass it: --config path/to/edgeship.toml")
    cfg = load_config(config)
    if [j["key"] for j in make_plan(cfg, plan["versions"])["jobs"]] != [j["key"] for j in plan["jobs"]]:
        raise InputError(f"the project changed since the plan was made ({cfg.path})",
                         hint="plan again and run the new plan: edgeship plan CONFIG --out plan.json")
    store = Store(opts.results, create=False)
    results, contexts, stored = load_results(plan, cfg, store)
    baseline_path = opts.baseline or cfg.resolve(cfg.project.baseline)
    baseline = load_baseline(baseline_path) if baseline_path else None
    outcome = judge(cfg, CheckOptions(cfg.path, baseline_path, opts.report_dir), results, contexts, baseline, t0,
                    "merge")
    if opts.against is not None:
        changes = toolchain_changes(plan, stored, Store(opts.against, create=False))
        write_toolchain_report(changes, outcome.report_dir)
    return outcome


# -- --against: what a toolchain change did ------------------------------------------------------

FIGURES = (("top1", ("accuracy", "accuracy")), ("agreement", ("accuracy", "top1_agreement")),
           ("cosine", ("accuracy", "cosine")), ("p50_ms", ("latency", "p50_ms")))


def _figure(record: dict, path: tuple[str, str]):
    v = (record.get(path[0]) or {}).get(path[1])
    return v if isinstance(v, (int, float)) else None


def toolchain_changes(plan: dict, stored: list[dict], old: Store) -> dict:
    """Per (target, device) of this plan: old and new accuracy/latency, the change, the tool versions that differ."""
    previous: dict[tuple, tuple[dict, dict]] = {}
    for r in old.results():
        if r.get("kind") != "validate" or r.get("model") != plan.get("model"):
            continue
        for rec in r.get("records") or []:
            k = (rec.get("target"), rec.get("device"))
            if k not in previous or r.get("started_unix", 0) > previous[k][0].get("started_unix", 0):
                previous[k] = (r, rec)
    rows = []
    for r in stored:
        for rec in r["records"]:
            k = (rec["target"], rec["device"])
            row = {"target": k[0], "device": k[1], "figures": {}, "versions": {}, "matched": k in previous}
            if k in previous:
                old_r, old_rec = previous[k]
                for name, path in FIGURES:
                    a, b = _figure(old_rec, path), _figure(rec, path)
                    row["figures"][name] = {"old": a, "new": b,
                                            "change": None if a is None or b is None else b - a}
                va, vb = old_r.get("versions") or {}, r.get("versions") or {}
                row["versions"] = {p: [va.get(p), vb.get(p)] for p in sorted({*va, *vb}) if va.get(p) != vb.get(p)}
            rows.append(row)
    return {"against": str(old.root), "model": plan.get("model"), "rows": rows}


def _fmt(v, digits=2) -> str:
    return "–" if v is None else f"{v:+.{digits}f}" if isinstance(v, float) else str(v)


def write_toolchain_report(changes: dict, out_dir: Path) -> None:
    from rich.table import Table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "toolchain.json").write_text(json.dumps(changes, indent=2) + "\n")
    head = "| target | device | top-1 change | agreement change | cosine change | p50 change (ms) | tool versions that differ |"
    lines = [f"## Against {changes['against']}", "", head, "|" + "---|" * 7]
    table = Table(title=f"against {changes['against']}")
    for col in ("target", "device", "top-1", "agreement", "cosine", "p50 ms", "tools changed"):
        table.add_column(col)
    for row in changes["rows"]:
        f = row["figures"]
        cells = [_fmt((f.get(n) or {}).get("change"), 4 if n == "cosine" else 2) for n in ("top1", "agreement",
                                                                                           "cosine", "p50_ms")]
        tools = ", ".join(f"{p} {a or 'absent'} → {b or 'absent'}" for p, (a, b) in row["versions"].items())
        tools = tools or ("none" if row["matched"] else "no earlier result")
        lines.append(f"| `{row['target']}` | {row['device']} | " + " | ".join(cells) + f" | {tools} |")
        table.add_row(row["target"], row["device"], *cells, tools)
    (out_dir / "toolchain.md").write_text("\n".join(lines) + "\n")
    console().print(table)
