"""export: source model -> (format x recipe) artifacts + manifest.json + golden.npz.

Every check that can fail on the user's input (routes, recipes, data shapes, calibration size,
destination) runs before the first conversion starts.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from edgeship import export_modes, forked, interrupts, quiet, reference, smoke
from edgeship.bundle import GOLDEN, SCHEMA, BundleWriter, Golden
from edgeship.console import err_console, info, warn
from edgeship.convert import TARGETS, ConvertOptions, get_route
from edgeship.convert.base import converter_message
from edgeship.data import Dataset, ImageOptions, check_calibration, has_batch_axis, load_data
from edgeship.errors import (
    ArtifactError,
    CheckFailed,
    DeviceError,
    EdgeshipError,
    InputError,
    UnsupportedError,
    suggest,
)
from edgeship.hashing import sha256_file
from edgeship.inspect import artifact_io
from edgeship.model import Model, TensorSpec
from edgeship.quantize import Recipe, calibration, parse_recipes, ranges, recipe_search
from edgeship.quantize.accuracy_aware import check_request, report_searches
from edgeship.quantize.bias_correction import Plan as BiasPlan
from edgeship.quantize.equalize import Plan as EqualizePlan
from edgeship.quantize.recipes import refusal
from edgeship.quantize.rewrites import Sequence as RewriteSequence
from edgeship.quantize.weight_rounding import Plan as RoundingPlan
from edgeship.records import artifact_record, manifest_record
from edgeship.reports.search_table import print_searches
from edgeship.runtime.device import open_device
from edgeship.sources import load_model, source_sha256
from edgeship.stage_clock import Clock
from edgeship.uptodate import inputs_sha256, up_to_date
from edgeship.version import __version__

DEFAULT_CALIB_SAMPLES = 200
DEFAULT_CALIB_MIN = 16
DEFAULT_GOLDEN_SAMPLES = 100


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
    # sources that are neither an nn.Module nor a Keras model
    weight_rounding: str = "nearest"  # --weight-rounding nearest|gptq|auto (quantize/weight_rounding.py)
    device: str | None = None  # --quant auto: measure the candidates there (runtime/device.py URI); None: here
    # --floor: known losses accepted, {recipe or '*': {'cosine': min, 'top1_drop': max}} (gates/floors.py)
    floors: dict = field(default_factory=dict)
    # --keep-float-ranges auto|off: int8 keeps float the layers whose activations int8 cannot hold (quantize/ranges.py)
    keep_float_ranges: str = "auto"
    jobs: int | None = None  # --jobs: formats converted at once in forked children (edgeship/forked.py); None: cores


@dataclass
class ExportResult:
    bundle: Path
    manifest: dict
    model: Model


class ExportFailed(CheckFailed):
    """Export's verdict (exit 1) on a bundle it wrote: `result` holds the bundle and its manifest."""

    def __init__(self, failed: CheckFailed, result: ExportResult):
        super().__init__(failed.message, hint=failed.hint)
        self.result = result


def _search_device(uri: str):
    """--quant auto --device URI: the device, connected now (a remote one's preflight), so an
    unreachable device stops the export before any conversion."""
    device = open_device(uri)
    device.preflight()
    info(f"recipe search: candidates measured on {device.uri}" + (" (emulated)" if device.emulated else ""))
    return device


def parse_targets(text: str) -> list[str]:
    names = [t.strip().lstrip(".") for t in text.split(",") if t.strip()]
    for t in names:
        if t not in TARGETS:
            raise UnsupportedError(suggest(t, TARGETS, "target format"),
                                   hint="pass --to tflite, pte or onnx (comma-separated)")
    return list(dict.fromkeys(names))


@dataclass
class Prepared:
    """Everything export decided before its first conversion: handed to each job, then to the manifest."""

    req: ExportRequest
    inputs_key: str
    model: Model
    routes: list
    recipes: list[Recipe]
    calib: Dataset | None
    proof: Dataset | None  # the data the golden vectors came from
    golden: Golden
    reference_record: dict
    options: ConvertOptions
    strategy: object  # export_modes: Plain | CalibrationSearch | AccuracyAware | RecipeSearch
    rewrites: RewriteSequence | None  # the float-model rewrites of calibrated recipes (CLE, rounding, bias)
    name: str
    float_ranges: object = None  # quantize/ranges.py's Finding: layers int8 keeps float (None: no int8 to keep for)
    clock: Clock = field(default_factory=Clock)  # seconds per stage: the manifest's `timings`


