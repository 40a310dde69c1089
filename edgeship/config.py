"""The project file: `edgeship.toml`, or `[tool.edgeship]` in pyproject.toml.

Validated on load with pydantic: an unknown key gets a "did you mean" suggestion, a wrong type
says what was received, and every error names the file and the key (e.g. `gates.latency.p50_ms`).

    [model]    source, framework, name, trust_source, reference_device
    [data]     calib, eval, calib_samples, golden_samples
    targets    = [{format = "tflite", recipe = "int8", max_drop = {top1 = 1.0}}, ...]
    devices    = ["local"]
    [measure]  threads, warmup, runs, timeout, adb_runners
    [gates]    accuracy, latency (+ per device), size, memory, delegation (min share of ops in XNNPACK),
               regression (the baseline floors)
    [report]   dir, formats
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeship.convert import TARGETS
from edgeship.errors import InputError
from edgeship.quantize.recipes import RECIPE_NAMES
from edgeship.runtime.base import DEVICE_SCHEMES, SCHEME_NAMES
from edgeship.task_metrics import check_spec

ACCURACY_METRICS = ("top1", "agreement", "cosine")  # drop vs the float reference: points, points, 1-cos
REPORT_FORMATS = ("json", "junit", "markdown", "html")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class ModelSection(_Strict):
    source: str = Field(min_length=1)
    framework: Literal["torch", "keras"] | None = None
    name: str | None = None
    trust_source: bool = False
    reference_device: Literal["auto", "cpu", "cuda"] = "cpu"  # where the float reference runs


class DataSection(_Strict):
    calib: str | None = None
    eval: str | None = None
    calib_samples: int = Field(200, ge=1)
    golden_samples: int = Field(100, ge=1)


class Target(_Strict):
    format: Literal[TARGETS]  # convert/__init__.py's and quantize/recipes.py's tables, not copies
    recipe: Literal[RECIPE_NAMES]
    max_drop: dict[Literal["top1", "agreement", "cosine"], float] | None = None

    @field_validator("max_drop", mode="before")
    @classmethod
    def _number_is_top1(cls, v):
        return {"top1": v} if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @property
    def key(self) -> str:
        return f"{self.format}:{self.recipe}"


class Measure(_Strict):
    threads: int = Field(1, ge=1)
    warmup: int = Field(10, ge=0)
    runs: int = Field(100, ge=3)  # enough samples for the regression test to tell a shift from noise
    timeout: float = Field(600.0, gt=0)
    # adb devices: the native runners to push (benchmark_model, executor_runner), relative to this file
    adb_runners: list[str] = Field(default_factory=list)


class LatencyBudget(_Strict):
    p50_ms: float | None = Field(None, gt=0)
    p90_ms: float | None = Field(None, gt=0)


class LatencyGates(LatencyBudget):
    device: dict[str, LatencyBudget] = Field(default_factory=dict)  # per-device budgets override these

    def for_device(self, uri: str) -> LatencyBudget:
        own = self.device.get(uri)
        return LatencyBudget(p50_ms=(own and own.p50_ms) or self.p50_ms, p90_ms=(own and own.p90_ms) or self.p90_ms)


class AccuracyGates(_Strict):
    max_drop: dict[Literal["top1", "agreement", "cosine"], float] = Field(default_factory=dict)
    min_top1: float | None = Field(None, ge=0, le=100)  # absolute floor vs labels, percent
    # a task metric (top1, top5, map50, map50_95, miou, psnr, cosine; edgeship/task_metrics.py) or the
    # user's own module.py:fn (relative to this file), higher is better; its budget and floor:
    metric: str | None = None
    metric_drop: float | None = Field(None, ge=0)  # most it may fall below the float model's score
    min_metric: float | None = None  # absolute floor, in the metric's unit

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v):
        if v is not None:
            try:
                check_spec(v)
            except InputError as e:
                raise ValueError(e.message) from None
        return v


class SizeGates(_Strict):
    max_kb: float | None = Field(None, gt=0)


class MemoryGates(_Strict):
    max_peak_mb: float | None = Field(None, gt=0)


class DelegationGates(_Strict):
    min: float | None = Field(None, ge=0, le=1)  # share of a .pte's / .tflite's ops delegated to XNNPACK


class RegressionGates(_Strict):
    """A change against the baseline counts only when it clears BOTH floors (and, for latency,
    the one-sided statistical test at `confidence`)."""

    latency_rel: float = Field(0.20, ge=0)
    latency_abs_ms: float = Field(0.05, ge=0)
    confidence: float = Field(0.999, gt=0.5, lt=1)
    size_rel: float = Field(0.05, ge=0)
    size_abs_kb: float = Field(4.0, ge=0)
    memory_rel: float = Field(0.20, ge=0)
    memory_abs_mb: float = Field(32.0, ge=0)
    accuracy_abs: float = Field(1.0, ge=0)  # top-1 points vs labels


class Gates(_Strict):
    accuracy: AccuracyGates = Field(default_factory=AccuracyGates)
    latency: LatencyGates = Field(default_factory=LatencyGates)
    size: SizeGates = Field(default_factory=SizeGates)
    memory: MemoryGates = Field(default_factory=MemoryGates)
    delegation: DelegationGates = Field(default_factory=DelegationGates)
    regression: RegressionGates = Field(default_factory=RegressionGates)


class ReportSection(_Strict):
    dir: str | None = None  # default: beside the bundle
    formats: list[Literal["json", "junit", "markdown", "html"]] = Field(default_factory=lambda: list(REPORT_FORMATS))


class Project(_Strict):
    model: ModelSection
    data: DataSection = Field(default_factory=DataSection)
    targets: list[Target] = Field(min_length=1)
    devices: list[str] = Field(default_factory=lambda: ["local"], min_length=1)
    measure: Measure = Field(default_factory=Measure)
    gates: Gates = Field(default_factory=Gates)
    report: ReportSection = Field(default_factory=ReportSection)
    out: str = "edgeship-bundle"  # the bundle folder, relative to the config file
    baseline: str | None = None  # a previous check's report.json, relative to the config file

    @field_validator("devices")
    @classmethod
    def _device_uris(cls, v):
        for uri in v:
            scheme = uri.split(":", 1)[0]  # local, emu:rpi4, ssh://user@host
            if scheme not in SCHEME_NAMES:
                close = difflib.get_close_matches(scheme, SCHEME_NAMES, n=1, cutoff=0.5)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"unknown device '{uri}'.{hint} Devices: {', '.join(DEVICE_SCHEMES)}")
        return list(dict.fromkeys(v))

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, v):
        keys = [t.key for t in v]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"target {', '.join(dup)} is listed twice")
        return v


class LoadedConfig:
    """The validated project plus where it came from (paths in it are relative to `root`)."""

    def __init__(self, project: Project, path: Path):
        self.project = project
        self.path = path
        self.root = path.parent

    def resolve(self, rel: str | None) -> Path | None:
        if rel is None:
            return None
        p = Path(rel).expanduser()
        return p if p.is_absolute() else self.root / p

    def source(self) -> str:
        """The model source, its file part made relative to the config file."""
        return self._path_spec(self.project.model.source)

    def data(self, spec: str | None) -> str | None:
        """A data source: the built-in `digits` as given, file paths relative to the config file."""
        if spec is None or spec.split(":")[0] == "digits":
            return spec
        return self._path_spec(spec)

    def metric(self) -> str | None:
        """[gates.accuracy].metric with its module.py (or map50@decode.py:fn) relative to the config file."""
        spec = self.project.gates.accuracy.metric
        if spec is None or ".py:" not in spec:
            return spec
        name, at, param = spec.partition("@")
        return f"{name}@{self._path_spec(param)}" if at and ".py:" in param else self._path_spec(spec)

    def _path_spec(self, spec: str) -> str:
        if ".py:" in spec:  # module.py:fn
            file, _, fn = spec.rpartition(":")
            return f"{self.resolve(file)}:{fn}"
        return str(self.resolve(spec))


def _location(loc: tuple) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] | None = Project
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ()) or ()
        nested = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = nested[0] if nested else None
    return list(model.model_fields) if model else []


def _describe(err: dict) -> str:
    loc = _location(err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        allowed = _allowed_keys(err["loc"])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        msg = f"unknown key '{loc}'."
        if close:
            msg += f" Did you mean '{close[0]}'?"
        elif len(err["loc"]) > 1 and key in Project.model_fields:
            msg += f" '{key}' belongs at the top level: move it above the first [table] header."
        return msg + (f" Allowed here: {', '.join(allowed)}" if allowed else "")
    if err["type"] == "missing":
        return f"missing key '{loc}'"
    got = err.get("input")
    shown = f" (got {type(got).__name__} {got!r})" if not isinstance(got, dict) else ""
    return f"'{loc}': {err['msg'].removeprefix('Value error, ')}{shown}"


def parse_project(data: dict, path: Path) -> LoadedConfig:
    try:
        project = Project.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        lines = [_describe(err) for err in errors[:5]]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise InputError(f"{path}: " + "; ".join(lines) + more,
                         hint="see examples/edgeship.toml for every key") from None
    return LoadedConfig(project, path)


def find_config(start: Path | None = None) -> Path:
    start = Path(start or Path.cwd())
    for d in (start, *start.parents):
        if (d / "edgeship.toml").exists():
            return d / "edgeship.toml"
        py = d / "pyproject.toml"
        if py.exists() and "[tool.edgeship]" in py.read_text(errors="replace"):
            return py
    raise InputError(f"no edgeship.toml (nor [tool.edgeship] in a pyproject.toml) in {start} or above",
                     hint="pass the config file: edgeship check path/to/edgeship.toml")


def load_config(path: Path | None = None) -> LoadedConfig:
    path = Path(path) if path else find_config()
    if path.is_dir():
        path = find_config(path)
    if not path.exists():
        raise InputError(f"config file not found: '{path}'", hint="pass an edgeship.toml or a pyproject.toml")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("edgeship")
        if not isinstance(data, dict):
            raise InputError(f"{path}: no [tool.edgeship] table", hint="add one, or pass an edgeship.toml")
    return parse_project(data, path.resolve())
