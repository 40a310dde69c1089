"""The records that cross stages, typed: the bundle manifest (export -> validate, check, diff, a
device) and the validate record (validate -> check's gates, reports, --json, the Python API).

They are pydantic models, and every producer builds its record through them, so a misspelt key
or a wrong type is an error where the record is made, not a KeyError three stages later. On disk
and in JSON they stay what they were: `dump()` writes exactly the keys that were set (a record of
an artifact that could not run has no `accuracy` key, as before), with statuses as plain strings.
Readers of older bundles keep reading dicts; these models describe what edgeship writes now.

manifest.json (schema "edgeship.manifest/1"):
    schema, edgeship_version, created_unix, inputs_sha256 (what the bytes depend on)
    model        {name, framework, kind, source, source_path (null: a model held in memory),
                  source_sha256 (of the file, or of an in-memory model's weights), io,
                  loader {loader, object_loader_error}: only when a SavedModel was read through
                  TF's v1 loader because the object loader refused it (savedmodel_fallback.py)}
    calibration  null | {data, samples, sha256}
    golden       {path, samples, sha256, data, has_labels}
    reference    {device, batch, samples, seconds}: how the float reference ran
    tools        {package: version}
    artifacts    [ArtifactRecord]: path, sha256, format, recipe, int8_io, route, size_bytes,
                 io {inputs, outputs: [{name, shape, dtype, layout, quantization}]}, delegation,
                 warnings, export_seconds, tools, accuracy_aware (accuracy-aware int8 only), recipe_search
                 (--quant auto: metric, budget, met, kept, measured_on, candidates [SearchCandidate]), smoke
                 {status, sample, runtime, cosine, max_abs_error | error}
                 {status pass | below_floor | fail, samples, runtime, cosine, max_abs_error, accuracy, floors,
                 missed | error}, conversions (how many times the converter ran for it)
    conversions  the converter runs of the whole export
    timings      {total, stages {load, calibration data, golden reference, keep-float-ranges, rewrite
                 decisions, rewrite trials, conversions, smoke runs, other}, jobs (when formats converted
                 at once: export --jobs)}: seconds (edgeship/stage_clock.py)
    failed_artifacts  artifacts not shipped: a conversion that failed {path (not written), format, recipe,
                 stage "convert", route, error}, or an artifact that could not run {path (under failed/),
                 format, recipe, smoke, ...}

validate record (`edgeship validate --json`'s "artifacts", report.json's "results"):
    artifact, format, recipe, size_bytes, delegation, device, emulated, checks [{name, value,
    limit, op, passed, detail}], status (Status: pass | fail | error | ran), error,
    runtime, delegate, init_ms, first_ms, latency {runs, p50_ms, p90_ms, p99_ms, mean_ms, min_ms,
    max_ms, warmup, samples_ms}, peak_rss_mb, model_rss_mb, threads, platform,
    accuracy {accuracy, reference_accuracy, accuracy_drop, top1_agreement, cosine, snr_db,
    max_abs_error, outputs, task}, note (why the status is ran); check adds target (format:recipe).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from edgeship.status import Status


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    def dump(self) -> dict:
        """The record as edgeship writes it: the keys that were set, nothing added."""
        return self.model_dump(exclude_unset=True)


class SearchCandidate(Record):
    """One row of --quant auto's search table (quantize/recipe_search.py)."""

    candidate: str  # int8 | int8+float | int16x8 | fp16
    recipe: str
    calibration: str | None  # the activation-range method of int8/int16x8 candidates
    float_layers: list[str]
    drop: float | None  # --metric's drop on the evaluation data; null: not measured, or NaN/Inf outputs
    p50_ms: float | None  # where the search measured (measured_on: this host, or export's --device)
    samples_ms: list[float] | None = None  # the per-run latencies behind p50_ms (the tie test's data)
    p_value: float | None = None  # the one-sided Mann-Whitney p of the comparison the reason states
    size_bytes: int | None
    within_budget: bool
    kept: bool
    reason: str  # why kept, why not, or why skipped (refused, not needed)


