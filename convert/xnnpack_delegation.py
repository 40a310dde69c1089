"""One delegation figure for .pte and .tflite, counted from the artifact itself.

Both formats are counted the way `edgeship inspect` reads them (runtime/standalone: the .pte's
XNNPACK nodes inside its delegate blobs plus its kernel calls; the .tflite's ops with the XNNPACK
delegate applied), so the manifest, export's table, validate's records, `check`'s delegation gate
and `inspect` all show the same number for the same file. `summarize` turns inspect's details into
the manifest's delegation record; below 100% its "fallback" names the ops left out (the line
validate and check print as a warning, and export prints as the artifact's warning).
"""

from __future__ import annotations

# where the ops left out run, per format
KERNELS = {"pte": "ExecuTorch's portable kernels", "tflite": "TFLite's own CPU kernels"}


def left_out(details: dict) -> dict[str, int]:
    """{op: count} of the ops inspect reports as not delegated, most frequent first."""
    counts: dict[str, int] = {}
    for op in details.get("ops") or []:
        if op.get("delegated") is False:
            counts[op["op"]] = counts.get(op["op"], 0) + int(op.get("count", 1))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def describe_left_out(left: dict[str, int], fmt: str) -> str | None:
    """'3 ops on ExecuTorch's portable kernels: aten::embedding.out, aten::amax.out x2' or None."""
    if not left:
        return None
    names = ", ".join(op if n == 1 else f"{op} x{n}" for op, n in left.items())
    return f"{sum(left.values())} ops on {KERNELS[fmt]}: {names}"


def summarize(details: dict, fmt: str, backend: str) -> dict:
    """The delegation record of an artifact from inspect's details (format "pte" or "tflite")."""
    total, delegated = details.get("total_ops"), details.get("delegated_ops")
    left = left_out(details)
    return {
        "backend": backend,
        "delegated_ops": delegated,
        "total_ops": total,
        "coverage": round(delegated / total, 4) if total and delegated is not None else None,
        "partitions": len(details.get("delegates") or []) if fmt == "pte" else None,
        "left_out": left,
        "fallback": describe_left_out(left, fmt),
    }


def warning(delegation: dict | None) -> str | None:
    """Export's warning for an artifact below 100% delegated, naming the ops left out; None at 100%."""
    if not delegation or delegation.get("coverage") is None or delegation["coverage"] >= 1.0:
        return None
    d = delegation
    return (f"{d['delegated_ops']}/{d['total_ops']} ops ({d['coverage'] * 100:.0f}%) delegated to XNNPACK; "
            f"{d.get('fallback') or 'the rest run on the runtime own kernels'}")
