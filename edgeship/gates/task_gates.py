"""The task metric's gates in `edgeship check` ([gates.accuracy] metric, metric_drop, min_metric):

    accuracy.metric_drop   the float model's score - the artifact's <= metric_drop (metric's unit)
    accuracy.min_metric    the artifact's score >= min_metric

Each gate record also carries `metric` (its name: "map50", "score.py:fn"). A result with no task
score (an error, a `ran` record, or a metric with no reference score for a drop) is not measured,
never a pass. With a task metric set, the recipe's default top-1 drop gate is not added (a
detector or a segmenter has no top-1); `max_drop = {top1 = ...}` still adds it.
"""

from __future__ import annotations


def metric_gates(accuracy, r: dict, acc: dict, why: str, gate) -> list[dict]:
    if accuracy.metric is None:
        return []
    task = (acc or {}).get("task") or {}
    name = task.get("metric") or accuracy.metric
    unit = task.get("unit", "")
    out = []
    if accuracy.metric_drop is not None:
        drop = task.get("drop")
        if drop is None:
            detail = why if not acc else (f"{name}: no score of the float model to drop from (scored against "
                                          f"{task.get('against')}); use min_metric" if task else f"no {name} score")
            out.append(gate("accuracy.metric_drop", r, "not_measured", None, accuracy.metric_drop, "<=", unit, detail))
        else:
            ok = drop <= accuracy.metric_drop + 1e-9
            out.append(gate("accuracy.metric_drop", r, "pass" if ok else "fail", drop, accuracy.metric_drop, "<=",
                            unit, f"{name}: float {task['reference']:.4g} -> artifact {task['value']:.4g}"))
    if accuracy.min_metric is not None:
        value = task.get("value")
        if value is None:
            out.append(gate("accuracy.min_metric", r, "not_measured", None, accuracy.min_metric, ">=", unit,
                            why if not acc else f"no {name} score"))
        else:
            ok = value >= accuracy.min_metric - 1e-12
            out.append(gate("accuracy.min_metric", r, "pass" if ok else "fail", value, accuracy.min_metric, ">=",
                            unit, f"{name} of the artifact (against {task.get('against')})"))
    for g in out:
        g["metric"] = name
    return out
