"""The delegation gate: `[gates.delegation] min = 0.95` fails a .pte or .tflite whose share of ops
delegated to XNNPACK is below `min`, naming the ops left out.

The share is the artifact's delegation record (manifest -> validate record), counted from the file
the way `edgeship inspect` counts it (convert/xnnpack_delegation.py). An .onnx has no delegate:
skipped. An artifact that could not be made or read: not measured (never a pass).
"""

from __future__ import annotations

from edgeship.config import Project
from edgeship.gates.record import Status, gate, verdict

DELEGATED_FORMATS = ("pte", "tflite")


def delegation_gates(project: Project, results: list[dict]) -> list[dict]:
    """One "delegation" gate per result (target x device), when [gates.delegation].min is set."""
    floor = project.gates.delegation.min
    if floor is None:
        return []
    out = []
    for r in results:
        d = r.get("delegation") or {}
        coverage = d.get("coverage")
        if r.get("format") not in DELEGATED_FORMATS:
            out.append(gate("delegation", r, Status.SKIPPED, None, floor * 100, ">=", "%",
                            f"a .{r.get('format')} has no delegate"))
        elif coverage is None:
            why = r.get("error") or "the artifact's delegation was not recorded"
            out.append(gate("delegation", r, Status.NOT_MEASURED, None, floor * 100, ">=", "%", why))
        else:
            what = f"{d.get('delegated_ops')}/{d.get('total_ops')} ops delegated to XNNPACK"
            if d.get("fallback"):
                what += f"; {d['fallback']}"
            out.append(gate("delegation", r, verdict(coverage >= floor - 1e-9), coverage * 100, floor * 100, ">=",
                            "%", what))
    return out
