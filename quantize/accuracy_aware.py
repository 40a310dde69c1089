"""Accuracy-aware int8: quantize fully, and while the drop on the evaluation data is over budget,
keep the layer that adds the most error (quantize/layer_error.py) in float and re-export.

The drop, per --metric, against the float reference's outputs on the evaluation data:
  top1    accuracy points lost (labels); without labels, % of samples whose top-1 changed
  cosine  (1 - mean cosine) x 100
  snr     noise power as % of the output's signal power: 100 x 10^(-SNR/10)
so `--max-drop 1.0` means "lose at most 1%" for each. Any other --metric is a task metric or the
user's own (edgeship/task_metrics.py: top5, map50, map50_95, miou, psnr, module.py:fn), scored on
all of the artifact's outputs against the labels: the drop is the float model's score minus the
artifact's, in the metric's unit. When the budget is met, layers kept earlier
that are no longer needed are tried back in int8 (fewest layers kept). If nothing is left to
keep and the budget is still missed, the best artifact found is written and the search says so.

Routes: torch -> .pte and torch -> .tflite (the route's PT2E quantizer, XNNPACKQuantizer or
litert-torch's, with the float layers skipped by a node filter; ranked on the PT2E graph simulated
on the host), torch -> .onnx (onnxruntime's quantize_static with the layers' nodes excluded, found
by the exporter's module scopes; ranked as for .pte), Keras -> .pte (the same, in the route's torch-backend child process, where each Keras
layer runs under a torch module of its own name) and Keras -> .tflite (TF's quantization debugger
with denylisted nodes; ranked on the int8 vs fp32 .tflite's intermediate tensors).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeship import task_metrics
from edgeship.console import console
from edgeship.errors import CheckFailed, InputError, UnsupportedError, suggest
from edgeship.metrics import cosine, snr_db
from edgeship.quantize.rankers import fp32_twin, ranker_for
from edgeship.runtime import measure as run_path

METRICS = ("top1", "cosine", "snr")
SUPPORTED = {("torch", "pte"), ("torch", "tflite"), ("torch", "onnx"), ("keras", "tflite"), ("keras", "pte"),
             ("keras", "onnx")}
RANK_SAMPLES = 64  # samples the per-layer ranking runs over
LATENCY_RUNS = 50


def check_supported(framework: str, target: str, kind: str, metric: str) -> None:
    check_metric(metric)
    if not supported(framework, target, kind):
        raise UnsupportedError(
            f"accuracy-aware int8 (--max-drop) is not available on {framework} -> {target}"
            + (" from a SavedModel" if kind == "savedmodel" else ""),
            hint="it runs on torch models and Keras (.keras/.h5) models, to pte, tflite and onnx; pass --to "
                 "accordingly",
        )


def supported(framework: str, target: str, kind: str) -> bool:
    """Whether the route can keep layers in float (and rank them)."""
    return (framework, target) in SUPPORTED and kind != "savedmodel"


def check_metric(metric: str) -> None:
    """--metric names top1, cosine, snr, a task metric or module.py:fn."""
    if metric not in METRICS:
        try:
            task_metrics.check_spec(metric)
        except InputError:
            known = tuple(dict.fromkeys(METRICS + task_metrics.NAMES))
            raise InputError(suggest(metric.partition("@")[0], known, "metric"),
                             hint="pass --metric top1, cosine, snr, a task metric or module.py:fn") from None


def drop(metric: str, reference: np.ndarray, outputs: np.ndarray, labels) -> float:
    outputs = outputs.reshape(reference.shape)
    if metric == "top1":
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            return float(((reference.argmax(-1) == labels).mean() - (outputs.argmax(-1) == labels).mean()) * 100)
        return float((reference.argmax(-1) != outputs.argmax(-1)).mean() * 100)
    if metric == "cosine":
        return (1.0 - cosine(reference, outputs)) * 100
    snr = snr_db(reference, outputs)
    return 0.0 if not np.isfinite(snr) else float(100 * 10 ** (-snr / 10))


@dataclass
class Attempt:
    kept: tuple[str, ...]
    drop: float
    path: Path
    result: object  # ConvertResult


@dataclass
class Search:
    """One accuracy-aware export: what was tried and what it ended with."""

    metric: str
    budget: float
    attempts: list[Attempt] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)  # the first (fully int8) ranking

    @property
    def best(self) -> Attempt:
        within = [a for a in self.attempts if a.drop <= self.budget + 1e-9]
        if within:
            return min(within, key=lambda a: (len(a.kept), a.drop))
        return min(self.attempts, key=lambda a: (a.drop, len(a.kept)))

    @property
    def met(self) -> bool:
        return self.best.drop <= self.budget + 1e-9


def search(route, convert, model, recipe, calib, golden, out_path: Path, options, metric: str,
           budget: float, log=print, max_float: int | None = None) -> tuple[object, dict, bool]:
    """Run the search for one (route, int8); write the chosen artifact to out_path. MAX_FLOAT caps
    the layers kept in float (None: every layer may be).
    Returns (ConvertResult, manifest record 'accuracy_aware', budget met)."""
    check_supported(route.source, route.target, model.kind, metric)
    inputs = [list(s) for s in zip(*[np.split(a, len(a)) for a in golden.inputs])]
    feeds = inputs[:RANK_SAMPLES]
    ranker = ranker_for(model, route.target, calib, feeds, options.verbose,
                        fp32=lambda: fp32_twin(model, convert, options, route.target))
    s = Search(metric, budget)
    task = None if metric in METRICS else task_metrics.resolve(metric)
    with tempfile.TemporaryDirectory(prefix="edgeship-aa-") as tmp:
        tmp = Path(tmp)

        def attempt(kept: tuple[str, ...]) -> Attempt:
            path = tmp / f"{len(s.attempts)}{out_path.suffix}"
            result = convert(model, recipe, calib, path, replace(options, float_layers=kept))
            outputs = _run(path, route.target, inputs)
            a = Attempt(kept, task_drop(task, golden, outputs) if task else
                        drop(metric, golden.outputs[0], outputs[0], golden.labels), path, result)
            s.attempts.append(a)
            log(f"  accuracy-aware: float layers: {', '.join(kept) or 'none'} -> {metric} drop {a.drop:.3f} "
                f"(budget {budget:g})")
            return a

        current = attempt(())
        candidates = ranker.layers()
        while current.drop > budget + 1e-9 and (max_float is None or len(current.kept) < max_float):
            rows = ranker.rank(current.kept, current.path)
            if not s.ranking:
                s.ranking = [r.to_dict() for r in rows]
            left = [r.name for r in rows if r.name not in current.kept]
            if not left:
                break
            current = attempt(current.kept + (left[0],))
        if s.met and len(s.best.kept) > 1:  # fewest layers: drop the ones no longer needed
            kept = s.best.kept
            for name in kept[:-1]:
                trial = tuple(k for k in kept if k != name)
                if attempt(trial).drop <= budget + 1e-9:
                    kept = trial
        best, full = s.best, s.attempts[0]
        shutil.copyfile(best.path, out_path)
        size_cost = best.path.stat().st_size - full.path.stat().st_size
        latency_cost = _latency(best.path, route.target, inputs) - _latency(full.path, route.target, inputs)
    record = {
        "metric": metric,
        "budget": budget,
        "met": s.met,
        "drop_before": round(full.drop, 4),
        "drop_after": round(best.drop, 4),
        "kept_float": list(best.kept),
        "iterations": len(s.attempts),
        "size_cost_bytes": int(size_cost),
        "latency_cost_ms": round(float(latency_cost), 4),
        "candidates": candidates,
        "ranking": s.ranking[:10],
    }
    return best.result, record, s.met


def _run(path: Path, target: str, inputs: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Every output of the artifact over the samples, batched, from validate's runner in a child."""
    return run_path.outputs(path, run_path.as_arrays(inputs))


