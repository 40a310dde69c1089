"""The task metric of one validated artifact (validate's `accuracy.task`) and its checks.

    accuracy.task = {metric, unit, user, value, reference, drop, against: "labels" | "reference"}

`--metric-drop D`: the artifact may score at most D below the reference (same inputs, same
labels); `--min-metric M`: it must score at least M. A drop needs a reference score: psnr and
cosine without labels (scored against the reference's own outputs) only take a floor.
"""

from __future__ import annotations

from edgeship.task_metrics import TaskMetric, evaluate


def task_record(metric: TaskMetric, outputs, golden, names: list[str]) -> dict:
    reference = golden.outputs
    if reference is None:  # labels only: the artifact's score, nothing to drop from
        rec = {"metric": metric.name, "unit": metric.unit, "user": metric.user,
               "value": metric.score(outputs, golden.labels, names), "reference": None, "drop": None,
               "against": "labels"}
        return rec
    return evaluate(metric, outputs, reference, golden.labels, names)


def metric_checks(req, task: dict) -> list[dict]:
    checks = []
    if req.metric_drop is not None:
        if task.get("drop") is None:
            checks.append({"name": f"{task['metric']} drop", "value": float("nan"), "limit": req.metric_drop,
                           "op": "<=", "passed": False,
                           "detail": f"{task['metric']} has no reference score to drop from (scored against "
                                     f"{task['against']}); use --min-metric"})
        else:
            checks.append({"name": f"{task['metric']} drop", "value": task["drop"], "limit": req.metric_drop,
                           "op": "<=", "passed": bool(task["drop"] <= req.metric_drop + 1e-9)})
    if req.min_metric is not None:
        checks.append({"name": task["metric"], "value": task["value"], "limit": req.min_metric, "op": ">=",
                       "passed": bool(task["value"] >= req.min_metric - 1e-12)})
    return checks
