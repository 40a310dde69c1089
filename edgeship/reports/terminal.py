"""The terminal view of a check: the validate tables, then the gates, failing gates named."""

from __future__ import annotations

from edgeship.console import console
from edgeship.reports.tables import validate_tables
from edgeship.status import FAILING, Status

STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "not_measured": "[red]NOT MEASURED[/]",
         "skipped": "[dim]skipped[/]"}


def fmt_value(v, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        text = f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}".removesuffix(".0") if abs(v) < 1000 else f"{v:.0f}"
    else:
        text = str(v)
    return f"{text} {unit}".strip()


def gates_table(report: dict, only_failing: bool = False):
    from rich.table import Table

    t = Table(title="[bold]gates[/]", title_justify="left")
    for col in ("target", "device", "gate", "value", "limit", "status"):
        t.add_column(col, overflow="fold", no_wrap=col in ("target", "gate", "status"),
                     justify="right" if col in ("value", "limit") else "left")
    for g in report["gates"]:
        if only_failing and g["status"] not in FAILING:
            continue
        limit = "" if g["limit"] is None else f"{g['op'] or ''} {fmt_value(g['limit'], g['unit'])}".strip()
        name = g["gate"] + (f" ({g['metric']})" if g.get("metric") else "")
        t.add_row(g["target"], g["device"], name, fmt_value(g["value"], g["unit"]), limit, STYLE[g["status"]])
    return t


def print_check(report: dict, written: dict) -> None:
    c = console()
    for ctx in report["contexts"]:
        rows = [r for r in report["results"] if r["device"] == ctx["device"]
                and any(r["artifact"] == a for a in _artifacts_of(report, ctx))]
        if rows:
            for table in validate_tables(rows, ctx):
                c.print(table)
    c.print(gates_table(report))
    s = report["summary"]
    if report["status"] == Status.PASS:
        c.print(f"[bold green]check passed[/]: {s['pass']} gates pass, {s['skipped']} skipped")
    else:
        c.print(f"[bold red]check failed[/]: {s['fail']} failed, {s['not_measured']} not measured, "
                f"{s['pass']} pass")
        for g in report["gates"]:
            if g["status"] in FAILING:
                what = "not measured" if g["status"] == Status.NOT_MEASURED else "failed"
                line = f"  [red]✗[/] {g['gate']} {g['target']}@{g['device']} {what}: {g['detail'] or ''}"
                c.print(line.rstrip(": "), soft_wrap=True)
    for fmt, path in written.items():
        c.print(f"[dim]{fmt}:[/] {path}")


def _artifacts_of(report: dict, ctx: dict) -> set[str]:
    from pathlib import Path

    return {r["artifact"] for r in report["results"] if (Path(ctx["bundle"]) / r["artifact"]).exists()}
