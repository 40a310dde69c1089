"""`--quant auto --max-drop X --metric M`: the recipe search. Per target format, candidates in the
order of their expected speed:

  int8          full-integer int8 with the best activation calibration the route has
                (quantize/calibration.py's auto, or the --calibration method given)
  int8+float    int8 with the fewest layers kept float (quantize/accuracy_aware.py), at most
                MAX_FLOAT_SHARE of the model's layers (at least one): more than that is no longer
                an int8 model. Tried where the route can keep layers float and int8 missed the budget
  int16x8       where the format runs it (quantize/recipes.py's REFUSED says where not)
  fp16

Each candidate is converted, then run on the evaluation data (the golden samples) for its drop per
--metric (accuracy_aware.drop / task_drop, the accuracy-aware search's own measure) and timed
(LATENCY_WARMUP untimed runs, then LATENCY_RUNS timed ones, THREADS thread), both from one run of
the runner validate uses, in a child process with a timeout: on the host by default (LocalDevice:
the native runner for .pte, the Python agent for .tflite/.onnx), or on export's --device (the
host's agent, an emulated Pi, a Pi over SSH, a phone over adb; a device whose runner returns no
outputs, adb's benchmark_model, gives the p50 only, and the drop is measured here: the row says
so). A candidate that fails, crashes or hangs there is a row saying so and is never kept; the
export goes on.

Which one is kept, within budget (select()): the candidates have a fixed order of preference,
ORDER = int8 < int8+float < int16x8 < fp16 (smallest, most integer first). A candidate is
measurably faster than another only when all three hold: its p50 is at least MIN_GAIN (10%)
lower, at least TIE_MS (0.01 ms) lower, and a one-sided Mann-Whitney U test on the two candidates'
per-run latencies gives p < ALPHA (0.01). Anything less is a tie: timing jitter on a shared host
is a few % and moves a raw p50 either way. The kept candidate is the first in ORDER that no other
candidate within budget is measurably faster than, so load noise cannot flip the choice, and a
re-export keeps the same recipe (and, the conversions being deterministic, the same bytes). The
manifest row of each candidate says why: kept (first in order, ties with ...; or faster than ...
with p=...), slower than ... (p=...), or tied with the kept one and later in the order.
When no candidate meets the budget, the one with the smallest drop is kept and the export exits 1.

The kept artifact is written under its recipe's usual name (<name>.<recipe>.<format>), so
validate applies that recipe's tolerances; the other candidates are converted in a temporary
folder and never reach the bundle. The manifest's artifact record holds the whole table
(`recipe_search`, records.py's RecipeSearchRecord).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeship import task_metrics
from edgeship.convert.tflite_common import quiet_native_output
from edgeship.errors import CheckFailed, DeviceError, InputError, UnsupportedError, error_line
from edgeship.quantize import accuracy_aware, calibration
from edgeship.quantize.rankers import ranker_for
from edgeship.quantize.recipes import Recipe, get_recipe, refusal
from edgeship.runtime.local import LocalDevice
from edgeship.runtime.standalone import executorch as pte_runner
from edgeship.runtime.standalone import onnx as onnx_runner
from edgeship.runtime.standalone import tflite as tflite_runner
from edgeship.runtime.standalone.timing import measure

AUTO = "auto"
# The placeholder recipe export carries for --quant auto until the search picks a real one; it
# needs calibration data (its int8 candidates do).
AUTO_RECIPE = Recipe(AUTO, "recipe search under --max-drop", True, 0.0, 0.0)
MAX_FLOAT_SHARE = 0.10
ORDER = ("int8", "int8+float", "int16x8", "fp16")  # the preference that breaks ties: smallest, most integer first
MIN_GAIN = 0.10  # measurably faster: a p50 at least 10% lower ...
TIE_MS = 0.01  # ... and at least 10 us lower (on a host, the runner's own per-call noise) ...
ALPHA = 0.01  # ... and a one-sided Mann-Whitney U test on the per-run latencies below this
THREADS = 1
LATENCY_WARMUP = 5
LATENCY_RUNS = 30
LATENCY_SAMPLES = 8
HOST = "host (this machine: the runner validate uses, in a child process)"
HOST_TIMEOUT_S = 300.0  # one candidate's run on this host: all golden samples, warm-up and timed runs
DEVICE_TIMEOUT_S = 900.0  # ... on a device


def requested(recipes_text: str) -> bool:
    """Whether --quant asks for the search; 'auto' mixed with recipe names is an error."""
    names = [n.strip() for n in recipes_text.split(",") if n.strip()]
    if AUTO not in names:
        return False
    if len(names) > 1:
        raise InputError(f"--quant auto searches the recipes itself and takes no others, got '{recipes_text}'",
                         hint="pass --quant auto alone, or list recipes without auto")
    return True


def check_flags(req) -> None:
    """--quant auto's own flags, checked before any model loads."""
    if req.max_drop is None:
        raise InputError("--quant auto needs --max-drop: the search keeps the fastest recipe within that budget",
                         hint="pass e.g. --quant auto --max-drop 1 --metric cosine (and --eval DATA)")
    if req.max_drop < 0:
        raise InputError(f"--max-drop must be 0 or more, got {req.max_drop:g}")
    if not req.eval:
        raise InputError("--quant auto needs evaluation data to measure each candidate on",
                         hint="pass --eval DATA (e.g. --eval digits:test)")
    if req.int8_io:
        raise UnsupportedError("--quant auto and --int8-io cannot be combined yet", hint="drop --int8-io")
    if req.weight_rounding != "nearest":
        raise UnsupportedError("--quant auto and --weight-rounding cannot be combined yet",
                               hint="drop --weight-rounding")
    accuracy_aware.check_metric(req.metric)