@dataclass
class Outcome:
    """One job's result: the artifact's manifest record, or why there is none."""

    record: dict | None = None
    failed: dict | None = None
    tools: dict = field(default_factory=dict)


def export(req: ExportRequest) -> ExportResult:
    """prepare (every check, the model, data, golden vectors, strategy) -> one job per (format, recipe)
    -> the manifest -> the verdict: exit 1 (CheckFailed) when an artifact failed to convert or run, or
    missed its accuracy floor, with the bundle written and the artifact named."""
    done = _already_done(req)
    if done is not None:
        return done
    clock = Clock()
    plan = prepare(req, clock)
    with BundleWriter(req.out, req.force) as writer, quiet.converter_output_to_log(writer.staging, req.out,
                                                                                 req.verbose):
        jobs = _jobs(req, len(plan.routes))
        if jobs > 1:
            plan.clock.jobs = jobs
            _warm_rewrites(plan)
        per_route = forked.run_each(plan.routes, lambda route: export_route(plan, writer, route), jobs,
                                    lambda route, why, finished: _died(plan, writer, route, why, finished))
        outcomes = [o for route_outcomes, _ in per_route for o in route_outcomes]
        for _, seconds in per_route:
            for stage, s in seconds.items():
                plan.clock.add(stage, s)
        manifest = write_manifest(plan, writer, outcomes)
    result = ExportResult(req.out, manifest, plan.model)
    _verdict(req, result)
    return result


def _jobs(req: ExportRequest, routes: int) -> int:
    """How many formats convert at once (1: one after another): --jobs, else one per core, at most one per
    format. A recipe search times its candidates, so it converts one format at a time (a second conversion
    beside it would be in its timings)."""
    jobs = req.jobs if req.jobs is not None else forked.cores()
    if _auto(req):
        return 1
    why = forked.why_serial(jobs, routes)
    if why is None:
        return min(jobs, routes)
    if req.jobs is not None and req.jobs > 1 and routes > 1:
        info(f"--jobs {req.jobs}: the formats convert one after another ({why})")
    return 1


def _warm_rewrites(plan: Prepared) -> None:
    """Before the formats fork: the rewrites' simulations, once here rather than once per child (a plain
    export's; a search calibrates on data sets of its own)."""
    if plan.rewrites is None or type(plan.strategy) is not export_modes.Plain:
        return
    pairs = [(recipe, route.target) for route in plan.routes for recipe in plan.recipes
             if recipe.needs_calibration and not ranges.keeps(plan.float_ranges, route, plan.model, recipe)]
    before = plan.rewrites.seconds()["rewrite decisions"]
    plan.rewrites.warm(plan.model, pairs, plan.calib)
    plan.clock.add("rewrite decisions", plan.rewrites.seconds()["rewrite decisions"] - before)


def export_route(plan: Prepared, writer: BundleWriter, route) -> tuple[list[Outcome], dict[str, float]]:
    """Every recipe of one format (a --jobs task): its outcomes, and the seconds its stages took (its own
    clock, so a forked child's time reaches the manifest)."""
    mine = replace(plan, clock=Clock())
    convert = _counted(ranges.wrap(plan.float_ranges, route.load(), route, plan.model))
    outcomes = []
    for recipe in ([recipe_search.AUTO_RECIPE] if _auto(plan.req) else plan.recipes):
        outcomes.append(export_one(mine, writer, route, recipe, convert))
        forked.so_far((list(outcomes), dict(mine.clock.seconds)))  # kept if this format's child dies later
        if _auto(plan.req):
            break
    return outcomes, dict(mine.clock.seconds)


def _died(plan: Prepared, writer: BundleWriter, route, why: str, finished) -> tuple[list[Outcome], dict[str, float]]:
    """A format whose forked child died (a converter's SIGSEGV, the OOM killer): the recipes it had finished
    (`finished`: its last so_far()) are kept; each other recipe failed, and what the child had written of it is
    not shipped."""
    outcomes, seconds = finished or ([], {})
    for recipe in plan.recipes[len(outcomes):]:
        filename = f"{plan.name}.{recipe.name}.{route.target}"
        writer.path(filename).unlink(missing_ok=True)
        outcomes.append(Outcome(failed=smoke.not_converted(filename, route.target, recipe.name, route.summary, why)))
    return outcomes, seconds


