"""The terminal table of `--quant auto`'s recipe search (quantize/recipe_search.py), one per format:
candidate, recipe, calibration, float layers, drop, p50, size, kept, reason."""

from __future__ import annotations

from edgeship.console import console
from edgeship.reports.tables import fmt, size_str


def search_table(artifact: dict):
    from rich.markup import escape
    from rich.table import Table

    rs = artifact["recipe_search"]
    verdict = "within budget" if rs["met"] else "[red]BUDGET MISSED[/]"
    where = "drop and p50 on" if rs.get("device") else "p50 on the"  # export --device: both measured there
    t = Table(title=f"[bold]recipe search[/] .{artifact['format']}: {rs['metric']} drop budget {rs['budget']:g} "
                    f"({verdict}); {where} {escape(rs['measured_on'])}, {rs['threads']} thread(s), "
                    f"{rs['warmup']} warm-up, {rs['runs']} runs; kept -> {escape(artifact['path'])}",
              title_justify="left")
    for col in ("candidate", "recipe", "calibration", "float layers", "drop", "p50 ms", "size", "kept"):
        t.add_column(col, justify="right" if col in ("drop", "p50 ms", "size") else "left", no_wrap=True)
    t.add_column("reason", overflow="fold")
    for c in rs["candidates"]:
        kept = ("[green]kept[/]" if rs["met"] else "[red]kept (best, over budget)[/]") if c["kept"] else ""
        t.add_row(c["candidate"], c["recipe"], c["calibration"] or "—", escape(", ".join(c["float_layers"])) or "—",
                  fmt(c["drop"], "{:.4g}"), fmt(c["p50_ms"], "{:.3g}"), size_str(c["size_bytes"]), kept,
                  escape(c["reason"]))
    return t


def print_searches(manifest: dict) -> None:
    for a in manifest.get("artifacts", []):
        if a.get("recipe_search"):
            console().print(search_table(a))