def check_request(req, model, routes) -> None:
    """With the model loaded: the calibration method on every route, a user metric's module."""
    if req.calibration and req.calibration != "auto":
        for route in routes:
            calibration.check_method(req.calibration, route.source, route.target)
    if req.metric not in accuracy_aware.METRICS:
        task_metrics.resolve(req.metric)


def max_float_layers(n_layers: int) -> int:
    return max(1, math.floor(MAX_FLOAT_SHARE * n_layers))


@dataclass
class Candidate:
    candidate: str
    recipe: str
    calibration: str | None = None
    float_layers: tuple[str, ...] = ()
    drop: float | None = None  # None: not measured (skipped) or not finite (NaN/Inf outputs)
    p50_ms: float | None = None
    samples_ms: list[float] | None = None  # the per-run latencies behind p50_ms (the test's data)
    size_bytes: int | None = None
    reason: str = ""
    note: str = ""  # said after the reason (where the drop was measured, when not on the device)
    path: Path | None = None
    result: object = None
    accuracy_aware: dict | None = None
    p_value: float | None = None  # the Mann-Whitney p of this row's comparison in its reason

    @classmethod
    def from_row(cls, row: dict) -> "Candidate":
        """A manifest row back as a measured (or not) candidate, to re-run select() on its figures."""
        measured = row["p50_ms"] is not None
        return cls(row["candidate"], row["recipe"], row.get("calibration"), tuple(row.get("float_layers") or ()),
                   drop=row["drop"], p50_ms=row["p50_ms"], samples_ms=row.get("samples_ms"),
                   size_bytes=row.get("size_bytes"), path=Path(row["candidate"]) if measured else None)

    @property
    def measured(self) -> bool:
        return self.path is not None

    def within(self, budget: float) -> bool:
        return self.drop is not None and self.drop <= budget + 1e-9

    def row(self, budget: float, kept: bool) -> dict:
        return {"candidate": self.candidate, "recipe": self.recipe, "calibration": self.calibration,
                "float_layers": list(self.float_layers),
                "drop": None if self.drop is None else round(float(self.drop), 6),
                "p50_ms": None if self.p50_ms is None else round(float(self.p50_ms), 5),
                "samples_ms": None if self.samples_ms is None else [round(float(v), 5) for v in self.samples_ms],
                "p_value": None if self.p_value is None else float(f"{self.p_value:.3g}"),
                "size_bytes": self.size_bytes, "within_budget": self.within(budget), "kept": kept,
                "reason": "; ".join(r for r in (self.reason, self.note) if r)}