def _auto(req: ExportRequest) -> bool:
    return recipe_search.requested(req.recipes)


def _already_done(req: ExportRequest) -> ExportResult | None:
    """The bundle at --out when it was exported from the same inputs; its verdict is said again (a
    miss is still a miss: exit 1)."""
    if req.force and not req.reuse_up_to_date:
        return None
    done = up_to_date(req.out, inputs_sha256(req))
    if done is None:
        return None
    info(f"[bold]up to date[/]: {req.out} was exported from the same source, data, options and tool "
         "versions (manifest.json's inputs_sha256); nothing to do. --force exports again.")
    result = ExportResult(req.out, done, None)
    _verdict(req, result)
    return result


def prepare(req: ExportRequest, clock: Clock | None = None) -> Prepared:
    """Every check that can fail on the user's input, then the model, data and golden vectors: all
    before the first conversion (exit 2 for bad usage or input, 3 for an unreachable device)."""
    auto = _auto(req)
    if auto:
        recipe_search.check_flags(req)
    elif req.device:
        raise InputError(f"export --device {req.device} is where --quant auto measures its candidates; this export "
                         f"runs no search (--quant {req.recipes})",
                         hint=f"pass --quant auto --max-drop X, or validate the bundle there: "
                              f"edgeship validate BUNDLE --device {req.device}")
    recipes = [recipe_search.AUTO_RECIPE] if auto else parse_recipes(req.recipes)
    inputs_key = inputs_sha256(req)
    BundleWriter(req.out, req.force).check_destination()  # fail before loading anything heavy
    search_device = _search_device(req.device) if auto and req.device else None  # unreachable: exit 3 now
    clock = clock or Clock()
    with quiet.loading_output_held(req.verbose), clock.stage("load"):
        model = req.model or load_model(req.source, req.framework, req.input_shapes or None, req.trust_source)
    routes = [get_route(model.framework, t) for t in req.targets]
    for route in routes:
        for r in ([] if auto else recipes):
            if r.name not in route.recipes:
                why = refusal(r.name, route.target, route.source)
                raise InputError(f"recipe '{r.name}' is not available on {route.summary}"
                                 + (f": {why}" if why else "") + f"; it has {', '.join(route.recipes)}")

    device = reference.resolve(req.reference_device, model)
    with clock.stage("calibration data"):
        calib = _calibration(req, model, recipes)
    if auto:
        recipe_search.check_request(req, model, routes)
    elif req.max_drop is not None:
        check_request(req, model, routes, recipes)
    # the golden vectors come from the user's data even where no recipe calibrates (--quant fp16 with
    # --calib): random inputs proved an fp16 .tflite that gives NaN on every sample of real speech
    proof = calib if calib is not None or not req.calib else load_data(req.calib, model.io, req.image)
    with clock.stage("golden reference"):
        golden, reference_record = _golden(req, model, proof, device)
    options = ConvertOptions(int8_io=req.int8_io, verbose=req.verbose)
    calibration_plan = None
    if req.calibration and not auto:
        calibration_plan = calibration.plan(req, model, routes, recipes, calib, golden, info)
        if req.calibration != "auto":
            options.calibration = req.calibration
    strategy = export_modes.choose(req, calib, golden, options, info, calibration_plan, search_device)
    with clock.stage("keep-float-ranges"):
        float_ranges = ranges.plan(req.keep_float_ranges, model, calib, recipes, routes, info)
    with clock.stage("rewrite decisions"):  # a plan's own set-up (CLE equalizes its copy here)
        rewrites = _rewrites(req, model, recipes, golden)
    return Prepared(req, inputs_key, model, routes, recipes, calib, proof, golden, reference_record, options,
                    strategy, rewrites, req.name or model.name, float_ranges, clock)


def _rewrites(req: ExportRequest, model: Model, recipes: list[Recipe], golden: Golden) -> RewriteSequence | None:
    """The float-model rewrites calibrated recipes go through, decided as one sequence (quantize/rewrites.py)."""
    if not any(r.needs_calibration for r in recipes):
        return None
    plans = []
    if req.cle != "off":
        plans.append(EqualizePlan(req.cle, model, golden.inputs, golden.outputs, info))
    if req.weight_rounding != "nearest":
        plans.append(RoundingPlan(req.weight_rounding, model, golden.inputs, golden.outputs, info))
    # auto skips what bias correction cannot run on: not an nn.Module or a Keras model, or an input
    # without a batch axis (an RNN state taken whole: the correction runs the calibration samples as one batch)
    if req.bias_correction != "off" and \
            (req.bias_correction == "on" or (model.kind in ("torch-module", "keras") and
                                             all(has_batch_axis(s.shape) for s in model.io.inputs))):
        plans.append(BiasPlan(req.bias_correction, model, golden.inputs, golden.outputs, info))
    return RewriteSequence(plans, golden.inputs, golden.outputs, info) if plans else None


