"""Budget gates: turn measured results (validate records) into pass / fail / not measured verdicts
(the gate record is record.py's; regressions against a baseline are regression.py's).

Latency verdicts rest on the raw per-run samples (`latency.samples_ms`) where the runner reports
them: a budget fails only when the percentile's bootstrap lower bound is over it, and a baseline
regression counts only when a one-sided Mann-Whitney U test is significant at `confidence` AND
the bootstrap lower bound of the median shift clears both the relative and the absolute floor.
Without samples the verdict falls back to the point estimate, and says so.
"""

from __future__ import annotations

from edgeship.config import Project, Target
from edgeship.gates.record import Status, gate, verdict
from edgeship.gates.regression import regression_gates
from edgeship.gates.stats import quantile_bounds
from edgeship.gates.task_gates import metric_gates
from edgeship.quantize import get_recipe

BUDGET_CONFIDENCE = 0.95


def max_drops(project: Project, target: Target) -> dict[str, float]:
    """Recipe defaults < [gates.accuracy].max_drop < the target's own max_drop."""
    recipe = get_recipe(target.recipe)
    drops = {"top1": recipe.max_top1_drop, "cosine": round(1 - recipe.min_cosine, 10)}
    if project.gates.accuracy.metric:  # the task metric replaces the recipe's top-1 default (a detector has none)
        drops.pop("top1")
    drops.update(project.gates.accuracy.max_drop)
    drops.update(target.max_drop or {})
    return drops


def accuracy_gates(project: Project, target: Target, r: dict) -> list[dict]:
    acc = r.get("accuracy") or {}
    why = r.get("error") or "no reference outputs to compare with"
    drop_of = {
        "top1": (acc.get("accuracy_drop"), "pts", f"top-1 vs labels: float {acc.get('reference_accuracy', 0):.1f}% "
                 f"-> artifact {acc.get('accuracy', 0):.1f}%"),
        "agreement": (None if acc.get("top1_agreement") is None else 100 - acc["top1_agreement"], "pts",
                      "share of samples whose top-1 differs from the float reference"),
        "cosine": (None if acc.get("cosine") is None else 1 - acc["cosine"], "", "1 - cosine to the float reference"),
    }
    out = []
    for metric, limit in max_drops(project, target).items():
        value, unit, what = drop_of[metric]
        name = f"accuracy.{metric}_drop"
        if value is None:
            detail = why if not acc else f"no {metric} metric"
            out.append(gate(name, r, Status.NOT_MEASURED, None, limit, "<=", unit, detail))
        else:
            out.append(gate(name, r, verdict(value <= limit + 1e-9), value, limit, "<=", unit, what))
    floor = project.gates.accuracy.min_top1
    if floor is not None:
        value = acc.get("accuracy")
        if value is None:
            out.append(gate("accuracy.min_top1", r, Status.NOT_MEASURED, None, floor, ">=", "%",
                            why if not acc else "no labels in the evaluation data"))
        else:
            out.append(gate("accuracy.min_top1", r, verdict(value >= floor), value, floor, ">=", "%",
                            "top-1 vs labels"))
    return out + metric_gates(project.gates.accuracy, r, acc, why, gate)


def latency_gates(project: Project, r: dict) -> list[dict]:
    budget = project.gates.latency.for_device(r["device"])
    own_budget = r["device"] in project.gates.latency.device
    lat = r.get("latency") or {}
    samples = lat.get("samples_ms")
    out = []
    for q, limit in ((50, budget.p50_ms), (90, budget.p90_ms)):
        if limit is None:
            continue
        name = f"latency.p{q}"
        point = lat.get(f"p{q}_ms")
        if r.get("emulated") and not own_budget:  # the host's budget says nothing about an emulated board
            out.append(gate(name, r, Status.SKIPPED, point, limit, "<=", "ms",
                            "emulated device: its latency is not device latency (give it its own budget in "
                            f'[gates.latency.device."{r["device"]}"] to gate it anyway)'))
        elif point is None:
            out.append(gate(name, r, Status.NOT_MEASURED, None, limit, "<=", "ms", r.get("error") or "no latency measured"))
        elif samples and len(samples) >= 3:
            est, lo, hi = quantile_bounds(samples, q, BUDGET_CONFIDENCE)
            detail = (f"p{q} {est:.3f} ms, {BUDGET_CONFIDENCE:.0%} bounds {lo:.3f}..{hi:.3f} ms over {len(samples)} "
                      "runs; fails only when the lower bound is over budget")
            out.append(gate(name, r, verdict(lo <= limit), est, limit, "<=", "ms", detail,
                            confidence=BUDGET_CONFIDENCE))
        else:
            out.append(gate(name, r, verdict(point <= limit), point, limit, "<=", "ms",
                            "point estimate (the runner reported no raw samples)"))
    return out


def budget_gates(project: Project, r: dict) -> list[dict]:
    out = []
    max_kb = project.gates.size.max_kb
    if max_kb is not None:
        size = r.get("size_bytes")
        if size is None:
            out.append(gate("size", r, Status.NOT_MEASURED, None, max_kb, "<=", "KB", "artifact missing"))
        else:
            out.append(gate("size", r, verdict(size / 1024 <= max_kb), size / 1024, max_kb, "<=", "KB",
                            f"artifact file {size / 1024:.1f} KB, budget {max_kb:g} KB"))
    max_mb = project.gates.memory.max_peak_mb
    if max_mb is not None:
        peak = r.get("peak_rss_mb")
        if peak is None:
            out.append(gate("memory", r, Status.NOT_MEASURED, None, max_mb, "<=", "MB", r.get("error") or "not reported"))
        else:
            out.append(gate("memory", r, verdict(peak <= max_mb), peak, max_mb, "<=", "MB",
                            "peak resident memory of the process running the artifact"))
    return out


def evaluate(project: Project, results: list[dict], baseline: dict | None = None) -> list[dict]:
    """Every configured gate for every result; results carry "target" ("tflite:int8") and "device"."""
    by_key = {t.key: t for t in project.targets}
    gates = []
    for r in results:
        target = by_key[r["target"]]
        if r.get("status") == Status.ERROR:
            r = {**r, "accuracy": None, "latency": None, "peak_rss_mb": None}
        if r.get("status") == "ran":  # measured, accuracy not checked: never a pass
            r = {**r, "accuracy": None, "error": "ran: " + (r.get("note") or "accuracy not checked")}
        gates += accuracy_gates(project, target, r)
        gates += latency_gates(project, r)
        gates += budget_gates(project, r)
        if baseline is not None:
            gates += regression_gates(project.gates.regression, r, baseline)
    return gates