def select(candidates: list[Candidate], budget: float) -> tuple[Candidate, bool]:
    """(the kept candidate, budget met). Within budget: the first in ORDER that no other candidate
    within budget is measurably faster than (faster()); p50s no test separates are a tie, and the
    order breaks it. None within: the smallest drop (then ORDER)."""
    measured = [c for c in candidates if c.measured]
    if not measured:
        raise UnsupportedError("the recipe search converted no candidate")
    within = sorted((c for c in measured if c.within(budget)), key=rank)
    if within:
        return next(c for c in within if not any(faster(o, c)[0] for o in within if o is not c)), True
    return min(measured, key=lambda c: (math.inf if c.drop is None else c.drop, rank(c))), False


def rank(c: Candidate) -> int:
    return ORDER.index(c.candidate) if c.candidate in ORDER else len(ORDER)


def faster(a: Candidate, b: Candidate) -> tuple[bool, float | None]:
    """(A is measurably faster than B, the Mann-Whitney p). Measurably: A's p50 at least MIN_GAIN and
    TIE_MS lower, and, where both carry their per-run latencies, a one-sided Mann-Whitney U test
    (A's runs shorter) at p < ALPHA. Without the runs (a device that reports the p50 only) the two
    margins alone decide, and p is None."""
    gain = b.p50_ms - a.p50_ms
    if gain < MIN_GAIN * b.p50_ms or gain < TIE_MS:
        return False, _p(a, b)
    p = _p(a, b)
    return (p is None or p < ALPHA), p


def _p(a: Candidate, b: Candidate) -> float | None:
    if not a.samples_ms or not b.samples_ms or len(a.samples_ms) < 3 or len(b.samples_ms) < 3:
        return None
    from scipy.stats import mannwhitneyu  # scipy: scikit-learn's dependency, imported on use

    return float(mannwhitneyu(a.samples_ms, b.samples_ms, alternative="less").pvalue)


@dataclass
class Found:
    """What the search keeps for one format."""

    result: object  # ConvertResult of the kept candidate
    recipe: Recipe
    path: Path  # where the kept artifact was written
    record: dict  # manifest: the artifact's recipe_search
    accuracy_aware: dict | None = None  # when the kept candidate keeps layers float
    met: bool = True


