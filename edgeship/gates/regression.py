"""Regression gates: the current run against a baseline, a previous `edgeship check` report.json,
matched per target x device.

A baseline record taken on another device, with another runtime version or another recipe is
flagged (gate `baseline.match` fails) and not compared: its numbers say nothing about this run.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeship.errors import InputError
from edgeship.gates.record import Status, gate, verdict
from edgeship.gates.stats import mann_whitney_greater, median_shift_lower_bound

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
    b = find_record(r, baseline["results"])
    if b is None:
        return [gate("baseline.match", r, Status.SKIPPED, detail=f"no record for {r['target']} in the baseline")]
    diffs = _mismatch(r, b)
    if diffs:
        note = "baseline taken with " + "; ".join(diffs) + ": not compared"
        return [gate("baseline.match", r, Status.FAIL, detail=note)] + [
            gate(g, r, Status.SKIPPED, detail="not compared (baseline.match failed)") for g in REGRESSION_GATES]
    out = [gate("baseline.match", r, Status.PASS, detail=f"same device, recipe and runtime ({r.get('runtime')})")]
    if Status.ERROR in (b.get("status"), r.get("status")):
        why = r.get("error") or "the baseline holds no measurement for this target"
        return out + [gate(g, r, Status.NOT_MEASURED, detail=why) for g in REGRESSION_GATES]

    ca, ba = (r.get("accuracy") or {}).get("accuracy"), (b.get("accuracy") or {}).get("accuracy")
    if ca is None or ba is None:
        out.append(gate("regression.accuracy", r, Status.SKIPPED, detail="no top-1 vs labels on one side"))
    else:
        drop = ba - ca
        out.append(gate("regression.accuracy", r, verdict(drop <= floors.accuracy_abs), ca, ba, ">=", "%",
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
    if cur is None or base is None:
        return gate(name, r, Status.NOT_MEASURED, cur, base, "~", unit, "no measurement in the current run or baseline")
    grew = cur - base
    worse = grew > abs_floor and grew > rel * base
    detail = f"{base:.1f} -> {cur:.1f} {unit} ({grew / base:+.1%}); counts over {rel:.0%} and {abs_floor} {unit}"
    return gate(name, r, verdict(not worse), cur, base, "~", unit, detail)


def latency_regression(current: dict, base: dict, floors) -> tuple[str, dict]:
    """(status, fields) comparing two latency records; see the module docstring."""
    cur_s, base_s = current.get("samples_ms"), base.get("samples_ms")
    b50 = base.get("p50_ms")
    c50 = current.get("p50_ms")
    if c50 is None or b50 is None:
        return Status.NOT_MEASURED, {"detail": "no latency in the current run or the baseline"}
    abs_floor = floors.latency_abs_ms
    rel_floor = floors.latency_rel
    if cur_s and base_s and len(cur_s) >= 8 and len(base_s) >= 8:
        p = mann_whitney_greater(cur_s, base_s)
        shift, lo = median_shift_lower_bound(cur_s, base_s, floors.confidence)
        slower = p < 1 - floors.confidence and lo > abs_floor and lo > rel_floor * b50
        detail = (f"p50 {b50:.3f} -> {c50:.3f} ms ({shift / b50:+.0%}); median shift lower bound {lo:+.3f} ms at "
                  f"{floors.confidence:.1%}; Mann-Whitney p={p:.2g}; counts when over {rel_floor:.0%} and "
                  f"{abs_floor} ms, n={len(cur_s)}/{len(base_s)}")
        return verdict(not slower), {"value": c50, "limit": b50, "detail": detail, "p_value": p,
                                      "confidence": 1 - p}
    shift = c50 - b50
    slower = shift > abs_floor and shift > rel_floor * b50
    detail = (f"p50 {b50:.3f} -> {c50:.3f} ms ({shift / b50:+.0%}); no raw samples on one side: floors only "
              f"({rel_floor:.0%} and {abs_floor} ms), no confidence")
    return verdict(not slower), {"value": c50, "limit": b50, "detail": detail}
