"""Markdown for pull-request comments and CI step summaries: verdict, failing gates, results."""

from __future__ import annotations

from edgeship.reports import task
from edgeship.reports.tables import size_str
from edgeship.reports.terminal import fmt_value
from edgeship.status import FAILING, Status

ICON = {"pass": "✅ pass", "fail": "❌ **FAIL**", "not_measured": "⚠️ **not measured**", "skipped": "➖ skipped"}


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _gate_rows(gates: list[dict]) -> list[str]:
    rows = ["| target | device | gate | value | limit | status | detail |", "|---|---|---|---:|---:|---|---|"]
    for g in gates:
        limit = "" if g["limit"] is None else f"{g['op'] or ''} {fmt_value(g['limit'], g['unit'])}"
        name = g["gate"] + (f" ({g['metric']})" if g.get("metric") else "")
        rows.append(f"| `{g['target']}` | {_cell(g['device'])} | `{_cell(name)}` | {fmt_value(g['value'], g['unit'])} "
                    f"| {_cell(limit)} | {ICON[g['status']]} | {_cell(g['detail'] or '')} |")
    return rows


def _result_rows(results: list[dict]) -> list[str]:
    head = task.header(results)
    task_head = f" {head} |" if head else ""
    rows = ["| artifact | device | top-1 % | Δ pts |" + task_head + " p50 / p90 ms | size | peak MB |",
            "|---|---|---:|---:|" + ("---:|" if head else "") + "---:|---:|---:|"]
    for r in results:
        a = r.get("accuracy") or {}
        lat = r.get("latency") or {}
        top1 = f"{a['accuracy']:.1f}" if a.get("accuracy") is not None else "—"
        drop = f"{-a['accuracy_drop']:+.1f}" if a.get("accuracy_drop") is not None else "—"
        p = f"{lat['p50_ms']:.3f} / {lat['p90_ms']:.3f}" if lat.get("p50_ms") is not None else "—"
        peak = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") is not None else "—"
        rows.append(f"| `{r['artifact']}` | {_cell(r['device'])}{' (emulated)' if r.get('emulated') else ''} | {top1} "
                    f"| {drop} |" + (f" {task.cell(r)} |" if head else "") + f" {p} | {size_str(r.get('size_bytes'))} "
                    f"| {peak} |")
    per_output = task.per_output_rows(results)
    if per_output:
        rows += ["", "| " + " | ".join(task.PER_OUTPUT_HEADERS) + " |", "|---|---|---:|---:|---:|---:|"]
        rows += ["| " + " | ".join([f"`{row[0]}`", _cell(row[1]), *row[2:]]) + " |" for row in per_output]
    return rows


def render(report: dict) -> str:
    s = report["summary"]
    name = report["project"]["name"] or "model"
    verdict = "✅ passed" if report["status"] == Status.PASS else "❌ failed"
    lines = [f"## edgeship check: {name} {verdict}", "",
             f"{s['pass']} pass · {s['fail']} failed · {s['not_measured']} not measured · {s['skipped']} skipped "
             f"— {len(report['results'])} artifact runs on {', '.join(report['settings']['devices'])}, "
             f"{report['settings']['runs']} timed runs each"]
    if report.get("baseline"):
        lines.append(f"\nBaseline: `{report['baseline']['path']}`")
    failing = [g for g in report["gates"] if g["status"] in FAILING]
    if failing:
        lines += ["", "### Failing gates", ""] + _gate_rows(failing)
    lines += ["", "### Results", ""] + _result_rows(report["results"])
    lines += ["", "<details><summary>All gates</summary>", ""] + _gate_rows(report["gates"]) + ["", "</details>", ""]
    if any(r.get("emulated") for r in report["results"]):
        lines.append("_Latency on an emulated device is not device latency._\n")
    return "\n".join(lines)
