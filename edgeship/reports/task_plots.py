"""The task metric against size and latency, one point per artifact x device (HTML report)."""

from __future__ import annotations

import base64
import io

from edgeship.reports.plots import COLORS, MARKERS
from edgeship.reports.task import task_of


def task_tradeoffs(results: list[dict]) -> str | None:
    """base64 PNG of the task metric (e.g. map50) vs size and vs p50 latency; None without one."""
    pts = []
    for r in results:
        t = task_of(r)
        p50 = (r.get("latency") or {}).get("p50_ms")
        if t and t.get("value") is not None and r.get("size_bytes") and p50 is not None:
            pts.append((r, t, r["size_bytes"] / 1024, p50))
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    seen = set()
    for r, t, kb, p50 in pts:
        fmt = r.get("format")
        color = COLORS.get(fmt, "#555")
        marker, offset = MARKERS.get(fmt, ("o", (5, 5)))
        for ax, x in ((left, kb), (right, p50)):
            ax.scatter([x], [t["value"]], s=80, marker=marker, color=color, edgecolor="black", linewidth=0.5,
                       alpha=0.85, label=fmt if ax is left and fmt not in seen else None)
            ax.annotate(r.get("recipe") or r["artifact"], (x, t["value"]), fontsize=8, xytext=offset,
                        textcoords="offset points", color=color)
        seen.add(fmt)
    first = pts[0][1]
    if first.get("reference") is not None:
        for ax in (left, right):
            ax.axhline(first["reference"], color="#888", linestyle="--", linewidth=1,
                       label="float model" if ax is left else None)
    left.legend(fontsize=8, loc="lower right")
    left.set_ylabel(f"{first['metric']}" + (f" ({first['unit']})" if first.get("unit") else "")
                    + f" vs {first.get('against', 'labels')}")
    left.set_xlabel("size, KB")
    right.set_xlabel("p50 latency, ms")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{first['metric']} vs size vs latency per artifact")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")
