"""Baselines: a previous `edgeship check` report.json, matched per target x device.

A baseline record taken on another device, with another runtime version or another recipe is
flagged (gate `baseline.match` fails) and not compared: its numbers say nothing about this run.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeship.errors import InputError

CHECK_SCHEMA_PREFIX = "edgeship.check/"
REGRESSION_GATES = ("regression.accuracy", "regression.latency", "regression.size", "regression.memory")


def load_baseline(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise InputError(f"baseline not found: '{path}'", hint="pass the report.json of an earlier edgeship check")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"baseline '{path}' is not valid JSON ({e})") from None
    schema = data.get("schema", "") if isinstance(data, dict) else ""
    if not str(schema).startswith(CHECK_SCHEMA_PREFIX) or not isinstance(data.get("results"), list):
        raise InputError(f"baseline '{path}' is not an edgeship check report (schema '{schema}')",
                         hint="pass the report.json that `edgeship check` wrote")
    return {"path": str(path), "created_unix": data.get("created_unix"), "results": data["results"]}


def _mismatch(r: dict, b: dict) -> list[str]:
    diffs = []
    if b.get("device") != r["device"] or bool(b.get("emulated")) != bool(r.get("emulated")):
        diffs.append(f"device {b.get('device')}{' (emulated)' if b.get('emulated') else ''} vs {r['device']}")
    if b.get("recipe") != r.get("recipe"):
        diffs.append(f"recipe {b.get('recipe')} vs {r.get('recipe')}")
    if r.get("runtime") and b.get("runtime") and b["runtime"] != r["runtime"]:
        diffs.append(f"runtime {b['runtime']} vs {r['runtime']}")
    if (b.get("threads") or 1) != (r.get("threads") or 1):
        diffs.append(f"threads {b.get('threads')} vs {r.get('threads')}")
    return diffs


def find_record(r: dict, records: list[dict]) -> dict | None:
    """Same target on the same device, else the same target anywhere, else the same artifact file."""
    same_target = [b for b in records if b.get("target") == r["target"]]
    for b in same_target:
        if b.get("device") == r["device"]:
            return b
    if same_target:
        return same_target[0]
    return next((b for b in records if b.get("artifact") == r["artifact"]), None)


def regression_gates(floors, r: dict, baseline: dict) -> list[dict]:
    from edgeship.gates import gate, latency_regression

    b = find_record(r, baseline["results"])
    if b is None:
        return [gate("baseline.match", r, "skipped", detail=f"no record for {r['target']} in the baseline")]
    diffs = _mismatch(r, b)
    if diffs:
        note = "baseline taken with " + "; ".join(diffs) + ": not compared"
        return [gate("baseline.match", r, "fail", detail=note)] + [
            gate(g, r, "skipped", detail="not compared (baseline.match failed)") for g in REGRESSION_GATES]
    out = [gate("baseline.match", r, "pass", detail=f"same device, recipe and runtime ({r.get('runtime')})")]
    if b.get("status") == "error" or r.get("status") == "error":
        why = r.get("error") or "the baseline holds no measurement for this target"
        return out + [gate(g, r, "not_measured", detail=why) for g in REGRESSION_GATES]

    ca, ba = (r.get("accuracy") or {}).get("accuracy"), (b.get("accuracy") or {}).get("accuracy")
    if ca is None or ba is None:
        out.append(gate("regression.accuracy", r, "skipped", detail="no top-1 vs labels on one side"))
    else:
        drop = ba - ca
        out.append(gate("regression.accuracy", r, "fail" if drop > floors.accuracy_abs else "pass", ca, ba, ">=", "%",
                        f"top-1 {ba:.2f} -> {ca:.2f}% ({-drop:+.2f} pts); counts over {floors.accuracy_abs} pts"))

    status, fields = latency_regression(r.get("latency") or {}, b.get("latency") or {}, floors)
    out.append(gate("regression.latency", r, status, op="~", unit="ms", **_split(fields)))

    out.append(_growth("regression.size", r, (r.get("size_bytes") or 0) / 1024 or None,
                       (b.get("size_bytes") or 0) / 1024 or None, floors.size_rel, floors.size_abs_kb, "KB"))
    out.append(_growth("regression.memory", r, r.get("peak_rss_mb"), b.get("peak_rss_mb"), floors.memory_rel,
                       floors.memory_abs_mb, "MB"))
    return out


def _split(fields: dict) -> dict:
    keys = ("value", "limit", "detail", "confidence", "p_value")
    return {k: fields.get(k) for k in keys if k in fields}


def _growth(name, r, cur, base, rel, abs_floor, unit) -> dict:
    from edgeship.gates import gate

    if cur is None or base is None:
        return gate(name, r, "not_measured", cur, base, "~", unit, "no measurement in the current run or baseline")
    grew = cur - base
    worse = grew > abs_floor and grew > rel * base
    detail = f"{base:.1f} -> {cur:.1f} {unit} ({grew / base:+.1%}); counts over {rel:.0%} and {abs_floor} {unit}"
    return gate(name, r, "fail" if worse else "pass", cur, base, "~", unit, detail)
