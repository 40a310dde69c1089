"""The check report, schema "edgeship.check/1" (report.json). Versioned: a field is only ever
added within /1; renaming or removing one makes /2. Readers should ignore keys they do not know.

    schema          "edgeship.check/1"
    edgeship_version, created_unix (int), duration_s (float)
    status          "pass" | "fail"        fail when any gate is "fail" or "not_measured"
    exit_code       0 | 1                  what `edgeship check` exited with
    project         {name, config, source, calib, eval}
    settings        {threads, warmup, runs, devices: [uri, ...]}
    tools           {package: version}     from the bundle manifest (converters, runtimes, python)
    bundles         [path, ...]
    baseline        null | {path, created_unix}
    summary         {total, pass, fail, not_measured, skipped, failing: ["gate target@device", ...]}
    gates           one per gate x target x device:
                      gate         "accuracy.top1_drop" | "accuracy.agreement_drop" | "accuracy.cosine_drop" |
                                   "accuracy.min_top1" | "accuracy.metric_drop" | "accuracy.min_metric" |
                                   "latency.p50" | "latency.p90" | "size" | "memory" |
                                   "baseline.match" | "regression.accuracy" | "regression.latency" |
                                   "regression.size" | "regression.memory" | "delegation"
                      target       "tflite:int8" (format:recipe); artifact (file name); device (URI)
                      status       "pass" | "fail" | "not_measured" | "skipped"
                      value, limit (numbers or null; for regression.* limit is the baseline's value)
                      op           "<=" | ">=" | "~" (compared with floors); unit "ms" | "KB" | "MB" | "%" | "pts" | ""
                      detail       one line a person reads; confidence, p_value (latency verdicts; else null)
                      metric       accuracy.metric_drop / min_metric only: the task metric's name
    results         one per target x device: validate's record (artifact, format, recipe, size_bytes,
                    delegation, device, emulated, runtime, delegate, init_ms, first_ms, peak_rss_mb,
                    threads, platform, accuracy {accuracy, reference_accuracy, accuracy_drop, top1_agreement,
                    cosine, snr_db, max_abs_error, outputs, task {metric, unit, user, value, reference, drop,
                    against}}, latency {runs, p50_ms, p90_ms, p99_ms, mean_ms,
                    min_ms, max_ms, warmup, samples_ms (raw per-run samples, where the runner gives them)},
                    status "pass"|"fail"|"error"|"ran" (accuracy not checked: never a pass), error, note)
                    plus target (format:recipe)
    contexts        one per bundle x device: validate's context (reference, device, emulated, runs, ...)

Non-finite numbers (an SNR of a bit-exact artifact) are written as null.
"""

from __future__ import annotations

import json
import time

from edgeship.bundle import read_bundle
from edgeship.errors import ArtifactError
from edgeship.reports.tables import finite, json_default
from edgeship.status import FAILING, Status
from edgeship.version import __version__

SCHEMA = "edgeship.check/1"
STATUSES = (Status.PASS, Status.FAIL, Status.NOT_MEASURED, Status.SKIPPED)


def summarize(gates: list[dict]) -> dict:
    counts = {s: sum(g["status"] == s for g in gates) for s in STATUSES}
    failing = [f"{g['gate']} {g['target']}@{g['device']}" for g in gates if g["status"] in FAILING]
    return {"total": len(gates), **counts, "failing": failing}


def build_report(cfg, results: list[dict], contexts: list[dict], gates: list[dict], baseline: dict | None,
                 duration_s: float) -> dict:

    p = cfg.project
    bundles = list(dict.fromkeys(c["bundle"] for c in contexts))
    try:
        tools = read_bundle(bundles[0]).manifest.get("tools", {}) if bundles else {}
    except ArtifactError:
        tools = {}
    summary = summarize(gates)
    failed = summary["fail"] + summary["not_measured"] > 0 or not gates
    return {
        "schema": SCHEMA,
        "edgeship_version": __version__,
        "created_unix": int(time.time()),
        "duration_s": round(duration_s, 2),
        "status": Status.FAIL if failed else "pass",
        "exit_code": 1 if failed else 0,
        "project": {"name": p.model.name or next((c.get("model") for c in contexts if c.get("model")), None),
                    "config": str(cfg.path), "source": p.model.source, "calib": p.data.calib, "eval": p.data.eval},
        "settings": {"threads": p.measure.threads, "warmup": p.measure.warmup, "runs": p.measure.runs,
                     "devices": list(p.devices)},
        "tools": tools,
        "bundles": bundles,
        "baseline": None if baseline is None else {"path": baseline["path"], "created_unix": baseline["created_unix"]},
        "summary": summary,
        "gates": gates,
        "results": results,
        "contexts": contexts,
    }


def to_json(report: dict) -> dict:
    """The report as plain JSON data (numpy scalars, paths and non-finite floats made standard)."""
    return finite(json.loads(json.dumps(report, default=json_default)))