def task_drop(task, golden, outputs: list[np.ndarray]) -> float:
    """The float model's task score minus the artifact's (drop in the metric's unit)."""
    outputs = [o.reshape(r.shape) for o, r in zip(outputs, golden.outputs)]
    rec = task_metrics.evaluate(task, outputs, golden.outputs, golden.labels)
    if rec["drop"] is None:
        raise InputError(f"--metric {task.name} has no float score to drop from without labels",
                         hint="give --eval data with labels, or use --metric cosine or snr")
    return float(rec["drop"])


def _latency(path: Path, target: str, inputs) -> float:
    return run_path.p50_ms(path, run_path.as_arrays(inputs[:8]), warmup=5, runs=LATENCY_RUNS)[0]


def check_request(req, model, routes, recipes) -> None:
    """Before anything converts: a budget, eval data, int8 among the recipes, supported routes."""
    if req.max_drop < 0:
        raise InputError(f"--max-drop must be 0 or more, got {req.max_drop:g}")
    if "int8" not in [r.name for r in recipes]:
        raise InputError("--max-drop applies to the int8 recipe, and --quant has no int8",
                         hint="pass --quant int8 (or e.g. fp32,int8)")
    if not req.eval:
        raise InputError("--max-drop needs evaluation data to measure the drop on",
                         hint="pass --eval DATA (e.g. --eval digits:test)")
    if req.int8_io:
        raise UnsupportedError("--max-drop and --int8-io cannot be combined yet", hint="drop --int8-io")
    for route in routes:
        check_supported(route.source, route.target, model.kind, req.metric)
    if req.metric not in METRICS:
        task_metrics.resolve(req.metric)  # a user metric's module loads now, not after the first export


def summary_lines(manifest: dict) -> list[str]:
    lines = []
    for a in manifest["artifacts"]:
        aa = a.get("accuracy_aware")
        if not aa:
            continue
        verdict = "within budget" if aa["met"] else "[red]BUDGET MISSED[/]"
        lines.append(
            f"{a['path']}: {aa['metric']} drop {aa['drop_before']:.4g} -> {aa['drop_after']:.4g} "
            f"(budget {aa['budget']:g}, {verdict}); kept float: {', '.join(aa['kept_float']) or 'none'}; "
            f"cost vs fully int8: {aa['size_cost_bytes']:+d} bytes, {aa['latency_cost_ms']:+.3f} ms p50; "
            f"{aa['iterations']} export(s)")
    return lines


def report_searches(manifest: dict, bundle) -> None:
    """Print what the accuracy-aware searches did; raise CheckFailed when a budget was missed."""
    for line in summary_lines(manifest):
        console().print(f"[bold]accuracy-aware[/] {line}", soft_wrap=True)
    missed = [a for a in manifest["artifacts"] if a.get("accuracy_aware") and not a["accuracy_aware"]["met"]]
    if missed:
        a = missed[0]
        aa = a["accuracy_aware"]
        raise CheckFailed(
            f"{a['path']}: the {aa['metric']} drop budget {aa['budget']:g} cannot be met: best drop "
            f"{aa['drop_after']:.3f} with {', '.join(aa['kept_float']) or 'no layer'} in float "
            f"(fully int8: {aa['drop_before']:.3f}); the best artifact is in {bundle}",
            hint="raise --max-drop, calibrate on more representative data, or use fp16/fp32",
        )
