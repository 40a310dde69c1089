"""Terminal tables (rich) and the JSON record for export, validate and bench."""

from __future__ import annotations

import json
import math
from pathlib import Path

REPORT_SCHEMA = "edgeship.validate/1"


def _f(v, fmt="{:.2f}", none="—") -> str:
    if v is None:
        return none
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return fmt.format(v)


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


def validate_table(results: list[dict], context: dict):
    from rich.table import Table

    emulated = " [yellow](emulated)[/]" if context.get("emulated") else ""
    lat = f"latency ms{emulated}"
    title = (f"[bold]{context.get('model') or 'artifacts'}[/] on {context['device']}{emulated} — reference: "
             f"{context['reference']}; {context['threads']} thread(s), {context['warmup']} warm-up, "
             f"{context['runs']} runs")
    t = Table(title=title, title_justify="left", show_lines=False)
    for col, kw in [("artifact", {}), ("recipe", {}), ("size", {"justify": "right"}),
                    ("deleg.", {"justify": "right"}), ("top-1 %", {"justify": "right"}),
                    ("Δ pts", {"justify": "right"}), ("agree %", {"justify": "right"}),
                    ("cosine", {"justify": "right"}), ("SNR dB", {"justify": "right"}),
                    ("max err", {"justify": "right"}), (f"{lat} p50/p90/p99", {"justify": "right"}),
                    ("init ms", {"justify": "right"}), ("peak MB", {"justify": "right"}), ("status", {})]:
        t.add_column(col, **kw)
    for r in results:
        a = r.get("accuracy") or {}
        l = r.get("latency") or {}
        lat_s = "—" if not l else f"{l['p50_ms']:.2f}/{l['p90_ms']:.2f}/{l['p99_ms']:.2f}"
        status = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "error": "[red]ERROR[/]"}[r["status"]]
        if r["status"] == "fail":
            status += " " + ", ".join(c["name"] for c in r["checks"] if not c["passed"])
        t.add_row(
            r["artifact"], r.get("recipe") or "—", size_str(r.get("size_bytes")), coverage_str(r.get("delegation")),
            _f(a.get("accuracy"), "{:.1f}"), _f(-a["accuracy_drop"] if "accuracy_drop" in a else None, "{:+.1f}"),
            _f(a.get("top1_agreement"), "{:.1f}"), _f(a.get("cosine"), "{:.5f}"), _f(a.get("snr_db"), "{:.1f}"),
            _f(a.get("max_abs_error"), "{:.2g}"), lat_s, _f(r.get("init_ms"), "{:.0f}"),
            _f(r.get("peak_rss_mb"), "{:.0f}"), status,
        )
    return t


def print_validate(results: list[dict], context: dict) -> None:
    from edgeship.console import console

    c = console()
    c.print(validate_table(results, context))
    ref_acc = next((r["accuracy"].get("reference_accuracy") for r in results if r.get("accuracy")), None)
    if ref_acc is not None:
        c.print(f"float reference top-1: {ref_acc:.1f}%")
    for r in results:
        if r["status"] == "error":
            c.print(f"[red]error[/] {r['artifact']}: {r['error']}")
        for ch in r.get("checks", []):
            if not ch["passed"]:
                c.print(f"[red]failed[/] {r['artifact']}: {ch['name']} = {ch['value']:.4g}, "
                        f"limit {ch['op']} {ch['limit']:.4g}")
        d = r.get("delegation") or {}
        if d.get("fallback"):
            c.print(f"[yellow]warning[/] {r['artifact']}: delegation fell back ({d['fallback']})")
    if any(r.get("emulated") for r in results):
        c.print("[yellow]latency on an emulated device is not device latency[/]")


def export_table(manifest: dict):
    from rich.table import Table

    t = Table(title=f"[bold]{manifest['model']['name']}[/] ({manifest['model']['framework']})", title_justify="left")
    for col in ("artifact", "format", "recipe", "size", "delegated", "export s", "route"):
        t.add_column(col, justify="right" if col in ("size", "export s", "delegated") else "left")
    for a in manifest["artifacts"]:
        t.add_row(a["path"], a["format"], a["recipe"], size_str(a["size_bytes"]), coverage_str(a.get("delegation")),
                  f"{a['export_seconds']:.1f}", a["route"])
    return t


def write_json(path: Path, results: list[dict], context: dict) -> None:
    from edgeship.bundle import write_json_atomic

    data = {"schema": REPORT_SCHEMA, "context": context, "artifacts": results}
    write_json_atomic(Path(path), _finite(json.loads(json.dumps(data, default=_json_default))))


def _finite(o):
    """Standard JSON has no Infinity/NaN: an SNR of a bit-exact output (inf) is written as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