@dataclass
class Search:
    """The recipe search of one export: the same data, metric and budget for every format."""

    calib: object
    golden: object
    metric: str
    budget: float
    calibration: str | None  # None or 'auto': the best of the route's methods
    options: object
    log: object = print
    device: object = None  # a runtime Device (export --device): drop and p50 measured there; None: LocalDevice
    _task: object = field(default=None, repr=False)
    _layers: dict = field(default_factory=dict, repr=False)  # (source, target) -> layers the ranker names
    # for tests: called with each converted candidate before it is measured (to damage its artifact)
    before_measure: ClassVar[Callable[[Candidate], None] | None] = None

    def __post_init__(self):
        if self.metric not in accuracy_aware.METRICS:
            self._task = task_metrics.resolve(self.metric)

    @property
    def measured_on(self) -> str:
        if self.device is None:
            return HOST
        if self.device.emulated:
            return f"{self.device.uri} (emulated under qemu: its p50 is not the board's)"
        return self.device.uri

    def run(self, route, convert, model, out_path_for) -> Found:
        """Every candidate for ROUTE, measured; the kept one written to out_path_for(recipe name)."""
        feeds = calibration.samples_of(self.golden.inputs)
        candidates: list[Candidate] = []
        with tempfile.TemporaryDirectory(prefix="edgeship-search-") as tmp:
            tmp = Path(tmp)
            int8 = self._guard(Candidate("int8", "int8", self.calibration),
                               lambda: self._int8(route, convert, model, tmp, feeds))
            candidates.append(int8)
            candidates.append(self._guard(Candidate("int8+float", "int8", int8.calibration),
                                          lambda: self._int8_float(route, convert, model, tmp, feeds, int8)))
            method = int8.calibration if int8.calibration != "auto" else None
            if "int16x8" in route.recipes:
                candidates.append(self._guard(Candidate("int16x8", "int16x8", method),
                                              lambda: self._plain(route, convert, model, "int16x8", tmp, feeds, method)))
            else:
                why = refusal("int16x8", route.target, route.source) or f"{route.summary} has no int16x8"
                candidates.append(Candidate("int16x8", "int16x8", reason=f"refused: {why}"))
            candidates.append(self._guard(Candidate("fp16", "fp16"),
                                          lambda: self._plain(route, convert, model, "fp16", tmp, feeds, None)))
            kept, met = select(candidates, self.budget)
            for c in candidates:
                if c is not kept and c.measured and not c.reason:
                    c.reason = self._why_not(c, kept, candidates)
            kept.reason = self._why_kept(kept, met, candidates)
            out_path = Path(out_path_for(kept.recipe))
            out_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept.path, out_path)
        record = {
            "metric": self.metric, "budget": self.budget, "met": met, "kept": kept.candidate,
            "measured_on": self.measured_on, "device": None if self.device is None else self.device.uri,
            "emulated": bool(self.device is not None and self.device.emulated), "threads": THREADS,
            "warmup": LATENCY_WARMUP, "runs": LATENCY_RUNS, "tie": MIN_GAIN, "tie_ms": TIE_MS, "alpha": ALPHA,
            "order": list(ORDER),
            "max_float_layers": self._cap(route, model),
            "candidates": [c.row(self.budget, c is kept) for c in candidates],
        }
        for c in candidates:
            self.log(f"  recipe search: {c.candidate}: " + (
                f"{self.metric} drop {_num(c.drop)}, p50 {_num(c.p50_ms)} ms, {c.size_bytes} bytes"
                if c.measured else c.reason) + (" [kept]" if c is kept else ""))
        return Found(kept.result, get_recipe(kept.recipe), out_path, record, kept.accuracy_aware, met)

    # -- the candidates ---------------------------------------------------------------------

    def _guard(self, placeholder: Candidate, make) -> Candidate:
        """A candidate that fails to convert, load or run is a row saying so, not the end of the search."""
        try:
            return make()
        except (InputError, DeviceError):  # bad input, or the device went away: the export stops
            raise
        except Exception as e:
            if self.options.verbose:
                raise
            words = getattr(e, "message", None) or error_line(e, with_type=True)
            placeholder.reason = f"failed: {words}"
            placeholder.path = None
            return placeholder

    def _int8(self, route, convert, model, tmp: Path, feeds) -> Candidate:
        recipe = get_recipe("int8")
        path = tmp / f"int8{_suffix(route)}"
        method = self.calibration or "auto"
        result, choice = calibration.calibrate(convert, route, model, recipe, self.calib, self.golden.inputs,
                                               self.golden.outputs, path, self.options, method,
                                               "the evaluation data", self.log)
        c = Candidate("int8", "int8", choice.method, path=path, result=result)
        return self.measure(c, route, feeds)

    def _int8_float(self, route, convert, model, tmp: Path, feeds, int8: Candidate) -> Candidate:
        method = int8.calibration if int8.measured else (None if self.calibration in (None, "auto") else self.calibration)
        c = Candidate("int8+float", "int8", method)
        if not accuracy_aware.supported(route.source, route.target, model.kind):
            c.reason = f"skipped: {route.summary} cannot keep layers float (accuracy-aware int8 is not available there)"
            return c
        if int8.within(self.budget):
            c.reason = "skipped: int8 is within budget already, no layer needs float"
            return c
        path = tmp / f"int8-float{_suffix(route)}"
        cap = self._cap(route, model)
        options = replace(self.options, calibration=method)
        result, record, _ = accuracy_aware.search(route, convert, model, get_recipe("int8"), self.calib, self.golden,
                                                  path, options, self.metric, self.budget, log=self.log,
                                                  max_float=cap)
        if not record["kept_float"]:
            c.reason = "skipped: no layer kept float lowered the drop (the same artifact as int8)"
            return c
        c.float_layers, c.path, c.result, c.accuracy_aware = tuple(record["kept_float"]), path, result, record
        return self.measure(c, route, feeds)

    def _plain(self, route, convert, model, name: str, tmp: Path, feeds, method: str | None) -> Candidate:
        recipe = get_recipe(name)
        path = tmp / f"{name}{_suffix(route)}"
        options = replace(self.options, calibration=method if recipe.needs_calibration else None, float_layers=())
        result = convert(model, recipe, self.calib if recipe.needs_calibration else None, path, options)
        c = Candidate(name, name, method if recipe.needs_calibration else None, path=path, result=result)
        return self.measure(c, route, feeds)

    def _cap(self, route, model) -> int | None:
        if not accuracy_aware.supported(route.source, route.target, model.kind):
            return None
        key = (route.source, route.target)
        if key not in self._layers:
            ranker = ranker_for(model, route.target, self.calib, [], self.options.verbose,
                                               fp32=lambda: b"")
            self._layers[key] = len(ranker.layers())
        return max_float_layers(self._layers[key])

    # -- measuring --------------------------------------------------------------------------

    def measure(self, c: Candidate, route, feeds) -> Candidate:
        if self.before_measure is not None:
            type(self).before_measure(c)
        c.size_bytes = c.path.stat().st_size
        outputs = self._run(c, route, feeds)
        if outputs is None:
            return c
        if not all(np.isfinite(o).all() for o in outputs if o.dtype.kind == "f"):
            c.reason = "outputs hold NaN or Inf"
            return c
        if self._task is not None:
            d = accuracy_aware.task_drop(self._task, self.golden, outputs)
        else:
            d = accuracy_aware.drop(self.metric, self.golden.outputs[0], outputs[0], self.golden.labels)
        c.drop = float(d) if np.isfinite(d) else None
        if c.drop is None:
            c.reason = f"its {self.metric} is not finite"
        return c

    def _run(self, c: Candidate, route, feeds) -> list | None:
        """The candidate's outputs on the golden inputs, its p50 and per-run latencies, all from one
        run in a child process (export's --device, else this host's LocalDevice: the runner
        validate uses); None (the candidate made unkeepable, its row saying why) when it failed,
        crashed or hung there."""
        here = self.device is None
        device, timeout = (LocalDevice(), HOST_TIMEOUT_S) if here else (self.device, DEVICE_TIMEOUT_S)
        where = "this host" if here else self.device.uri
        run = device.run_artifact(c.path, list(self.golden.inputs), None, threads=THREADS, warmup=LATENCY_WARMUP,
                                  runs=LATENCY_RUNS, timeout=timeout, verbose=self.options.verbose)
        latency = (run.result or {}).get("latency") or {}
        if not run.ok or latency.get("p50_ms") is None:
            c.reason = f"failed on {where}: {run.error or 'no latency measured'}"
            c.path = None  # not measured: select() never keeps it
            return None
        c.p50_ms = float(latency["p50_ms"])
        c.samples_ms = [float(v) for v in latency.get("samples_ms") or []] or None
        if run.outputs is not None:
            return run.outputs
        c.note = f"drop measured on this host: {where}'s runner returns no outputs"
        return calibration.run_artifact(c.path, route.target, feeds)

    def _why_not(self, c: Candidate, kept: Candidate, candidates: list[Candidate]) -> str:
        if not c.within(self.budget):
            return f"over budget ({self.metric} drop {_num(c.drop)} > {self.budget:g})"
        beats, p = faster(kept, c)
        if not beats:  # not slower than the kept one: then something else beats it, or a tie lost on order
            by = next((o for o in sorted(candidates, key=rank) if o is not c and o.measured and
                       o.within(self.budget) and faster(o, c)[0]), None)
            if by is None or rank(c) > rank(kept):
                c.p_value = p
                return (f"tied with {kept.candidate} (p50 {_num(c.p50_ms)} vs {_num(kept.p50_ms)} ms, {_test(p)}), "
                        f"later in the order {' < '.join(ORDER)}")
            kept, p = by, faster(by, c)[1]
        c.p_value = p
        return f"slower than {kept.candidate} (p50 {_num(c.p50_ms)} vs {_num(kept.p50_ms)} ms, {_test(p)})"

    def _why_kept(self, kept: Candidate, met: bool, candidates: list[Candidate]) -> str:
        if not met:
            return f"BUDGET MISSED: no candidate within {self.budget:g}; the smallest drop is kept"
        others = [c for c in candidates if c is not kept and c.measured and c.within(self.budget)]
        verdicts = {id(c): faster(kept, c) for c in others}
        beaten = [c for c in others if verdicts[id(c)][0]]
        tied = [c for c in others if not verdicts[id(c)][0] and rank(c) > rank(kept)]
        said = ["within budget"]
        if beaten:
            said.append("faster than " + ", ".join(f"{c.candidate} (p50 {_num(c.p50_ms)} ms, "
                                                   f"{_test(verdicts[id(c)][1])})" for c in beaten))
        if tied:
            said.append("tied with " + ", ".join(f"{c.candidate} (p50 {_num(c.p50_ms)} ms, "
                                                 f"{_test(verdicts[id(c)][1])})" for c in tied)
                        + f" and first in the order {' < '.join(ORDER)}")
        if any(rank(c) < rank(kept) for c in others):
            said.append("each earlier one within budget is measurably slower than another")
        return "; ".join(said)