class RecipeSearchRecord(Record):
    """--quant auto: the search table of one format and what it kept."""

    metric: str
    budget: float
    met: bool  # false: no candidate within budget, the smallest drop kept (export exits 1, validate fails it)
    kept: str
    measured_on: str
    device: str | None = None  # export --device: the URI the candidates' drop and p50 were measured on
    emulated: bool = False  # that device is emulated (qemu): its p50 is not the board's
    threads: int
    warmup: int
    runs: int
    tie: float  # measurably faster: a p50 at least this fraction lower ...
    tie_ms: float  # ... and this many milliseconds lower ...
    alpha: float | None = None  # ... and a one-sided Mann-Whitney U test on the runs below this; else a tie
    order: list[str] | None = None  # the fixed preference that breaks a tie (quantize/recipe_search.py's ORDER)
    max_float_layers: int | None  # the int8+float candidate's cap; null where the route keeps none float
    candidates: list[SearchCandidate]


class ArtifactRecord(Record):
    path: str
    sha256: str
    format: str
    recipe: str
    int8_io: bool
    route: str
    size_bytes: int
    io: dict
    delegation: dict | None = None
    warnings: list[str] = []
    export_seconds: float
    tools: dict = {}
    accuracy_aware: dict | None = None
    smoke: dict | None = None  # the run on the golden samples before commit (edgeship/smoke.py): status, figures,
    # the floors it was judged by (gates/floors.py), what it missed, or its error
    conversions: int | None = None  # how many times the converter ran to make this artifact (rewrites, searches)
    calibration: dict | None = None  # --calibration: method, measured score, candidates (quantize/calibration.py)
    cle: dict | None = None  # --cle: cross-layer equalization applied, and the SNRs it was chosen on
    bias_correction: dict | None = None  # --bias-correction: layers corrected, shifts, and the SNRs it was chosen on
    weight_rounding: dict | None = None  # --weight-rounding: GPTQ layers, output error ratio, the SNRs it was chosen on
    recipe_search: RecipeSearchRecord | None = None  # --quant auto: the search table (quantize/recipe_search.py)
    # --keep-float-ranges: the layers int8 kept float because int8 could not hold their activations, and why
    # (quantize/ranges.py: mode, threshold, samples, kept_float, why [{name, op, layer, zeroed, ...}])
    float_ranges: dict | None = None


class ModelInfo(Record):
    name: str
    framework: str
    kind: str
    source: str
    source_path: str | None
    source_sha256: str | None
    io: dict
    loader: dict | None = None  # a SavedModel TF's object loader refused, read through its signature instead


class Manifest(Record):
    schema_: str
    edgeship_version: str
    created_unix: int
    inputs_sha256: str
    model: ModelInfo
    calibration: dict | None
    golden: dict
    reference: dict
    tools: dict[str, str]
    artifacts: list[ArtifactRecord]
    conversions: int | None = None  # converter runs of the whole export
    failed_artifacts: list[dict] | None = None  # not shipped: failed to convert, or to run (kept under failed/)
    timings: dict | None = None  # {total, stages {name: seconds}}: where the export's time went (stage_clock.py)

    def dump(self) -> dict:
        d = super().dump()
        return {"schema": d.pop("schema_"), **d}


class ValidateRecord(Record):
    artifact: str
    format: str | None
    recipe: str | None
    size_bytes: int | None
    delegation: dict | None
    device: str
    emulated: bool
    checks: list[dict]
    status: Status
    error: str | None = None
    runtime: str | None = None
    delegate: Any = None
    init_ms: float | None = None
    first_ms: float | None = None
    latency: dict | None = None
    peak_rss_mb: float | None = None
    model_rss_mb: float | None = None
    threads: int | None = None
    platform: Any = None
    accuracy: dict | None = None  # with "task" when a task metric was asked for (task_metrics.py)
    note: str | None = None  # why a record is "ran": what was not checked


def validate_record(**fields) -> dict:
    """A validate record, checked against ValidateRecord, as the dict every later stage reads."""
    return ValidateRecord(**fields).dump()


def manifest_record(**fields) -> dict:
    """manifest.json's content, checked against Manifest."""
    schema = fields.pop("schema")
    return Manifest(schema_=schema, **fields).dump()


def artifact_record(**fields) -> dict:
    return ArtifactRecord(**fields).dump()
