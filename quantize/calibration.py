"""Activation ranges for int8 (and int16x8): which calibration method each route's own quantizer
uses, and `auto`, which measures every method the route has on held-out data and keeps the best.

Methods (--calibration):
  minmax      the observed minimum and maximum
  percentile  the 0.01% / 99.99% quantiles of the observed values (outliers clipped)
  mse         the range that minimises the quantization error's L2 norm over the histogram
  entropy     the range that minimises KL(float histogram || quantized histogram) (TensorRT's method)
  auto        each of the route's methods, measured on the evaluation data; the best SNR is kept

Where they are applied:
  torch -> .pte, Keras -> .pte, torch -> .tflite: the PT2E quantizer's activation QuantizationSpec
      (XNNPACKQuantizer's or litert-torch's) gets another observer: torchao's MinMaxObserver,
      HistogramObserver (its own L2 search: 'mse', both quantizers' default), or one of the two
      histogram observers below (percentile, entropy). Weights keep per-channel min-max.
  torch/Keras -> .onnx: onnxruntime's quantize_static `calibrate_method` (MinMax, Percentile,
      Entropy). onnxruntime has no MSE calibrator ('Distribution' is for float8), so mse is refused there.
  Keras -> .tflite: TFLiteConverter calibrates min-max only and has no option for anything else;
      the other methods are refused there with that reason.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeship.data import Dataset
from edgeship.errors import InputError, UnsupportedError, suggest
from edgeship.metrics import cosine, snr_db
from edgeship.reference import run as run_reference
from edgeship.runtime import measure as run_path

METHODS = ("minmax", "percentile", "mse", "entropy")
CHOICES = (*METHODS, "auto")
PERCENTILE = 99.99
PT2E_ROUTES = {("torch", "pte"), ("keras", "pte"), ("torch", "tflite")}
ORT_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
# onnxruntime's Entropy calibrator: a 2048-bin histogram (its default, 128, leaves the KL search a
# single window, the whole range), each candidate window quantized to int8's 256 codes
ORT_ENTROPY = {"num_bins": 2048, "num_quantized_bins": 256}


def route_methods(source: str, target: str) -> tuple[str, ...]:
    """The methods a route's quantizer can apply, its default first."""
    if (source, target) in PT2E_ROUTES:
        return ("mse", "minmax", "percentile", "entropy")
    if target == "onnx":
        return ("minmax", "percentile", "entropy")
    return ("minmax",)  # Keras -> .tflite


def default_method(source: str, target: str) -> str:
    return route_methods(source, target)[0]


def check_method(method: str, source: str, target: str) -> None:
    if method not in CHOICES:
        raise InputError(suggest(method, CHOICES, "calibration method"),
                         hint=f"pass --calibration with one of {', '.join(CHOICES)}")
    have = route_methods(source, target)
    if method != "auto" and method not in have:
        why = {
            "onnx": "onnxruntime's calibrators are MinMax, Percentile and Entropy (its 'Distribution' is for float8); "
                    "it has no MSE search",
            "tflite": "TFLiteConverter calibrates activation ranges by min-max only and exposes no other method",
        }[target]
        raise UnsupportedError(f"--calibration {method} is not available on {source} -> {target}: {why}",
                               hint=f"use one of {', '.join(have)} (or auto) there")


# ---------------------------------------------------------------------------------------------
# PT2E (torchao observers)


def pt2e_config(config, method: str | None):
    """A PT2E QuantizationConfig with its activation observer replaced per `method` (None: as is)."""
    if method is None:
        return config
    ctor = observer(method)
    changes = {}
    for name in ("input_activation", "output_activation"):
        spec = getattr(config, name)
        if spec is not None and not spec.is_dynamic:
            changes[name] = replace(spec, observer_or_fake_quant_ctr=ctor)
    return replace(config, **changes)


def observer(method: str):
    """The observer constructor for `method` (eps as the quantizers use: 2**-12)."""
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver

    eps = 2**-12
    classes = {"minmax": MinMaxObserver, "mse": HistogramObserver,
               "percentile": percentile_observer(), "entropy": entropy_observer()}
    return classes[method].with_args(eps=eps)


_CLASSES: dict[str, type] = {}


def percentile_observer():
    """HistogramObserver whose range is the PERCENTILE / (100 - PERCENTILE) quantiles of its histogram."""
    if "percentile" not in _CLASSES:
        from torchao.quantization.pt2e import HistogramObserver

        class PercentileObserver(HistogramObserver):
            def _non_linear_param_search(self):
                lo, hi = percentile_range(self.histogram.numpy(), float(self.min_val), float(self.max_val))
                import torch

                return torch.tensor(lo), torch.tensor(hi)

        _CLASSES["percentile"] = PercentileObserver
    return _CLASSES["percentile"]


