"""Terminal tables (rich) and the JSON record for export, validate and bench."""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgeship.bundle import write_json_atomic
from edgeship.console import console
from edgeship.reports import task as task_cols
from edgeship.status import Status

REPORT_SCHEMA = "edgeship.validate/1"


def fmt(v, fmt="{:.2f}", none="—") -> str:
    if v is None:
        return none
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return fmt.format(v)


def _ms(v: float) -> str:
    """Milliseconds with three significant digits: 0.0123, 1.23, 123."""
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def size_str(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def coverage_str(delegation: dict | None) -> str:
    if not delegation or delegation.get("coverage") is None:
        return "—"
    s = f"{delegation['coverage'] * 100:.0f}%"
    return s + " (fallback)" if delegation.get("fallback") else s


def _status(r: dict) -> str:
    status = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "error": "[red]ERROR[/]",
              "ran": "[yellow]ran, accuracy not checked[/]"}[r["status"]]
    if r["status"] == Status.FAIL:
        status += " " + ", ".join(c["name"] for c in r["checks"] if not c["passed"])
    return status


def _table(title: str, columns: list[str], results: list[dict]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("artifact", no_wrap=True)
    for col in columns:
        t.add_column(col, justify="left" if col == "status" else "right", no_wrap=col != "status")
    return t


def validate_tables(results: list[dict], context: dict):
    """Two tables that fit a terminal: accuracy against the reference, then performance."""
    emulated = " [yellow](emulated: not device latency)[/]" if context.get("emulated") else ""
    acc = _table(f"[bold]{context.get('model') or 'artifacts'}[/] on {context['device']}: accuracy vs "
                 f"{context['reference']}",
                 ["recipe", "top-1 %", "Δ pts", *filter(None, [task_cols.header(results)]), "agree %", "cosine",
                  "SNR dB", "max err", "status"], results)
    perf = _table(f"performance on {context['device']}{emulated}: {context['threads']} thread(s), "
                  f"{context['warmup']} warm-up, {context['runs']} timed runs",
                  ["size", "delegated", "p50 ms", "p90 ms", "p99 ms", "init ms", "first ms", "peak MB (+model)"], results)
    for r in results:
        a = r.get("accuracy") or {}
        lat = r.get("latency") or {}
        acc.add_row(
            r["artifact"], r.get("recipe") or "—", fmt(a.get("accuracy"), "{:.1f}"),
            fmt(0.0 - a["accuracy_drop"] if "accuracy_drop" in a else None, "{:+.1f}"),
            *([task_cols.cell(r)] if task_cols.header(results) else []),
            fmt(a.get("top1_agreement"), "{:.1f}"), fmt(a.get("cosine"), "{:.5f}"), fmt(a.get("snr_db"), "{:.1f}"),
            fmt(a.get("max_abs_error"), "{:.2g}"), _status(r),
        )
        perf.add_row(
            r["artifact"], size_str(r.get("size_bytes")), coverage_str(r.get("delegation")),
            *(_ms(lat[k]) if k in lat else "—" for k in ("p50_ms", "p90_ms", "p99_ms")),
            fmt(r.get("init_ms"), "{:.0f}"), fmt(r.get("first_ms"), "{:.3g}"), _mem(r),
        )
    rows = task_cols.per_output_rows(results)
    if not rows:
        return acc, perf
    outputs = _table("accuracy per output", task_cols.PER_OUTPUT_HEADERS[1:], results)
    for row in rows:
        outputs.add_row(*row)
    return acc, perf, outputs


def _mem(r: dict) -> str:
    peak, model = r.get("peak_rss_mb"), r.get("model_rss_mb")
    if peak is None:
        return "—"
    return f"{peak:.0f}" + (f" (+{model:.0f})" if model is not None else "")


def print_validate(results: list[dict], context: dict) -> None:
    from rich.markup import escape


    c = console()
    for table in validate_tables(results, context):
        c.print(table)
    ref_acc = next((r["accuracy"].get("reference_accuracy") for r in results if r.get("accuracy")), None)
    if ref_acc is not None:
        c.print(f"float reference top-1: {ref_acc:.1f}%")
    if task_cols.reference_line(results):
        c.print(task_cols.reference_line(results))
    runtimes = dict.fromkeys(f"{r['runtime']} (.{r['format']})" for r in results
                             if r.get("runtime") and r.get("format"))
    if runtimes:
        c.print("runtimes: " + ", ".join(runtimes))
    for r in results:
        if r["status"] == Status.ERROR:
            c.print(f"[red]error[/] {r['artifact']}: {escape(str(r['error']))}")
        if r["status"] == "ran":
            c.print(f"[yellow]ran[/] {r['artifact']}: latency and size measured; {escape(r.get('note') or '')}",
                    soft_wrap=True)
        for ch in r.get("checks", []):
            if not ch["passed"] and ch.get("detail"):
                c.print(f"[red]failed[/] {r['artifact']}: {ch['name']}: {escape(ch['detail'])}")
            elif not ch["passed"]:
                c.print(f"[red]failed[/] {r['artifact']}: {ch['name']} = {ch['value']:.4g}, "
                        f"limit {ch['op']} {ch['limit']:.4g}")
        d = r.get("delegation") or {}
        if d.get("fallback"):
            c.print(f"[yellow]warning[/] {r['artifact']}: delegation fell back ({escape(str(d['fallback']))})")
    if any(r.get("emulated") for r in results):
        c.print("[yellow]latency on an emulated device is not device latency[/]")


def export_table(manifest: dict):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"[bold]{escape(manifest['model']['name'])}[/] ({manifest['model']['framework']})",
              title_justify="left")
    for col in ("artifact", "format", "recipe", "size", "delegated", "export s", "vs float"):
        t.add_column(col, justify="right" if col in ("size", "export s", "delegated") else "left", no_wrap=True)
    t.add_column("route", overflow="fold")
    for a in manifest["artifacts"]:
        t.add_row(a["path"], a["format"], a["recipe"], size_str(a["size_bytes"]), coverage_str(a.get("delegation")),
                  f"{a['export_seconds']:.1f}", verdict_str(a.get("smoke")),
                  escape(a["route"]))  # routes say "[kept float: ...]"
    for a in manifest.get("failed_artifacts") or []:
        why = a.get("error") if a.get("stage") == "convert" else (a.get("smoke") or {}).get("error")
        t.add_row(a["path"], a.get("format", ""), a.get("recipe", ""), "", "", "",
                  "[red]not converted[/]" if a.get("stage") == "convert" else "[red]could not run[/]",
                  escape(str(why or ""))[:200])
    return t


def verdict_str(smoke: dict | None) -> str:
    """export's verdict of one artifact against the float model: the cosine, and the floor it missed."""
    if not smoke:
        return "—"
    acc = smoke.get("accuracy") or {}
    cos = acc.get("cosine", smoke.get("cosine"))
    figure = f"cos {cos:.4f}" if cos is not None else ""
    if acc.get("accuracy_drop") is not None:
        figure += f", top-1 {-acc['accuracy_drop']:+.1f}"
    if smoke.get("status") == "below_floor":
        return f"[red]{figure}: below floor[/]"
    if smoke.get("status") == "fail":
        return "[red]could not run[/]"
    return f"[green]{figure}[/]" if smoke.get("floors") else figure


def write_json(path: Path, results: list[dict], context: dict) -> None:
    data = {"schema": REPORT_SCHEMA, "context": context, "artifacts": results}
    write_json_atomic(Path(path), finite(json.loads(json.dumps(data, default=json_default))))


def finite(o):
    """Standard JSON has no Infinity/NaN: an SNR of a bit-exact output (inf) is written as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [finite(v) for v in o]
    return o


def json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
