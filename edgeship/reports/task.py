"""The task metric and the per-output metrics in every table (terminal, Markdown, HTML).

A result's task metric is `accuracy.task` (edgeship/task_checks.py); per-output tensor metrics
are `accuracy.outputs` ({output name: {cosine, snr_db, max_abs_error, top1_agreement}}).
"""

from __future__ import annotations

import math


def metric_name(results: list[dict]) -> str | None:
    """The task metric's name when the results have one ("map50", "score.py:my_metric")."""
    names = [t["metric"] for t in (task_of(r) for r in results) if t]
    return names[0] if names else None


def task_of(r: dict) -> dict | None:
    return (r.get("accuracy") or {}).get("task")


def header(results: list[dict]) -> str | None:
    t = next((task_of(r) for r in results if task_of(r)), None)
    if t is None:
        return None
    return f"{t['metric']}" + (f" {t['unit']}" if t.get("unit") else "")


def cell(r: dict) -> str:
    """'71.3 (-2.1)': the artifact's score and its change from the reference's."""
    t = task_of(r)
    if not t or t.get("value") is None:
        return "—"
    v = t["value"]
    text = "∞" if math.isinf(v) else f"{v:.4g}" if abs(v) < 1 else f"{v:.1f}"
    if t.get("drop") is not None:
        change = 0.0 - t["drop"] + 0.0  # no "-0"
        text += f" ({change:+.2g})" if abs(change) < 1 else f" ({change:+.1f})"
    return text


def reference_line(results: list[dict]) -> str | None:
    t = next((task_of(r) for r in results if task_of(r) and task_of(r).get("reference") is not None), None)
    if t is None:
        return None
    return f"float reference {t['metric']}: {t['reference']:.4g}{(' ' + t['unit']) if t['unit'] else ''}"


def per_output_rows(results: list[dict]) -> list[list[str]]:
    """[artifact, output, cosine, SNR dB, max err, agree %] for results with more than one output."""
    rows = []
    for r in results:
        outs = (r.get("accuracy") or {}).get("outputs") or {}
        if len(outs) < 2:
            continue
        for name, m in outs.items():
            snr = m.get("snr_db")
            rows.append([r["artifact"], name, f"{m['cosine']:.5f}",
                         "∞" if snr is not None and math.isinf(snr) else "—" if snr is None else f"{snr:.1f}",
                         f"{m['max_abs_error']:.2g}",
                         "—" if m.get("top1_agreement") is None else f"{m['top1_agreement']:.1f}"])
    return rows


PER_OUTPUT_HEADERS = ["artifact", "output", "cosine", "SNR dB", "max err", "agree %"]
