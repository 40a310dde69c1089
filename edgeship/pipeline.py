"""export: source model -> (format x recipe) artifacts + manifest.json + golden.npz.

Every check that can fail on the user's input (routes, recipes, data shapes, calibration size,
destination) runs before the first conversion starts.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from edgeship import interrupts, quiet, reference, smoke
from edgeship.bundle import GOLDEN, SCHEMA, BundleWriter, Golden
from edgeship.console import info, warn
from edgeship.convert import TARGETS, ConvertOptions, get_route
from edgeship.data import Dataset, ImageOptions, check_calibration, has_batch_axis, load_data
from edgeship.errors import ArtifactError, ConversionError, EdgeshipError, InputError, UnsupportedError, suggest
from edgeship.hashing import sha256_file
from edgeship.inspect import artifact_io
from edgeship.model import Model, TensorSpec
from edgeship.quantize import Recipe, calibration, parse_recipes, recipe_search
from edgeship.quantize.accuracy_aware import check_request, report_searches, search
from edgeship.quantize.bias_correction import Plan as BiasPlan
from edgeship.quantize.weight_rounding import Plan as RoundingPlan
from edgeship.quantize.equalize import Plan as EqualizePlan
from edgeship.quantize.recipes import refusal
from edgeship.records import artifact_record, manifest_record
from edgeship.reports.search_table import print_searches
from edgeship.runtime.device import open_device
from edgeship.sources import load_model, source_sha256
from edgeship.uptodate import inputs_sha256, up_to_date
from edgeship.version import __version__

DEFAULT_CALIB_SAMPLES = 200
DEFAULT_CALIB_MIN = 16
DEFAULT_GOLDEN_SAMPLES = 100
EXTENSIONS = {"tflite": "tflite", "pte": "pte", "onnx": "onnx"}


@dataclass
class ExportRequest:
    source: str
    out: Path
    targets: list[str] = field(default_factory=lambda: ["tflite", "pte"])
    recipes: str = "fp32,int8"
    calib: str | None = None
    eval: str | None = None
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    calib_min: int = DEFAULT_CALIB_MIN
    golden_samples: int = DEFAULT_GOLDEN_SAMPLES
    framework: str | None = None
    input_shapes: list[TensorSpec] = field(default_factory=list)
    image: ImageOptions = field(default_factory=ImageOptions)
    int8_io: bool = False
    force: bool = False
    trust_source: bool = False
    name: str | None = None
    verbose: bool = False
    reuse_up_to_date: bool = False  # with force: still skip when the bundle's inputs_sha256 matches
    reference_device: str = "cpu"  # auto | cpu | cuda (edgeship/reference.py)
    max_drop: float | None = None  # accuracy-aware int8: budget on --metric's drop (quantize/accuracy_aware.py)
    metric: str = "top1"
    model: Model | None = None  # an in-memory model (the Python API); source then only labels it
    model_sha256: str | None = None  # its weights' hash, in place of the source file's
    calibration: str | None = None  # --calibration: minmax|percentile|mse|entropy|auto (quantize/calibration.py)
    cle: str = "auto"  # --cle off|on|auto: cross-layer equalization of a torch model (quantize/equalize.py)
    bias_correction: str = "auto"  # --bias-correction off|on|auto (quantize/bias_correction.py); auto skips
    # sources that are not an nn.Module
    weight_rounding: str = "nearest"  # --weight-rounding nearest|gptq|auto (quantize/weight_rounding.py)
    device: str | None = None  # --quant auto: measure the candidates there (runtime/device.py URI); None: here


@dataclass
class ExportResult:
    bundle: Path
    manifest: dict
    model: Model


def _search_device(uri: str):
    """--quant auto --device URI: the device, connected now (a remote one's preflight), so an
    unreachable device stops the export before any conversion."""
    device = open_device(uri)
    preflight = getattr(device, "preflight", None)
    if preflight is not None:
        preflight()
    info(f"recipe search: candidates measured on {device.uri}" + (" (emulated)" if device.emulated else ""))
    return device


def parse_targets(text: str) -> list[str]:
    names = [t.strip().lstrip(".") for t in text.split(",") if t.strip()]
    for t in names:
        if t not in TARGETS:
            raise UnsupportedError(suggest(t, TARGETS, "target format"),
                                   hint="pass --to tflite, pte or onnx (comma-separated)")
    return list(dict.fromkeys(names))


def export(req: ExportRequest) -> ExportResult:
    auto = recipe_search.requested(req.recipes)  # --quant auto: the recipe search (quantize/recipe_search.py)
    if auto:
        recipe_search.check_flags(req)
    elif req.device:
        raise InputError(f"export --device {req.device} is where --quant auto measures its candidates; this export "
                         f"runs no search (--quant {req.recipes})",
                         hint=f"pass --quant auto --max-drop X, or validate the bundle there: "
                              f"edgeship validate BUNDLE --device {req.device}")
    recipes = [recipe_search.AUTO_RECIPE] if auto else parse_recipes(req.recipes)

    inputs_key = inputs_sha256(req)
    if not req.force or req.reuse_up_to_date:
        done = up_to_date(req.out, inputs_key)
        if done is not None:
            info(f"[bold]up to date[/]: {req.out} was exported from the same source, data, options and tool "
                 "versions (manifest.json's inputs_sha256); nothing to do. --force exports again.")
            if any("accuracy_aware" in a for a in done.get("artifacts", [])):
                report_searches(done, req.out)  # a budget that was missed is still missed: exit 1 again
            if any("recipe_search" in a for a in done.get("artifacts", [])):
                print_searches(done)
                recipe_search.raise_if_missed(done, req.out)
            return ExportResult(req.out, done, None)
    BundleWriter(req.out, req.force).check_destination()  # fail before loading anything heavy
    search_device = _search_device(req.device) if auto and req.device else None  # unreachable: exit 3 now
    with quiet.loading_output_held(req.verbose):
        model = req.model or load_model(req.source, req.framework, req.input_shapes or None, req.trust_source)
    routes = [get_route(model.framework, t) for t in req.targets]
    for route in routes:
        for r in recipes:
            if auto:
                break
            if r.name not in route.recipes:
                why = refusal(r.name, route.target, route.source)
                raise InputError(f"recipe '{r.name}' is not available on {route.summary}"
                                 + (f": {why}" if why else "") + f"; it has {', '.join(route.recipes)}")

    device = reference.resolve(req.reference_device, model)
    calib = _calibration(req, model, recipes)
    if auto:
        recipe_search.check_request(req, model, routes)
    elif req.max_drop is not None:
        check_request(req, model, routes, recipes)
    # the golden vectors come from the user's data even where no recipe calibrates (--quant fp16 with
    # --calib): random inputs proved an fp16 .tflite that gives NaN on every sample of real speech
    proof = calib if calib is not None or not req.calib else load_data(req.calib, model.io, req.image)
    golden, reference_record = _golden(req, model, proof, device)
    options = ConvertOptions(int8_io=req.int8_io, verbose=req.verbose)
    calibrating = None
    if req.calibration and not auto:
        calibrating = calibration
        plan = calibration.plan(req, model, routes, recipes, calib, golden, info)
        if req.calibration != "auto":
            options.calibration = req.calibration
    cle = None
    if req.cle != "off" and any(r.needs_calibration for r in recipes):
        cle = EqualizePlan(req.cle, model, golden.inputs, golden.outputs, info)
    bias = None
    # auto skips what bias correction cannot run on: not an nn.Module, or an input without a batch
    # axis (an RNN state taken whole: the correction runs the calibration samples as one batch)
    if req.bias_correction != "off" and any(r.needs_calibration for r in recipes) and \
            (req.bias_correction == "on" or (model.kind == "torch-module" and
                                             all(has_batch_axis(s.shape) for s in model.io.inputs))):
        bias = BiasPlan(req.bias_correction, model, golden.inputs, golden.outputs, info)
    rounding = None
    if req.weight_rounding != "nearest" and any(r.needs_calibration for r in recipes):
        rounding = RoundingPlan(req.weight_rounding, model, golden.inputs, golden.outputs, info)
    searches: dict[str, dict] = {}  # artifact file -> its accuracy-aware record
    found = None  # --quant auto: what the search kept for the current format
    autosearch = recipe_search.Search(calib, golden, req.metric, req.max_drop, req.calibration, options, info,
                                      device=search_device) if auto else None
    name = req.name or model.name

    artifacts = []
    failed: list[dict] = []  # artifacts that failed their smoke run (edgeship/smoke.py), kept under failed/
    tools: dict[str, str] = {}
    with BundleWriter(req.out, req.force) as writer, quiet.converter_output_to_log(writer.staging, req.out,
                                                                                 req.verbose):
        for route in routes:
            plain_convert = route.load()
            for recipe in recipes:
                convert = bias.wrap(plain_convert, route.target) if bias and recipe.needs_calibration else plain_convert
                convert = rounding.wrap(convert, route.target) if rounding and recipe.needs_calibration else convert
                convert = cle.wrap(convert, route.target) if cle and recipe.needs_calibration else convert
                filename = f"{name}.{recipe.name}.{EXTENSIONS[route.target]}"
                interrupts.raise_if_requested()  # a Ctrl-C/SIGTERM a finalizer swallowed stops here
                info(f"[bold]export[/] {filename}  ({route.summary})")
                t0 = time.perf_counter()
                try:
                    if autosearch is not None:
                        found = autosearch.run(route, convert, model,
                                               lambda r, t=route.target: writer.path(f"{name}.{r}.{EXTENSIONS[t]}"))
                        result, recipe, filename = found.result, found.recipe, found.path.name
                    elif req.max_drop is not None and recipe.name == "int8":
                        result, searches[filename], _ = search(route, convert, model, recipe, calib, golden,
                                                               writer.path(filename), options, req.metric,
                                                               req.max_drop, log=info)
                    elif calibrating is not None and recipe.needs_calibration:
                        result, choice = plan.convert(convert, route, model, recipe, writer.path(filename), options)
                    else:
                        result = convert(model, recipe, calib if recipe.needs_calibration else None,
                                         writer.path(filename), options)
                except EdgeshipError:
                    raise
                except Exception as e:  # a converter's own exception: report its last words
                    if req.verbose:
                        raise
                    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                    raise ConversionError(f"{route.summary} failed on {filename}: {msg}",
                                          hint="run with --verbose for the converter's traceback") from None
                seconds = time.perf_counter() - t0
                path = writer.path(filename)
                if not path.exists() or path.stat().st_size == 0:
                    raise ConversionError(f"{route.summary} wrote no artifact for {filename}")
                for w in result.warnings:
                    warn(f"{filename}: {w}")
                tools.update(result.tools)
                try:
                    artifacts.append(_artifact_record(path, route, recipe, model, result, seconds, req.int8_io))
                except ArtifactError as e:  # it cannot even be read: a dead artifact, like one that cannot run
                    failed.append(smoke.unreadable(writer.staging, path, route.target, recipe.name, e.message))
                    continue
                if found is not None:
                    artifacts[-1]["recipe_search"] = found.record
                    if found.accuracy_aware:
                        artifacts[-1]["accuracy_aware"] = found.accuracy_aware
                if filename in searches:
                    artifacts[-1]["accuracy_aware"] = searches[filename]
                elif calibrating is not None and recipe.needs_calibration:
                    artifacts[-1]["calibration"] = choice.record(req.calibration)
                if cle and recipe.needs_calibration:
                    artifacts[-1]["cle"] = cle.records.get(filename) or next(reversed(cle.records.values()))
                if bias and recipe.needs_calibration:
                    artifacts[-1]["bias_correction"] = bias.record_for(path) or next(reversed(bias.records.values()))
                if rounding and recipe.needs_calibration:
                    artifacts[-1]["weight_rounding"] = rounding.record_for(path)
                if not smoke.check(writer.staging, artifacts[-1], golden):
                    failed.append(artifacts.pop())
        golden.save(writer.path(GOLDEN))
        manifest = manifest_record(**{
            "schema": SCHEMA,
            "edgeship_version": __version__,
            "created_unix": int(time.time()),
            "inputs_sha256": inputs_key,  # what the bytes depend on: a later export with the same is skipped
            "model": {
                "name": name,
                "framework": model.framework,
                "kind": model.kind,
                "source": model.source,
                "source_path": str(Path(model.source_path).resolve()) if model.source_path else None,
                "source_sha256": source_sha256(model.source_path) if model.source_path else req.model_sha256,
                "io": model.io.to_dict(),
                **({"loader": model.loader} if model.loader else {}),
            },
            "calibration": None if calib is None else {
                "data": calib.name, "samples": len(calib), "sha256": calib.sha256,
            },
            "golden": {
                "path": GOLDEN, "samples": len(golden), "sha256": sha256_file(writer.path(GOLDEN)),
                "data": golden_source(req, proof), "has_labels": golden.labels is not None,
            },
            "reference": reference_record,
            "tools": {"edgeship": __version__, "python": platform.python_version(), **_versions(tools)},
            "artifacts": artifacts,
            **({"failed_artifacts": failed} if failed else {}),
        })
        writer.commit(manifest)
    if auto:
        print_searches(manifest)
    smoke.raise_if_failed(failed, req.out)
    if auto:
        recipe_search.raise_if_missed(manifest, req.out)  # exit 1 when a format met no candidate within budget
    if searches:
        report_searches(manifest, req.out)  # prints; raises CheckFailed (exit 1) when a budget was missed
    return ExportResult(req.out, manifest, model)


def golden_source(req: ExportRequest, calib: Dataset | None) -> str:
    if req.eval:
        return req.eval
    if calib is not None:
        return f"{calib.name} (calibration data)"
    return "random normal inputs (no --eval or --calib data given)"


def _calibration(req: ExportRequest, model: Model, recipes: list[Recipe]) -> Dataset | None:
    needs = [r.name for r in recipes if r.needs_calibration]
    if not needs:
        return None
    if not req.calib:
        raise InputError(
            f"recipe {', '.join(needs)} needs calibration data",
            hint="pass --calib DATA (an .npz, a folder of samples or images, module.py:fn, or 'digits')",
        )
    ds = load_data(req.calib, model.io, req.image)
    check_calibration(ds, req.calib_min)
    if len(ds) < 100:
        warn(f"calibrating on only {len(ds)} samples; about 200 representative samples give steadier int8 ranges")
    return ds.take(req.calib_samples)


def _golden(req: ExportRequest, model: Model, calib: Dataset | None, device: str = "cpu") -> tuple[Golden, dict]:
    """A fixed sample of inputs with the float reference's outputs (and labels where known), and
    how the reference ran ({device, batch, samples, seconds})."""
    if req.eval:
        ds = load_data(req.eval, model.io, req.image).take(req.golden_samples)
    elif calib is not None:
        ds = calib.take(req.golden_samples)
    else:
        rng = np.random.default_rng(0)
        arrays = [random_rows(rng, req.golden_samples, s) for s in model.io.inputs]
        ds = Dataset("random", arrays, model.io.inputs)

    outputs, record = reference.run(model, ds, device)
    return Golden(ds.arrays, outputs, ds.labels), record


def random_rows(rng, n: int, spec) -> np.ndarray:
    """n random samples for one input, as data arrays are laid out (has_batch_axis): normal floats,
    or ids 0 and 1 for an integer input (valid for any embedding table)."""
    shape = (n, *spec.shape[1:]) if has_batch_axis(spec.shape) else (n, *spec.shape)
    if np.dtype(spec.dtype).kind in "iub":
        return rng.integers(0, 2, shape).astype(spec.dtype)
    return rng.standard_normal(shape).astype(spec.dtype)


def run_reference(model: Model, ds: Dataset, batch: int = 256, device: str = "cpu") -> list[np.ndarray]:
    return reference.run(model, ds, device, batch)[0]


def _artifact_record(path: Path, route, recipe: Recipe, model: Model, result, seconds: float, int8_io: bool) -> dict:
    io = artifact_io(path, model.io, result.io_quantization)
    notes = integer_dtype_notes(model.io, io)
    for note in notes:
        warn(f"{path.name}: {note}")
    return artifact_record(**{
        "path": path.name,
        "sha256": sha256_file(path),
        "format": route.target,
        "recipe": recipe.name,
        "int8_io": bool(int8_io and recipe.name == "int8"),
        "route": result.route or route.summary,
        "size_bytes": path.stat().st_size,
        "io": io,
        "delegation": result.delegation,
        "warnings": list(result.warnings) + notes,
        "export_seconds": round(seconds, 3),
        "tools": result.tools,
    })


def integer_dtype_notes(model_io, artifact_io_record: dict) -> list[str]:
    """A note per integer input (token ids) the artifact declares with another dtype (litert-torch
    writes int64 ids as int32): the runners cast the data to the artifact's dtype."""
    notes = []
    for spec, a in zip(model_io.inputs, artifact_io_record.get("inputs") or []):
        have = a.get("dtype")
        if np.dtype(spec.dtype).kind in "iu" and have and have != spec.dtype:
            notes.append(f"input '{spec.name}' is {have} in the artifact (the model's is {spec.dtype}); "
                         f"edgeship's runners cast the data to {have}, and so must the app")
    return notes


def _versions(tools: dict[str, str]) -> dict[str, str]:
    out = dict(tools)
    for pkg in ("numpy", "ai-edge-litert"):
        try:
            out.setdefault(pkg, metadata.version(pkg))
        except metadata.PackageNotFoundError:
            pass
    return out
