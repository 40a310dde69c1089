"""matplotlib figures for the HTML report, returned as base64 PNG (Agg backend, no display)."""

from __future__ import annotations

import base64
import io

COLORS = {"tflite": "#1f77b4", "pte": "#d62728", "onnx": "#2ca02c"}
# distinct shapes and label sides: points overlap
MARKERS = {"tflite": ("o", (6, 6)), "pte": ("D", (6, -12)), "onnx": ("s", (-30, 6))}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def latency_distributions(results: list[dict]) -> str | None:
    """One row per artifact x device: raw samples (box + points) or, without them, p50/p90/p99."""
    rows = [r for r in results if (r.get("latency") or {}).get("p50_ms") is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        lat = r["latency"]
        color = COLORS.get(r.get("format"), "#555")
        samples = lat.get("samples_ms")
        if samples:
            ax.boxplot([samples], positions=[i], vert=False, widths=0.5, showfliers=False,
                       medianprops={"color": color, "linewidth": 2})
            jitter = [i + ((k * 7919) % 100 - 50) / 250 for k in range(len(samples))]
            ax.scatter(samples, jitter, s=4, alpha=0.35, color=color)
        else:
            ax.plot([lat["min_ms"], lat["max_ms"]], [i, i], color=color, alpha=0.4)
            for q, m in (("p50_ms", "o"), ("p90_ms", "s"), ("p99_ms", "^")):
                ax.plot([lat[q]], [i], m, color=color, label=q[:3] if i == 0 else None)
    ax.set_yticks(range(len(rows)), [f"{r['artifact']} @ {r['device']}" for r in rows])
    ax.set_xlabel("latency per run, ms" + (" (emulated devices are not device latency)"
                                          if any(r.get("emulated") for r in rows) else ""))
    ax.grid(axis="x", alpha=0.3)
    if not any((r["latency"].get("samples_ms") for r in rows)):
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Latency distribution per artifact and device")
    return _png(fig)


def tradeoffs(results: list[dict]) -> str | None:
    """Accuracy against size and against latency, one point per artifact x device, across recipes."""
    pts = []
    for r in results:
        a = r.get("accuracy") or {}
        acc = a.get("accuracy", a.get("top1_agreement"))
        p50 = (r.get("latency") or {}).get("p50_ms")
        if acc is not None and r.get("size_bytes") and p50 is not None:
            pts.append((r, acc, r["size_bytes"] / 1024, p50))
    if not pts:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    seen = set()
    for r, acc, kb, p50 in pts:
        fmt = r.get("format")
        color = COLORS.get(fmt, "#555")
        marker, offset = MARKERS.get(fmt, ("o", (5, 5)))
        for ax, x in ((left, kb), (right, p50)):
            ax.scatter([x], [acc], s=70 if marker == "o" else 110, marker=marker, color=color, alpha=0.85,
                       zorder=3 if marker == "o" else 2,
                       edgecolor="black", linewidth=0.5, label=fmt if ax is left and fmt not in seen else None)
            ax.annotate(f"{r.get('recipe')}", (x, acc), fontsize=8, xytext=offset, textcoords="offset points",
                        color=color)
        seen.add(fmt)
    left.legend(fontsize=8, loc="lower right")
    label = "top-1 % (vs labels)" if any("accuracy" in (r.get("accuracy") or {}) for r, *_ in pts) else "agreement %"
    left.set_ylabel(label)
    left.set_xlabel("size, KB")
    right.set_xlabel("p50 latency, ms")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy vs size vs latency across recipes")
    return _png(fig)
