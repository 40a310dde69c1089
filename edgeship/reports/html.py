"""A self-contained HTML report: verdict, failing gates, results, plots embedded as base64 PNG.
No scripts, no external fetches: it opens from a CI artifact or an e-mail attachment."""

from __future__ import annotations

import datetime
from html import escape

from edgeship.reports import plots, task, task_plots
from edgeship.reports.tables import coverage_str, size_str
from edgeship.reports.terminal import fmt_value
from edgeship.status import FAILING, Status

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.6em;margin:0 0 .2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.verdict{display:inline-block;padding:.25em .8em;border-radius:4px;color:#fff;font-weight:600}
.verdict.pass{background:#2e7d32}.verdict.fail{background:#c62828}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{padding:4px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top} th{background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.s-pass{color:#2e7d32}.s-fail,.s-not_measured{color:#c62828;font-weight:600}.s-skipped{color:#888}
.meta{color:#666} img{max-width:100%;border:1px solid #eee;margin:.5em 0} code{background:#f3f3f3;padding:0 3px}
"""


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _gates(gates: list[dict]) -> str:
    rows = []
    for g in gates:
        limit = "" if g["limit"] is None else f"{g['op'] or ''} {fmt_value(g['limit'], g['unit'])}"
        status = g["status"].replace("_", " ")
        name = g["gate"] + (f" ({g['metric']})" if g.get("metric") else "")
        rows.append([f"<code>{escape(g['target'])}</code>", escape(g["device"]), f"<code>{escape(name)}</code>",
                     escape(fmt_value(g["value"], g["unit"])), escape(limit),
                     f'<span class="s-{g["status"]}">{escape(status)}</span>', escape(g["detail"] or "")])
    return _table(["target", "device", "gate", "value", "limit", "status", "detail"], rows, {3, 4})


def _results(results: list[dict]) -> str:
    head = task.header(results)

    rows = []
    for r in results:
        a = r.get("accuracy") or {}
        lat = r.get("latency") or {}
        f = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
        rows.append([escape(r["artifact"]), escape(r["device"] + (" (emulated)" if r.get("emulated") else "")),
                     escape(r.get("recipe") or "—"), size_str(r.get("size_bytes")),
                     coverage_str(r.get("delegation")), f(a.get("accuracy"), ".1f"),
                     *([escape(task.cell(r))] if head else []), f(a.get("top1_agreement"), ".1f"),
                     f(a.get("cosine"), ".5f"),
                     f(lat.get("p50_ms"), ".3f"), f(lat.get("p90_ms"), ".3f"), f(r.get("peak_rss_mb"), ".0f"),
                     escape(r.get("runtime") or "—"),
                     f'<span class="s-{"pass" if r["status"] != Status.ERROR else "fail"}">{escape(r["status"])}</span>'])
    table = _table(["artifact", "device", "recipe", "size", "deleg.", "top-1 %", *([head] if head else []), "agree %",
                    "cosine", "p50 ms", "p90 ms", "peak MB", "runtime", "run"], rows, set(range(3, 11 + bool(head))))
    per_output = task.per_output_rows(results)
    if per_output:
        cells = [[escape(c) for c in row] for row in per_output]
        table += "<h3>Per output</h3>" + _table(task.PER_OUTPUT_HEADERS, cells, {2, 3, 4, 5})
    return table


def _per_layer(results: list[dict]) -> str:
    rows = [[escape(r["artifact"]), escape(layer), f"{err:.4g}"] for r in results
            for layer, err in (r.get("per_layer_error") or {}).items()]
    if not rows:
        return '<p class="meta">Per-layer error was not computed in this run.</p>'
    return _table(["artifact", "layer", "error"], rows, {2})


def render(report: dict) -> str:
    s = report["summary"]
    name = escape(report["project"]["name"] or "model")
    when = datetime.datetime.fromtimestamp(report["created_unix"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    failing = [g for g in report["gates"] if g["status"] in FAILING]
    figures = []
    for title, png in (("Latency", plots.latency_distributions(report["results"])),
                       ("Accuracy, size and latency", plots.tradeoffs(report["results"])),
                       ("Task metric, size and latency", task_plots.task_tradeoffs(report["results"]))):
        if png:
            figures.append(f'<h2>{title}</h2><img alt="{title}" src="data:image/png;base64,{png}">')
    baseline = report.get("baseline")
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>edgeship check: {name}</title>"
        f"<style>{CSS}</style></head><body>",
        f'<h1>edgeship check: {name} <span class="verdict {report["status"]}">{report["status"].upper()}</span></h1>',
        f'<p class="meta">{when} · edgeship {escape(report["edgeship_version"])} · devices '
        f'{escape(", ".join(report["settings"]["devices"]))} · {report["settings"]["runs"]} timed runs, '
        f'{report["settings"]["warmup"]} warm-up, {report["settings"]["threads"]} thread(s) · '
        f'{s["pass"]} pass, {s["fail"]} failed, {s["not_measured"]} not measured, {s["skipped"]} skipped'
        + (f' · baseline <code>{escape(baseline["path"])}</code>' if baseline else "") + "</p>",
    ]
    if failing:
        parts += ["<h2>Failing gates</h2>", _gates(failing)]
    parts += ["<h2>Results</h2>", _results(report["results"]), *figures,
              "<h2>Per-layer error</h2>", _per_layer(report["results"]),
              "<h2>All gates</h2>", _gates(report["gates"]),
              "<h2>Tools</h2>", _table(["package", "version"],
                                      [[escape(k), escape(str(v))] for k, v in report.get("tools", {}).items()]),
              "</body></html>\n"]
    return "\n".join(parts)
