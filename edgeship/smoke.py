"""No dead artifacts, and no artifact shipped without a verdict: before a bundle is committed, each
artifact runs in a child process (the agent, or the native .pte runner, as `validate` runs it) on
every golden sample, and is compared with the float reference.

- An artifact that cannot load or run, or that answers with the wrong number or shape of outputs or
  with NaN/Inf, fails its smoke run with the runtime's own words; export keeps it out of the bundle
  (under failed/), records why in the manifest and exits 1, while the other artifacts are written.
- An artifact that runs but misses its recipe's accuracy floor (gates/floors.py, the floors
  `validate` holds it to) stays in the bundle, marked `smoke.status: "below_floor"` with the
  figure and the floor, so `diff` and `validate` can look at it; export exits 1 and names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.bundle import Golden
from edgeship.console import warn
from edgeship.errors import CheckFailed
from edgeship.gates import floors as floor_rules
from edgeship.metrics import compare, cosine
from edgeship.runtime.local import LocalDevice

SMOKE_TIMEOUT_S = 300.0
FAILED_DIR = "failed"  # where a bundle keeps the artifacts that failed their smoke run
BELOW_FLOOR = "below_floor"


FP16_RANGE = ("; float16 holds no magnitude below 6e-8 or above 65504, so a constant such as a log's epsilon "
              "(1e-10) becomes 0 and the log -inf: keep this model fp32, or int8 where its route allows")


def smoke_run(path, signature: dict | None, golden: Golden, timeout: float = SMOKE_TIMEOUT_S) -> dict:
    """{"status": "pass", "samples", "cosine", "max_abs_error", "accuracy"} or {"status": "fail", "error"}:
    the artifact run on every golden sample in a child process; `cosine` and `max_abs_error` are the
    weakest output's, `accuracy` is validate's comparison (first output, labels where known)."""
    inputs = [np.ascontiguousarray(a) for a in golden.inputs]
    run = LocalDevice().run_artifact(path, inputs, signature, warmup=0, runs=0, timeout=timeout)
    record: dict = {"samples": len(golden), "runtime": (run.result or {}).get("runtime")}
    if not run.ok:
        return {**record, "status": "fail", "error": run.error}
    refs = list(golden.outputs)
    outs = list(run.outputs or [])
    if len(outs) != len(refs):
        return {**record, "status": "fail", "error": f"gave {len(outs)} outputs, the model has {len(refs)}"}
    for i, (o, r) in enumerate(zip(outs, refs)):
        if o.size != r.size:
            return {**record, "status": "fail",
                    "error": f"output {i} has shape {list(o.shape)}, the model's is {list(r.shape)}"}
        if o.dtype.kind == "f" and not np.isfinite(o).all():
            return {**record, "status": "fail", "error": f"output {i} holds NaN or Inf"}
    pairs = [(r.reshape(len(golden), -1).astype(np.float64), o.reshape(len(golden), -1).astype(np.float64))
             for o, r in zip(outs, refs)]
    names = [t["name"] for t in (signature or {}).get("outputs", [])] or [f"output_{i}" for i in range(len(refs))]
    accuracy = compare(refs, [o.reshape(r.shape) for o, r in zip(outs, refs)], names, golden.labels)
    keep = ("cosine", "snr_db", "accuracy", "reference_accuracy", "accuracy_drop", "top1_agreement")
    return {**record, "status": "pass", "cosine": min(cosine(r, o) for r, o in pairs),
            "max_abs_error": max(float(np.abs(r - o).max()) if r.size else 0.0 for r, o in pairs),
            "accuracy": {k: accuracy[k] for k in keep if accuracy.get(k) is not None}}


@dataclass
class Judged:
    result: dict  # the artifact record's `smoke`: status pass | below_floor | fail, figures, floors, error
    path: str  # the artifact's path in the bundle (under failed/ when it could not run)
    ran: bool  # False: it could not run, and is not shipped


def check(staging, path, io: dict | None, recipe: str, golden: Golden, floors: dict | None = None,
          own_budget: bool = False) -> Judged:
    """Smoke-run the artifact at PATH (in the staging folder) on the golden samples, and judge it.
    A run failure moves the file to failed/ and prints the runtime's words. A run that misses its
    floors (FLOORS: export --floor; gates/floors.py) keeps the file, marked below_floor; an artifact
    a search chose under its own budget (OWN_BUDGET: --max-drop, --quant auto) is judged by that
    budget instead."""
    path = Path(path)
    result = smoke_run(path, io, golden)
    if result.get("error"):  # the staging folder is gone once the bundle is committed: name the file
        result["error"] = result["error"].replace(str(path.resolve()), path.name).replace(str(path), path.name)
        if recipe == "fp16" and "NaN or Inf" in result["error"]:
            result["error"] += FP16_RANGE
    if result["status"] == "pass":
        if not own_budget:
            limits = floor_rules.floors_for(recipe, floors)
            result["floors"] = limits
            missed = [c for c in floor_rules.checks(result["accuracy"], limits) if not c["passed"]]
            if missed:
                result["status"] = BELOW_FLOOR
                result["missed"] = [floor_rules.describe(c) for c in missed]
        return Judged(result, path.name, True)
    (Path(staging) / FAILED_DIR).mkdir(exist_ok=True)
    path.replace(Path(staging) / FAILED_DIR / path.name)
    warn(f"{path.name} failed its smoke run on the golden samples: {result['error']}")
    return Judged(result, f"{FAILED_DIR}/{path.name}", False)


def unreadable(staging, path, fmt: str, recipe: str, error: str) -> dict:
    """The record of an artifact that could not even be inspected; the file moves to failed/."""
    path = Path(path)
    error = error.replace(str(path.resolve()), path.name).replace(str(path), path.name)
    (Path(staging) / FAILED_DIR).mkdir(exist_ok=True)
    path.replace(Path(staging) / FAILED_DIR / path.name)
    warn(f"{path.name} cannot be read: {error}")
    return {"path": f"{FAILED_DIR}/{path.name}", "format": fmt, "recipe": recipe,
            "smoke": {"status": "fail", "error": f"load: {error}"}}


def not_converted(filename: str, fmt: str, recipe: str, route: str, error: str) -> dict:
    """The record of an artifact whose conversion failed: nothing was written for it."""
    warn(f"{filename}: {route} failed: {error}")
    return {"path": filename, "format": fmt, "recipe": recipe, "stage": "convert", "route": route, "error": error}


def below_floor(manifest: dict) -> list[dict]:
    return [a for a in manifest.get("artifacts", []) if (a.get("smoke") or {}).get("status") == BELOW_FLOOR]


def verdict_lines(manifest: dict) -> list[str]:
    """One line per artifact export did not ship as good: not converted, could not run, below its floor."""
    lines = []
    for r in manifest.get("failed_artifacts") or []:
        name = r["path"].split("/")[-1]
        if r.get("stage") == "convert":
            lines.append(f"{name}: not converted: {r['error']}")
        else:
            lines.append(f"{name}: could not run, not shipped: {(r.get('smoke') or {}).get('error')}")
    for a in below_floor(manifest):
        s = a["smoke"]
        lines.append(f"{a['path']}: {', '.join(s['missed'])} on {s.get('samples')} golden samples")
    return lines


def raise_verdict(manifest: dict, bundle) -> None:
    """Print one line per artifact that misses; exit 1 (CheckFailed) when any does."""
    lines = verdict_lines(manifest)
    if not lines:
        return
    for line in lines:
        warn(line)
    failed = manifest.get("failed_artifacts") or []
    low = below_floor(manifest)
    said = []
    kept = any("/" in r["path"] for r in failed)  # the ones that converted but could not run
    if failed:
        said.append(f"{len(failed)} artifact(s) not shipped (conversion or run failed: failed_artifacts in "
                    f"manifest.json{', files under ' + FAILED_DIR + '/' if kept else ''})")
    if low:
        said.append(f"{len(low)} below their accuracy floor: {', '.join(a['path'] for a in low)}")
    raise CheckFailed(
        "; ".join(said),
        hint=f"the bundle is written ({bundle}); " + (
            "for a floor miss try --quant auto --max-drop X (the fastest recipe within budget), --max-drop X on "
            "int8 (keep the sensitive layers float), or `edgeship diff` to see where it goes wrong; accept a "
            "known loss with --floor RECIPE:cosine=X / --floor RECIPE:top1_drop=PTS" if low else
            (f"the artifacts that converted but could not run are under {FAILED_DIR}/ (`edgeship inspect` them); "
             if kept else "") + "run with --verbose for each failure's traceback"),
    )
