"""The gate record that budgets.py and regression.py both build, and its verdicts.

One gate record per gate x target x device:
    {"gate", "target", "artifact", "device", "status", "value", "limit", "op", "unit", "detail",
     "confidence", "p_value"}
status: a `Status`: pass, fail, not_measured (the measurement could not be taken: never a pass)
or skipped (nothing to compare with, e.g. no baseline record for a new target).
"""

from __future__ import annotations

from edgeship.status import FAILING, Status, verdict

__all__ = ["FAILING", "Status", "gate", "verdict"]


def gate(name, result, status, value=None, limit=None, op=None, unit="", detail="", **extra) -> dict:
    return {"gate": name, "target": result["target"], "artifact": result["artifact"], "device": result["device"],
            "status": Status(status), "value": value, "limit": limit, "op": op, "unit": unit, "detail": detail,
            "confidence": extra.get("confidence"), "p_value": extra.get("p_value")}