class _counted:
    """A route's convert function that counts its conversions (the manifest's `conversions`)."""

    def __init__(self, convert):
        self.convert, self.calls = convert, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.convert(*args, **kwargs)


def export_one(plan: Prepared, writer: BundleWriter, route, recipe: Recipe, convert: _counted) -> Outcome:
    """One (format, recipe): convert through the export's strategy, record, smoke-run against the floors.
    A converter's failure (its own exception, or ConversionError) is this artifact's failure, recorded,
    and the export goes on; a route's refusal of the model or recipe (UnsupportedError, InputError) is
    bad usage: exit 2 with nothing written."""
    req = plan.req
    filename = f"{plan.name}.{recipe.name}.{route.target}"
    interrupts.raise_if_requested()  # a Ctrl-C/SIGTERM a finalizer swallowed stops here
    info(f"[bold]export[/] {filename}  ({route.summary})")
    before = convert.calls
    t0 = time.perf_counter()
    spent = plan.rewrites.seconds() if plan.rewrites else {}
    # layers kept float by --keep-float-ranges: no rewrite (its int8 simulation quantizes them, and its fx-traced
    # model loses the modules the float layers are named by)
    rewrites = plan.rewrites if recipe.needs_calibration and not ranges.keeps(plan.float_ranges, route, plan.model,
                                                                             recipe) else None
    try:
        rewritten = rewrites.wrap(convert, route.target) if rewrites else convert
        done = plan.strategy.convert(route, rewritten, plan.model,
                                     recipe, lambda r: writer.path(f"{plan.name}.{r}.{route.target}"),
                                     plan.options)
    except (InputError, UnsupportedError, DeviceError):  # bad usage or input (a route that refuses this model or
        raise  # recipe by design: exit 2, nothing written), or the search's device went away: the export's
    except Exception as e:  # a converter's own exception, or its ConversionError: report its last words
        if req.verbose:  # the whole traceback and the hint; the export goes on and ends as without --verbose
            err_console().print_exception()
            if isinstance(e, EdgeshipError) and e.hint:
                warn(f"{filename}: hint: {e.hint}")
        _clock_conversion(plan, time.perf_counter() - t0, spent)
        msg = converter_message(e.message if isinstance(e, EdgeshipError) else e)  # one line, no dead temp paths
        writer.path(filename).unlink(missing_ok=True)
        return Outcome(failed=smoke.not_converted(filename, route.target, recipe.name, route.summary, msg))
    seconds = time.perf_counter() - t0
    _clock_conversion(plan, seconds, spent)
    path, recipe, result = done.path, done.recipe, done.result
    if not path.exists() or path.stat().st_size == 0:
        return Outcome(failed=smoke.not_converted(path.name, route.target, recipe.name, route.summary,
                                                  "the converter wrote no artifact"))
    for w in result.warnings:
        warn(f"{path.name}: {w}")
    try:
        io = artifact_io(path, plan.model.io, result.io_quantization)
    except ArtifactError as e:  # it cannot even be read: a dead artifact, like one that cannot run
        return Outcome(failed=smoke.unreadable(writer.staging, path, route.target, recipe.name, e.message))
    fields = dict(done.fields)
    fields.update(ranges.record_for(plan.float_ranges, route, plan.model, recipe, skipped=bool(plan.rewrites)))
    if rewrites:
        fields.update(rewrites.records_for(path))
    sha256, size_bytes = sha256_file(path), path.stat().st_size
    with plan.clock.stage("smoke runs"):
        judged = smoke.check(writer.staging, path, io, recipe.name, plan.golden, req.floors,
                             own_budget="accuracy_aware" in fields or "recipe_search" in fields)
    record = _artifact_record(judged.path, sha256, size_bytes, route, recipe, plan.model, result, io, seconds,
                              req.int8_io, smoke=judged.result, conversions=convert.calls - before, **fields)
    return Outcome(record=record, tools=result.tools) if judged.ran else Outcome(failed=record, tools=result.tools)