def p50(path: Path, target: str, feeds) -> float:
    """The artifact's p50 latency (ms) on this host: THREADS thread(s), warm-up, then timed runs."""
    module = {"tflite": tflite_runner, "pte": pte_runner}.get(target, onnx_runner)
    with quiet_native_output():
        runner = module.Runner(str(path), None, threads=THREADS)
    samples = [[np.ascontiguousarray(x) for x in s] for s in feeds[:LATENCY_SAMPLES]]
    return float(measure(runner.run, samples, warmup=LATENCY_WARMUP, runs=LATENCY_RUNS)["p50_ms"])


def _test(p: float | None) -> str:
    said = "no per-run latencies: p50 margins only" if p is None else f"Mann-Whitney p={p:.2g}"
    return f"{said}; a tie unless {MIN_GAIN:.0%} and {TIE_MS:g} ms faster at p < {ALPHA:g}"


def _suffix(route) -> str:
    return f".{route.target}"


def _num(v) -> str:
    return "—" if v is None else f"{v:.4g}"


def missed(manifest: dict) -> list[dict]:
    return [a for a in manifest.get("artifacts", []) if a.get("recipe_search") and not a["recipe_search"]["met"]]


def raise_if_missed(manifest: dict, bundle) -> None:
    """Exit 1 (CheckFailed) when a format's search met no candidate within its budget."""
    bad = missed(manifest)
    if not bad:
        return
    a = bad[0]
    rs = a["recipe_search"]
    kept = next(c for c in rs["candidates"] if c["kept"])
    others = f" (and {len(bad) - 1} more format(s))" if len(bad) > 1 else ""
    raise CheckFailed(
        f"{a['path']}: no recipe meets the {rs['metric']} drop budget {rs['budget']:g}{others}; the best candidate, "
        f"{kept['candidate']} ({rs['metric']} drop {_num(kept['drop'])}), is kept in {bundle}",
        hint="raise --max-drop, calibrate on more representative data, or export --quant fp32",
    )