def entropy_observer():
    """HistogramObserver whose range minimises the KL divergence of the quantized histogram."""
    if "entropy" not in _CLASSES:
        from torchao.quantization.pt2e import HistogramObserver

        class EntropyObserver(HistogramObserver):
            def _non_linear_param_search(self):
                levels = int(self.quant_max) - int(self.quant_min) + 1
                lo, hi = entropy_range(self.histogram.numpy(), float(self.min_val), float(self.max_val), levels)
                import torch

                return torch.tensor(lo), torch.tensor(hi)

        _CLASSES["entropy"] = EntropyObserver
    return _CLASSES["entropy"]


def percentile_range(hist: np.ndarray, lo: float, hi: float, pct: float = PERCENTILE) -> tuple[float, float]:
    """The (100-pct, pct) quantiles of a histogram over [lo, hi]; zero stays inside the range."""
    hist = np.asarray(hist, np.float64)
    total = hist.sum()
    if total <= 0 or hi <= lo:
        return lo, hi
    edges = np.linspace(lo, hi, len(hist) + 1)
    cdf = np.cumsum(hist) / total
    q = pct / 100.0
    low = edges[int(np.searchsorted(cdf, 1 - q, side="right"))]
    high = edges[min(int(np.searchsorted(cdf, q, side="left")) + 1, len(hist))]
    return min(float(low), 0.0) if lo < 0 else lo, max(float(high), 0.0)


