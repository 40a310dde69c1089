"""The one round-trip harness every route test uses (after ExecuTorch's
`Tester.run_method_and_compare_outputs`): convert a model through a route, run the artifact with
edgeship's own runner over a data set, compare with the float reference with a tolerance set per
case.

    path, result = convert_into("torch", "pte", model, "int8", tmp, calib)   # file named for the case
    result = convert_to("keras", "tflite", model, "fp32", path)               # a path of your own
    convert = partial(convert_to, "keras", "onnx")                            # one route per test file
    outputs = run_all(path, ds)                                               # first output, stacked
    rt = round_trip("torch", "onnx", model, "fp32", tmp, ds, reference, Tolerance(max_abs=1e-4))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.convert import ConvertOptions, get_route
from edgeship.metrics import cosine, snr_db
from edgeship.quantize import get_recipe
from edgeship.runtime.base import RUNNER_MODULES, format_of

from conftest import top1

__all__ = ["Tolerance", "RoundTrip", "convert_into", "convert_to", "cosine", "round_trip", "row_cosines", "run_all",
           "snr_db", "top1"]


def convert_to(source: str, target: str, model, recipe: str, path: Path, calib=None, int8_io: bool = False,
               options: ConvertOptions | None = None):
    """Convert MODEL through the (source, target) route to PATH; the route's ConvertResult."""
    r = get_recipe(recipe)
    convert = get_route(source, target).load()
    return convert(model, r, calib if r.needs_calibration else None, Path(path),
                   options or ConvertOptions(int8_io=int8_io))


def convert_into(source: str, target: str, model, recipe: str, out_dir: Path, calib=None, int8_io: bool = False,
                 options: ConvertOptions | None = None):
    """(path, ConvertResult), the file named MODEL.RECIPE[.io].TARGET in OUT_DIR."""
    path = Path(out_dir) / f"{model.name}.{recipe}{'.io' if int8_io else ''}.{target}"
    return path, convert_to(source, target, model, recipe, path, calib, int8_io, options)


def runner_for(path: Path, signature=None, threads: int = 1):
    module = importlib.import_module(f"edgeship.runtime.standalone.{RUNNER_MODULES[format_of(str(path))]}")
    return module.Runner(str(path), signature=signature, threads=threads)


def run_all(artifact, ds, signature=None) -> np.ndarray:
    """The artifact's first output over every sample of DS, stacked. ARTIFACT: a path or a runner."""
    runner = runner_for(artifact, signature) if isinstance(artifact, (str, Path)) else artifact
    return np.concatenate([runner.run(sample)[0] for sample in ds.samples()])


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity per sample (row)."""
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@dataclass(frozen=True)
class Tolerance:
    """What a case must meet against the float reference; None skips that measure."""

    max_abs: float | None = None
    min_cosine: float | None = None
    min_snr_db: float | None = None
    max_top1_drop: float | None = None  # points, against the labels


@dataclass
class RoundTrip:
    path: Path
    result: object
    outputs: np.ndarray
    max_abs: float
    cosine: float
    snr_db: float
    top1_drop: float | None

    def check(self, tol: Tolerance) -> "RoundTrip":
        where = f"{self.path.name}: max abs {self.max_abs:.3g}, cosine {self.cosine:.5f}, SNR {self.snr_db:.1f} dB"
        if tol.max_abs is not None:
            assert self.max_abs <= tol.max_abs, where
        if tol.min_cosine is not None:
            assert self.cosine >= tol.min_cosine, where
        if tol.min_snr_db is not None:
            assert self.snr_db >= tol.min_snr_db, where
        if tol.max_top1_drop is not None and self.top1_drop is not None:
            assert self.top1_drop <= tol.max_top1_drop, f"{where}, top-1 drop {self.top1_drop:.2f} pts"
        return self


def round_trip(source: str, target: str, model, recipe: str, out_dir: Path, ds, reference: np.ndarray,
               tol: Tolerance = Tolerance(), calib=None, int8_io: bool = False) -> RoundTrip:
    """Convert, run over DS with edgeship's runner, compare with REFERENCE (the float model's first
    output over DS), assert TOL; returns the measures for further assertions."""
    path, result = convert_into(source, target, model, recipe, out_dir, calib, int8_io)
    out = run_all(path, ds)
    ref = np.asarray(reference, np.float32).reshape(out.shape)
    drop = None
    if ds.labels is not None and ref.ndim == 2:
        drop = top1(ref, ds.labels) - top1(out, ds.labels)
    rt = RoundTrip(path, result, out, float(np.abs(out - ref).max()), cosine(ref, out), snr_db(ref, out), drop)
    return rt.check(tol)