def _clock_conversion(plan: Prepared, seconds: float, before: dict) -> None:
    """One artifact's conversion time on the clock, its rewrites' decisions and trials apart."""
    after = plan.rewrites.seconds() if plan.rewrites else {}
    rewrites = 0.0
    for stage, total in after.items():
        plan.clock.add(stage, total - before.get(stage, 0.0))
        rewrites += total - before.get(stage, 0.0)
    plan.clock.add("conversions", seconds - rewrites)


def write_manifest(plan: Prepared, writer: BundleWriter, outcomes: list[Outcome]) -> dict:
    req, model, golden = plan.req, plan.model, plan.golden
    tools: dict[str, str] = {}
    for o in outcomes:
        tools.update(o.tools)
    failed = [o.failed for o in outcomes if o.failed is not None]
    golden.save(writer.path(GOLDEN))
    manifest = manifest_record(**{
        "schema": SCHEMA,
        "edgeship_version": __version__,
        "created_unix": int(time.time()),
        "inputs_sha256": plan.inputs_key,  # what the bytes depend on: a later export with the same is skipped
        "model": {
            "name": plan.name,
            "framework": model.framework,
            "kind": model.kind,
            "source": model.source,
            "source_path": str(Path(model.source_path).resolve()) if model.source_path else None,
            "source_sha256": source_sha256(model.source_path) if model.source_path else req.model_sha256,
            "io": model.io.to_dict(),
            **({"loader": model.loader} if model.loader else {}),
        },
        "calibration": None if plan.calib is None else {
            "data": plan.calib.name, "samples": len(plan.calib), "sha256": plan.calib.sha256,
        },
        "golden": {
            "path": GOLDEN, "samples": len(golden), "sha256": sha256_file(writer.path(GOLDEN)),
            "data": golden_source(req, plan.proof), "has_labels": golden.labels is not None,
        },
        "reference": plan.reference_record,
        "tools": {"edgeship": __version__, "python": platform.python_version(), **_versions(tools)},
        "conversions": sum(o.record.get("conversions", 0) for o in outcomes if o.record) + sum(
            o.failed.get("conversions", 0) for o in outcomes if o.failed),
        "artifacts": [o.record for o in outcomes if o.record is not None],
        **({"failed_artifacts": failed} if failed else {}),
        "timings": plan.clock.record(),  # seconds per stage (edgeship/stage_clock.py), up to the manifest
    })
    writer.commit(manifest)
    return manifest


def _verdict(req: ExportRequest, result: ExportResult) -> None:
    """Say what export did not ship as good, and exit 1 for it (ExportFailed, carrying the result):
    artifacts that failed to convert or to run, artifacts below their accuracy floor, searches that
    missed their budget. All are said before the one exit."""
    manifest = result.manifest
    misses = []
    if any("recipe_search" in a for a in manifest.get("artifacts", [])):
        print_searches(manifest)
        try:
            recipe_search.raise_if_missed(manifest, req.out)  # a format that met no candidate within budget
        except CheckFailed as e:
            misses.append(e)
    if any("accuracy_aware" in a and "recipe_search" not in a for a in manifest.get("artifacts", [])):
        try:
            report_searches(manifest, req.out)  # prints; a budget that was missed
        except CheckFailed as e:
            misses.append(e)
    try:
        smoke.raise_verdict(manifest, req.out)
    except CheckFailed as e:
        misses.insert(0, e)
    if misses:
        raise ExportFailed(CheckFailed("; ".join(m.message for m in misses), hint=misses[0].hint), result)


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


def _artifact_record(path: str, sha256: str, size_bytes: int, route, recipe: Recipe, model: Model, result, io: dict,
                     seconds: float, int8_io: bool, **fields) -> dict:
    notes = integer_dtype_notes(model.io, io)
    for note in notes:
        warn(f"{Path(path).name}: {note}")
    return artifact_record(**{
        "path": path,
        "sha256": sha256,
        "format": route.target,
        "recipe": recipe.name,
        "int8_io": bool(int8_io and recipe.name == "int8"),
        "route": result.route or route.summary,
        "size_bytes": size_bytes,
        "io": io,
        "delegation": result.delegation,
        "warnings": list(result.warnings) + notes,
        "export_seconds": round(seconds, 3),
        "tools": result.tools,
        **fields,
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