def entropy_range(hist: np.ndarray, lo: float, hi: float, levels: int = 256, steps: int = 64) -> tuple[float, float]:
    """Shrink [lo, hi] toward zero by fractions f in (0, 1]; keep the f whose clipped-and-quantized
    histogram Q is closest to the clipped histogram P in KL(P || Q) (outliers folded into the edge
    bins, as TensorRT's entropy calibrator does). The bin holding 0 is levelled to its neighbour's
    count first, as TensorRT's calibrator does too: a ReLU's exact zeros pile up there, and left in,
    that one spike dominates the divergence and pulls the range in (a ReLU'd Gaussian: 1.77 sigma
    kept with the spike, clipping 8% of the positive values; its whole range, 4.7, without)."""
    hist = np.array(hist, np.float64)
    n = len(hist)
    if hist.sum() <= 0 or hi <= lo:
        return lo, hi
    width = (hi - lo) / n
    zero = int(np.clip(round(-lo / width), 0, n)) if lo < 0 else 0
    if lo <= 0.0 <= hi and n > 1:
        z = min(int((0.0 - lo) // width), n - 1)
        hist[z] = hist[z + 1] if z + 1 < n else hist[z - 1]
    best, best_kl = (lo, hi), np.inf
    for f in np.linspace(1.0 / steps, 1.0, steps):
        a = int(round(zero - f * zero))
        b = int(round(zero + f * (n - zero)))
        if b - a < levels // 2:
            continue
        p = hist[a:b].copy()
        p[0] += hist[:a].sum()
        p[-1] += hist[b:].sum()
        q = _quantized(hist[a:b], levels)
        kl = _kl(p, q)
        if kl < best_kl:
            best_kl, best = kl, (lo + a * width, lo + b * width)
    low, high = best
    return (min(low, 0.0) if lo < 0 else lo), max(high, 0.0)


def _quantized(p: np.ndarray, levels: int) -> np.ndarray:
    """Merge p's bins into `levels` groups and spread each group evenly over its nonzero bins."""
    q = np.zeros_like(p)
    groups = np.array_split(np.arange(len(p)), levels)
    for g in groups:
        if len(g) == 0:
            continue
        nonzero = p[g] > 0
        if nonzero.any():
            q[g[nonzero]] = p[g].sum() / nonzero.sum()
    return q


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    q = q / max(q.sum(), 1e-30)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


# ---------------------------------------------------------------------------------------------
# onnxruntime


def ort_calibration(method: str | None):
    """(CalibrationMethod, extra_options) for quantize_static; None: MinMax (the route's default)."""
    from onnxruntime.quantization import CalibrationMethod

    method = method or "minmax"
    if method not in ORT_METHODS:
        raise UnsupportedError(f"--calibration {method} is not available on .onnx (onnxruntime has "
                               f"{', '.join(ORT_METHODS)})")
    extra = {"CalibPercentile": PERCENTILE} if method == "percentile" else {}  # entropy: ORT_ENTROPY
    return getattr(CalibrationMethod, ORT_METHODS[method]), extra


# ---------------------------------------------------------------------------------------------
# Measuring, and auto


def split(ds: Dataset) -> tuple[Dataset, Dataset]:
    """One data set given for both: the first half calibrates, the second half measures."""
    half = len(ds) // 2
    labels = (None, None) if ds.labels is None else (ds.labels[:half], ds.labels[half:])
    first = Dataset(f"{ds.name} [first {half}]", [a[:half] for a in ds.arrays], ds.specs, labels[0], dict(ds.meta))
    second = Dataset(f"{ds.name} [last {len(ds) - half}]", [a[half:] for a in ds.arrays], ds.specs, labels[1],
                     dict(ds.meta))
    return first, second


def run_artifact(path: Path, target: str, inputs: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Every output of the artifact over `inputs` (samples of batch 1), concatenated per output, from
    the runner validate uses, in a child (runtime/measure.py); a crash is CandidateFailed. TARGET is
    kept for callers; the runner follows the file."""
    return run_path.outputs(path, run_path.as_arrays(inputs))


def score(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict:
    """SNR (dB) and cosine of the weakest output, and each output's SNR."""
    snrs = [snr_db(r, o.reshape(r.shape)) for r, o in zip(reference, outputs)]
    coss = [cosine(r, o.reshape(r.shape)) for r, o in zip(reference, outputs)]
    return {"snr_db": round(float(min(snrs)), 3), "cosine": round(float(min(coss)), 6),
            "snr_db_per_output": [round(float(s), 3) for s in snrs]}


def samples_of(arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
    return [[a[i : i + 1] for a in arrays] for i in range(len(arrays[0]))]


@dataclass
class Choice:
    method: str
    score: dict
    candidates: list[dict] = field(default_factory=list)
    measured_on: str = ""

    def record(self, requested: str) -> dict:
        return {"requested": requested, "method": self.method, "score": self.score,
                "measured_on": self.measured_on, "candidates": self.candidates}


def calibrate(convert, route, model, recipe, calib: Dataset, measure_inputs, measure_reference, out_path: Path,
              options, requested: str, measured_on: str, log=print):
    """Convert with `requested` (a method, or auto: each of the route's methods, best weakest-output
    SNR kept) and measure on (measure_inputs, measure_reference). Writes out_path.
    Returns (ConvertResult, Choice)."""
    import shutil

    methods = route_methods(route.source, route.target) if requested == "auto" else (requested,)
    feeds = samples_of(measure_inputs)
    tried = []
    with tempfile.TemporaryDirectory(prefix="edgeship-calib-") as tmp:
        for method in methods:
            path = Path(tmp) / f"{method}{out_path.suffix}"
            result = convert(model, recipe, calib, path, replace(options, calibration=method))
            s = score(measure_reference, run_artifact(path, route.target, feeds))
            tried.append((method, s, path, result))
            if requested == "auto":
                log(f"  calibration {method}: weakest-output SNR {s['snr_db']:.2f} dB, cosine {s['cosine']:.5f}")
        method, s, path, result = max(tried, key=lambda t: (t[1]["snr_db"], t[1]["cosine"]))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out_path)
    candidates = [{"method": m, **sc, "kept": m == method} for m, sc, _, _ in tried]
    return result, Choice(method, s, candidates, measured_on)


MEASURE_SAMPLES = 100


@dataclass
class Plan:
    """What export calibrates on and measures on, fixed before the first conversion."""

    requested: str
    calib: Dataset
    inputs: list[np.ndarray]
    reference: list[np.ndarray]
    measured_on: str
    log: object = print

    def convert(self, convert, route, model, recipe, out_path: Path, options):
        result, choice = calibrate(convert, route, model, recipe, self.calib, self.inputs, self.reference,
                                   Path(out_path), options, self.requested, self.measured_on, self.log)
        self.log(f"  calibration: {choice.method} ({'chosen by auto, ' if self.requested == 'auto' else ''}"
                 f"weakest-output SNR {choice.score['snr_db']:.2f} dB, cosine {choice.score['cosine']:.5f} "
                 f"on {self.measured_on})")
        return result, choice


def plan(req, model, routes, recipes, calib: Dataset | None, golden, log=print) -> Plan:
    """Check --calibration against every route, and choose the data: with --eval, calibrate on
    --calib and measure on the golden (eval) samples; without it, auto splits --calib in two halves
    (calibrate on the first, measure on the second) and says so."""
    if req.calibration not in CHOICES:
        raise InputError(suggest(req.calibration, CHOICES, "calibration method"),
                         hint=f"pass --calibration with one of {', '.join(CHOICES)}")
    if not any(r.needs_calibration for r in recipes) or calib is None:
        raise InputError(f"--calibration {req.calibration} applies to calibrated recipes (int8), and --quant has none",
                         hint="pass --quant int8 (or drop --calibration)")
    if req.max_drop is not None and req.calibration == "auto":
        raise UnsupportedError("--calibration auto and --max-drop cannot be combined yet",
                               hint="pick one calibration method for the accuracy-aware search")
    for route in routes:
        check_method(req.calibration, route.source, route.target)
    if req.eval:
        return Plan(req.calibration, calib, golden.inputs, golden.outputs, f"{req.eval} ({len(golden)} samples)", log)
    if req.calibration != "auto":
        return Plan(req.calibration, calib, golden.inputs, golden.outputs,
                    f"{calib.name} (the calibration data: no --eval given, not held out)", log)
    if len(calib) < 8:
        raise InputError(f"--calibration auto without --eval splits --calib in two, and {len(calib)} samples are "
                         "too few", hint="pass --eval DATA, or more calibration samples")
    first, second = split(calib)
    second = second.take(MEASURE_SAMPLES)

    reference, _ = run_reference(model, second, "cpu")
    log(f"calibration auto: no --eval given, so {calib.name} is split: the first {len(first)} samples calibrate, "
        f"the last {len(second)} measure each method")
    return Plan("auto", first, second.arrays, reference, f"{second.name}, held out from calibration", log)
