"""validate: run every artifact of a bundle on a device and compare it with the float reference.

The reference is the bundle's golden vectors (no framework needed), or the source model re-run
over --data. One record per artifact (records.py's ValidateRecord); its status is "pass", "fail" (a check missed its
limit), "error" (no measurement could be taken: never counted as a pass) or "ran" (latency and
size measured, accuracy not checked: no reference and no labels, or no limit to check it against;
exit 0, never counted as a pass by `check`).

--reference B compares with another artifact or bundle (reference_artifact.py); --metric adds a
task metric or the user's own (task_metrics.py), gated by --metric-drop and --min-metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship import reference_artifact, task_metrics
from edgeship.bundle import Bundle, Golden, find_bundle_of, read_bundle
from edgeship.console import info
from edgeship.data import load_data
from edgeship.errors import ArtifactError, InputError
from edgeship.gates import floors as floor_rules
from edgeship.hashing import sha256_file
from edgeship.inspect import inspect_file
from edgeship.metrics import compare, top1_accuracy
from edgeship.pipeline import run_reference
from edgeship.records import validate_record
from edgeship.runtime.base import format_of
from edgeship.runtime.device import open_device
from edgeship.sources import load_model, source_sha256
from edgeship.status import Status
from edgeship.task_checks import metric_checks, task_record


@dataclass
class ValidateRequest:
    target: Path  # a bundle folder or one artifact file
    data: str | None = None
    device: str = "local"
    threads: int = 1
    warmup: int = 5
    runs: int = 50
    timeout: float = 600.0
    max_drop: float | None = None  # accuracy points vs the float reference; default: the recipe's
    min_cosine: float | None = None  # default: the recipe's
    verbose: bool = False
    model: object | None = None  # edgeship.model.Model held in memory (Python API): the reference for --data
    reference: Path | None = None  # another artifact or a bundle to compare with (reference_artifact.py)
    metric: str | None = None  # a task metric name or module.py:fn (task_metrics.py)
    metric_drop: float | None = None  # most the task metric may fall below the reference's
    min_metric: float | None = None  # the task metric's floor


def resolve(target: Path) -> tuple[Bundle | None, list[dict], list[Path]]:
    """(bundle, artifact records, artifact paths) for a bundle folder or an artifact file."""
    target = Path(target)
    if not target.exists():
        raise InputError(f"not found: '{target}'",
                         hint="pass a bundle folder (export --out) or a .tflite/.pte/.onnx file")
    if target.is_dir():
        bundle = read_bundle(target)
        if not bundle.artifacts and not bundle.manifest.get("failed_artifacts"):
            raise InputError(f"bundle '{target}' lists no artifacts")
        return bundle, bundle.artifacts, [bundle.artifact_path(r) for r in bundle.artifacts]
    if format_of(str(target)) is None:
        raise InputError(f"'{target}' is not a .tflite, .pte or .onnx artifact, nor a bundle folder")
    found = find_bundle_of(target)
    if found:
        return found[0], [found[1]], [target]
    record = {"path": target.name, "format": format_of(str(target)), "recipe": None,
              "size_bytes": target.stat().st_size, "io": None}
    return None, [record], [target]


def reference_for(req: ValidateRequest, bundle: Bundle | None) -> tuple[Golden | None, str]:
    """Inputs, reference outputs and labels, and a note of where they came from."""
    if req.data:
        if bundle is None:
            raise InputError(
                "--data needs the float model to compute the reference, and this artifact is not in a bundle",
                hint="validate the bundle folder instead",
            )

        m = bundle.manifest["model"]
        if req.model is not None:  # the Python API's in-memory model
            ds = load_data(req.data, req.model.io)
            return Golden(ds.arrays, run_reference(req.model, ds), ds.labels), f"model re-run over {req.data}"
        if not m.get("source_path"):
            raise InputError("--data needs the float model, and this bundle was exported from a model in memory",
                             hint="validate it through the Python API (bundle.validate(data=...)), or drop --data")
        if not Path(m["source_path"]).exists():
            raise InputError(f"--data needs the source model, and '{m['source_path']}' is gone",
                             hint="validate against the golden vectors (drop --data)")
        if source_sha256(m["source_path"]) != m["source_sha256"]:
            raise InputError(f"the source model '{m['source_path']}' changed since this bundle was exported",
                             hint="re-export, or validate against the golden vectors (drop --data)")
        info(f"re-running the float reference ({m['framework']}) over {req.data}")
        model = load_model(m["source"], m["framework"])
        ds = load_data(req.data, model.io)
        return Golden(ds.arrays, run_reference(model, ds), ds.labels), f"source re-run over {req.data}"
    if bundle is not None:
        g = bundle.golden()
        return g, f"golden vectors ({len(g)} samples)"
    return None, "none (artifact outside a bundle)"


def validate(req: ValidateRequest, device=None) -> tuple[list[dict], dict]:
    bundle, records, paths = resolve(req.target)
    metric = task_metrics.resolve(req.metric) if req.metric else None
    side_by_side = req.reference is not None or (req.data and bundle is None)
    if side_by_side and not paths:
        raise InputError(f"'{req.target}' has no artifact to compare: export converted none of them",
                         hint="see failed_artifacts in its manifest.json")
    golden, ref_note = (None, "") if side_by_side else reference_for(req, bundle)
    device = device or open_device(req.device)
    if req.reference is not None:
        golden, ref_note = reference_artifact.golden_from_reference(req, device, bundle, paths[0])
    elif side_by_side:
        golden, ref_note = reference_artifact.labels_only(req, paths[0])
    inputs = None if golden is None else golden.inputs
    results = []
    for record, path in zip(records, paths):
        info(f"[bold]validate[/] {path.name} on {device.uri}")
        results.append(_validate_one(req, device, record, path, golden, inputs, metric))
    if bundle is not None and Path(req.target).is_dir():  # what export could not make fails the bundle too
        results.extend(not_shipped(bundle.manifest, device.uri, device.emulated))
    context = {
        "reference": ref_note,
        "device": device.uri,
        "emulated": device.emulated,
        "threads": req.threads,
        "warmup": req.warmup,
        "runs": req.runs,
        "bundle": str(bundle.root) if bundle else None,
        "model": bundle.manifest["model"]["name"] if bundle else None,
        "metric": req.metric,
    }
    return results, context


def not_shipped(manifest: dict, uri: str, emulated: bool, key: str | None = None) -> list[dict]:
    """An error record per artifact export could not make (the manifest's failed_artifacts), or for the one
    'format:recipe' KEY: validate and check report them as errors (exit 1), not as nothing to validate."""
    out = []
    for r in manifest.get("failed_artifacts") or []:
        if key is not None and key != f"{r.get('format')}:{r.get('recipe')}":
            continue
        why = r.get("error") if r.get("stage") == "convert" else (r.get("smoke") or {}).get("error")
        out.append(validate_record(artifact=r["path"], format=r.get("format"), recipe=r.get("recipe"), size_bytes=None,
                                   delegation=None, device=uri, emulated=emulated, checks=[], status=Status.ERROR,
                                   error=("not converted: " if r.get("stage") == "convert" else "could not run: ")
                                   + str(why)))
    return out


def _validate_one(req, device, record: dict, path: Path, golden: Golden | None, inputs, metric=None) -> dict:
    out = {
        "artifact": record["path"],
        "format": record.get("format"),
        "recipe": record.get("recipe"),
        "size_bytes": path.stat().st_size if path.exists() else None,
        "delegation": record.get("delegation"),
        "device": device.uri,
        "emulated": device.emulated,
        "checks": [],
    }
    if not path.exists():
        return validate_record(**out, status=Status.ERROR, error=f"artifact file missing: {path}")
    integrity = _integrity_check(record, path)
    if integrity:
        out["checks"].append(integrity)
    if inputs is None:  # no reference: time the artifact on random inputs of its own shapes
        try:
            shapes = [t["shape"] for t in inspect_file(path)["inputs"]]
        except ArtifactError as e:
            return validate_record(**out, status=Status.ERROR, error=e.message)
        rng = np.random.default_rng(0)
        inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    run = device.run_artifact(path, inputs, record.get("io"), threads=req.threads, warmup=req.warmup,
                              runs=req.runs, timeout=req.timeout, verbose=req.verbose)
    r = run.result
    out.update({k: r.get(k) for k in ("runtime", "delegate", "init_ms", "first_ms", "latency", "peak_rss_mb",
                                      "model_rss_mb", "threads", "platform")})
    if not run.ok:
        return validate_record(**out, status=Status.ERROR, error=run.error)
    if golden is not None and run.outputs is None:  # e.g. adb with benchmark_model: timings only
        return validate_record(**out, status=Status.ERROR, error="accuracy " + (r.get("accuracy_error") or
                                                                  "not measured: the device returned no outputs"))
    if golden is not None and golden.outputs is None:  # labels only (reference_artifact.labels_only)
        acc = top1_accuracy(run.outputs[0], golden.labels)
        out["accuracy"] = {} if acc is None else {"accuracy": acc}
    elif golden is not None:
        names = [t["name"] for t in (record.get("io") or {}).get("outputs", [])] or [
            f"output_{i}" for i in range(len(golden.outputs))]
        if len(run.outputs) != len(golden.outputs):
            return validate_record(**out, status=Status.ERROR,
                                   error=f"artifact has {len(run.outputs)} outputs, the reference {len(golden.outputs)}")
        try:
            out["accuracy"] = compare(golden.outputs, run.outputs, names, golden.labels)
        except ValueError as e:
            return validate_record(**out, status=Status.ERROR, error=f"outputs do not match the reference's shapes: {e}")
        out["checks"] += _checks(req, record, out["accuracy"])
    if golden is not None and metric is not None:
        names = [t["name"] for t in (record.get("io") or {}).get("outputs", [])]
        out["accuracy"]["task"] = task_record(metric, run.outputs, golden, names)
        out["checks"] += metric_checks(req, out["accuracy"]["task"])
    if not all(c["passed"] for c in out["checks"]):
        return validate_record(**out, status=Status.FAIL)
    checked = any(c["name"] != "sha256" for c in out["checks"])
    if not checked:  # nothing said whether the outputs are right: measured, not passed
        out["note"] = ("accuracy not checked: no reference and no labels (pass --reference B, or --data with "
                       "labels)" if golden is None else "accuracy measured, not checked: no limit given "
                       "(--min-metric, --min-cosine, --max-drop)")
    return validate_record(**out, status=Status.PASS if checked else Status.RAN)


def _integrity_check(record: dict, path: Path) -> dict | None:
    """A bundle artifact whose bytes differ from manifest.json's sha256 was changed after export:
    it is still run (its numbers are shown) but it fails, since the manifest no longer describes it."""
    if not record.get("sha256"):
        return None

    if sha256_file(path) == record["sha256"]:
        return None
    return {"name": "sha256", "value": 0.0, "limit": 1.0, "op": "==", "passed": False,
            "detail": "the file changed after export: its sha256 differs from manifest.json's (re-export it)"}


def _checks(req: ValidateRequest, record: dict, acc: dict) -> list[dict]:
    recipe = record.get("recipe")
    if recipe is None and req.reference is not None:  # a third-party artifact vs its reference: the loosest floors
        recipe = "int8"
    # the floors export's verdict held the artifact to (gates/floors.py): the recipe's, or the known loss
    # the export accepted with --floor, as its manifest records them
    limits = dict((record.get("smoke") or {}).get("floors") or floor_rules.floors_for(recipe))
    if req.min_cosine is not None:
        limits["cosine"] = req.min_cosine
    if req.max_drop is not None:
        limits["top1_drop"] = req.max_drop
    checks = floor_rules.checks(acc, limits)
    search = record.get("recipe_search")
    if search and not search.get("met", True):  # --quant auto kept its best candidate over budget
        kept = next((c for c in search["candidates"] if c["kept"]), {})
        drop = kept.get("drop")
        checks.append({"name": "recipe_search", "value": float("inf") if drop is None else float(drop),
                       "limit": float(search["budget"]), "op": "<=", "passed": False,
                       "detail": f"export's recipe search met no candidate within its {search['metric']} drop budget "
                                 f"{search['budget']:g}; this is the best one ({kept.get('candidate')}, drop "
                                 f"{'NaN/Inf' if drop is None else f'{drop:.4g}'})"})
    return checks


def reference_accuracy(golden: Golden | None) -> float | None:
    if golden is None or golden.labels is None:
        return None
    return top1_accuracy(golden.outputs[0], golden.labels)
