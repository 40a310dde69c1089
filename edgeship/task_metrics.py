"""Task metrics: what the model is for, scored on an artifact's outputs against the labels.
Pure numpy. Every metric is higher-is-better; a drop is `float model's score - artifact's score`
in the metric's unit.

    top1, top5   classification: outputs[0] logits (N, C); labels class ids (N,); percent
    map50        detection, mean average precision at IoU 0.5 (101-point interpolated, COCO style,
                 mean over the classes in the ground truth); percent
    map50_95     the same, averaged over IoU 0.50, 0.55, ..., 0.95; percent
    miou         segmentation: mean IoU over the classes present in labels or prediction, IoU
                 summed over all samples; outputs[0] logits (N, C, H, W) or (N, H, W, C) taken by
                 argmax over C, or one channel (N, H, W[, 1]) thresholded (default 0.5, `miou@0.0`
                 for logits); labels integer masks (N, H, W); percent
    psnr         image-to-image: mean per-sample PSNR of outputs[0] against the labels (target
                 images, same shape), peak = the labels' max - min, capped at 100 dB; dB
    cosine       embeddings: mean cosine of outputs[0] to the labels (target embeddings)
    module.py:fn the user's own: fn(outputs: list[np.ndarray], labels) -> float, higher is better

psnr and cosine without labels score the artifact against the float model's own outputs (the
float model then has no score of its own, so they are gated by a floor, not a drop).

Detection outputs, built in (no decode function):
  one output  (N, K, 6)                 rows x1, y1, x2, y2, score, class
  two outputs boxes (N, K, 4) + class scores (N, K, C)   score = max, class = argmax
  three       boxes (N, K, 4), scores (N, K), classes (N, K)  (taken by name where the outputs
              are named boxes/scores/classes, else in this order)
then greedy per-class non-maximum suppression at IoU 0.5 keeps the 100 best per sample.
`map50@decode.py:fn` decodes with the user's fn(outputs: list[np.ndarray]) -> one
(boxes (K, 4), scores (K,), classes (K,)) per sample, used as given (no suppression).
Labels: per sample an (M, 5) array `class, x1, y1, x2, y2` (edgeship/labels.py: ragged labels).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeship.errors import InputError
from edgeship.labels import class_ids, is_ragged
from edgeship.loader import load_callable
from edgeship.metrics import cosine

NMS_IOU = 0.5
MAX_DETECTIONS = 100
PSNR_CAP_DB = 100.0


@dataclass
class TaskMetric:
    name: str  # as the user spelled it: "map50", "miou@0.0", "my_metric.py:score"
    fn: Callable  # (outputs, labels, names) -> float
    unit: str  # "%", "dB", ""
    needs_labels: bool = True
    against_reference: bool = False  # without labels: scored against the float model's outputs
    user: bool = False

    def score(self, outputs: list[np.ndarray], labels, names: list[str] | None = None) -> float:
        try:
            value = self.fn(outputs, labels, names or [])
        except InputError:
            raise
        except Exception as e:
            what = f"your metric {self.name}" if self.user else f"metric {self.name}"
            raise InputError(f"{what} failed: {type(e).__name__}: {e}",
                             hint="check that the labels and outputs are what it expects "
                                  "(see edgeship/task_metrics.py)")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"metric {self.name} returned {type(value).__name__}, not a number") from None


# ---------------------------------------------------------------------------------------------
# classification


def _need_ids(labels, n: int, metric: str) -> np.ndarray:
    ids = class_ids(labels, n)
    if ids is None:
        raise InputError(f"{metric} needs class ids as labels (one integer per sample)")
    return ids


def topk(logits: np.ndarray, labels, k: int) -> float:
    logits = np.asarray(logits).reshape(len(logits), -1)
    ids = _need_ids(labels, len(logits), f"top{k}")
    k = min(k, logits.shape[1])
    best = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((best == ids[:, None]).any(1).mean() * 100)


# ---------------------------------------------------------------------------------------------
# detection


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (A, 4) and (B, 4) boxes x1, y1, x2, y2."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU,
        keep_max: int = MAX_DETECTIONS) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for c in np.unique(classes):
        idx = order[classes[order] == c]
        while len(idx):
            keep.append(int(idx[0]))
            if len(idx) == 1:
                break
            ious = box_iou(boxes[idx[:1]], boxes[idx[1:]])[0]
            idx = idx[1:][ious <= iou]
    keep = sorted(keep, key=lambda i: -scores[i])
    return np.asarray(keep[:keep_max], dtype=np.int64)


def decode_layout(outputs: list[np.ndarray], names: list[str]) -> list[tuple]:
    """The built-in detection layouts (module docstring) -> per sample (boxes, scores, classes)."""
    outs = [np.asarray(o) for o in outputs]
    if len(outs) >= 3:
        lower = [n.lower() for n in names]

        def pick(word: str, default: int) -> np.ndarray:
            hit = [i for i, n in enumerate(lower) if word in n]
            return outs[hit[0]] if len(hit) == 1 else outs[default]

        boxes, scores, classes = pick("box", 0), pick("score", 1), pick("class", 2)
    elif len(outs) == 2:
        boxes, cls_scores = outs
        cls_scores = cls_scores.reshape(len(cls_scores), -1, cls_scores.shape[-1])
        scores, classes = cls_scores.max(-1), cls_scores.argmax(-1)
    elif outs and outs[0].shape[-1] == 6:
        rows = outs[0].reshape(len(outs[0]), -1, 6)
        boxes, scores, classes = rows[..., :4], rows[..., 4], rows[..., 5]
    else:
        shapes = [list(o.shape) for o in outs]
        raise InputError(f"cannot read detections from outputs of shapes {shapes}",
                         hint="use the layout in edgeship/task_metrics.py (boxes/scores/classes) or pass "
                              "map50@decode.py:fn with your own decoder")
    n = len(boxes)
    boxes = boxes.reshape(n, -1, 4)
    scores = scores.reshape(n, -1)
    classes = np.rint(classes.reshape(n, -1)).astype(np.int64)
    per_sample = []
    for i in range(n):
        keep = nms(boxes[i], scores[i], classes[i])
        per_sample.append((boxes[i][keep], scores[i][keep], classes[i][keep]))
    return per_sample


def average_precision(detections: list[tuple], truths: list[np.ndarray], iou: float) -> float:
    """Mean over ground-truth classes of the 101-point interpolated AP at one IoU threshold."""
    truths = [np.asarray(t, np.float64).reshape(-1, 5) for t in truths]
    gt_classes = sorted({int(c) for t in truths for c in t[:, 0]})
    if not gt_classes:
        raise InputError("detection labels hold no boxes",
                         hint="labels: per sample an (M, 5) array class, x1, y1, x2, y2")
    aps = []
    for c in gt_classes:
        n_gt = sum(int((t[:, 0] == c).sum()) for t in truths)
        scored = []  # (score, is true positive)
        for (boxes, scores, classes), t in zip(detections, truths):
            mine = np.asarray(classes).reshape(-1) == c
            b, s = np.asarray(boxes).reshape(-1, 4)[mine], np.asarray(scores).reshape(-1)[mine]
            gt = t[t[:, 0] == c, 1:]
            taken = np.zeros(len(gt), bool)
            ious = box_iou(b, gt) if len(gt) and len(b) else np.zeros((len(b), len(gt)))
            for j in np.argsort(-s, kind="stable"):
                hit = False
                if len(gt):
                    cand = np.where(~taken, ious[j], -1.0)
                    k = int(cand.argmax())
                    if cand[k] >= iou:
                        taken[k] = hit = True
                scored.append((float(s[j]), hit))
        if not scored:
            aps.append(0.0)
            continue
        scored.sort(key=lambda x: -x[0])
        tp = np.cumsum([h for _, h in scored])
        fp = np.cumsum([not h for _, h in scored])
        recall = tp / n_gt
        precision = tp / np.maximum(tp + fp, 1e-12)
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
        points = np.linspace(0, 1, 101)
        idx = np.searchsorted(recall, points, side="left")
        aps.append(float(np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0).mean()))
    return float(np.mean(aps))


def _truths(labels, n: int, metric: str) -> list[np.ndarray]:
    if labels is None:
        raise InputError(f"{metric} needs labels: per sample an (M, 5) array class, x1, y1, x2, y2")
    rows = labels if is_ragged(labels) else list(np.asarray(labels))
    if len(rows) != n:
        raise InputError(f"{metric}: {len(rows)} labels for {n} samples")
    for r in rows:
        if np.asarray(r).size and np.asarray(r).reshape(len(r), -1).shape[1] != 5:
            raise InputError(f"{metric} labels must be (M, 5) rows class, x1, y1, x2, y2; got {list(np.shape(r))}",
                             hint="store ragged boxes as labels + labels_index (edgeship/labels.py)")
    return rows


def detection_map(outputs, labels, names, ious, decode=None) -> float:
    detections = decode(outputs) if decode else decode_layout(outputs, names)
    detections = list(detections)
    truths = _truths(labels, len(detections), "map")
    return float(np.mean([average_precision(detections, truths, t) for t in ious]) * 100)


# ---------------------------------------------------------------------------------------------
# segmentation, image-to-image, embeddings


def predicted_mask(out: np.ndarray, truth_shape: tuple, threshold: float | None) -> np.ndarray:
    out = np.asarray(out)
    n, spatial = truth_shape[0], tuple(truth_shape[1:])
    if out.shape[1:] == spatial:  # one channel: a probability or a logit map
        return (out > (0.5 if threshold is None else threshold)).astype(np.int64)
    if out.ndim == len(truth_shape) + 1:
        if out.shape[2:] == spatial:  # (N, C, H, W)
            channels = out.shape[1]
            axis = 1
        elif out.shape[1:-1] == spatial:  # (N, H, W, C)
            channels = out.shape[-1]
            axis = -1
        else:
            channels = axis = None
        if axis is not None:
            if channels == 1:
                return (np.take(out, 0, axis=axis) > (0.5 if threshold is None else threshold)).astype(np.int64)
            return out.argmax(axis)
    raise InputError(f"miou: output shape {list(out.shape)} does not match masks {list(truth_shape)}",
                     hint="outputs (N, C, H, W) or (N, H, W, C) logits, or one channel; labels (N, H, W) class ids")


def mean_iou(outputs, labels, names, threshold: float | None = None) -> float:
    if labels is None or is_ragged(labels):
        raise InputError("miou needs masks as labels: an (N, H, W) array of class ids")
    truth = np.asarray(labels)
    if truth.ndim >= 3 and truth.shape[-1] == 1 and np.asarray(outputs[0]).ndim == truth.ndim - 1:
        truth = truth[..., 0]
    pred = predicted_mask(outputs[0], truth.shape, threshold)
    truth = truth.astype(np.int64)
    ious = []
    for c in np.union1d(np.unique(truth), np.unique(pred)):
        inter = np.logical_and(pred == c, truth == c).sum()
        union = np.logical_or(pred == c, truth == c).sum()
        ious.append(inter / union)
    return float(np.mean(ious) * 100)


def psnr(outputs, labels, names) -> float:
    target = np.asarray(labels, np.float64)
    out = np.asarray(outputs[0], np.float64).reshape(target.shape)
    peak = float(target.max() - target.min()) or 1.0
    mse = ((out - target) ** 2).reshape(len(target), -1).mean(1)
    db = np.where(mse > 0, 10 * np.log10(peak**2 / np.maximum(mse, 1e-300)), PSNR_CAP_DB)
    return float(np.minimum(db, PSNR_CAP_DB).mean())


def cosine_to(outputs, labels, names) -> float:
    target = np.asarray(labels)
    return cosine(target, np.asarray(outputs[0]).reshape(target.shape))


# ---------------------------------------------------------------------------------------------
# the registry


def _with_decode(fn_name: str, ious):
    def build(param: str | None):
        decode = load_function(param, "decode") if param else None
        return lambda outputs, labels, names: detection_map(outputs, labels, names, ious, decode)

    return build


def _miou(threshold: float | None):
    return lambda outputs, labels, names: mean_iou(outputs, labels, names, threshold)


BUILTIN = {
    "top1": (lambda p: lambda o, lab, n: topk(o[0], lab, 1), "%", False),
    "top5": (lambda p: lambda o, lab, n: topk(o[0], lab, 5), "%", False),
    "map50": (_with_decode("map50", (0.5,)), "%", False),
    "map50_95": (_with_decode("map50_95", tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))), "%", False),
    "miou": (lambda p: _miou(None if p is None else _float(p, "miou")), "%", False),
    "psnr": (lambda p: psnr, "dB", True),
    "cosine": (lambda p: cosine_to, "", True),
}
NAMES = tuple(BUILTIN)
PARAMETERS = {"map50": "a decode function", "map50_95": "a decode function", "miou": "a threshold"}


def _float(text: str, metric: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{metric}@{text}: the threshold must be a number, e.g. {metric}@0.5") from None


def is_user_metric(spec: str) -> bool:
    name, at, _ = spec.partition("@")
    return ".py:" in spec and not (at and name in BUILTIN)  # map50@decode.py:fn is a built-in


def check_spec(spec: str) -> str:
    """Validate a metric spec's syntax (no file is read): a typo gets a suggestion."""
    if is_user_metric(spec):
        return spec
    name, _, param = spec.partition("@")
    if name not in BUILTIN:
        close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.5)
        raise InputError(f"unknown metric '{name}'." + (f" Did you mean '{close[0]}'?" if close else "")
                         + f" Metrics: {', '.join(NAMES)}, or module.py:fn (your own)",
                         hint="e.g. --metric map50, --metric miou@0.0, --metric my_metrics.py:score")
    if param and name not in PARAMETERS:
        raise InputError(f"metric '{name}' takes no parameter (got '@{param}')",
                         hint="parameters: " + ", ".join(f"{k}@{v}" for k, v in PARAMETERS.items()))
    return spec


def resolve(spec: str) -> TaskMetric:
    """A TaskMetric for 'top1', 'miou@0.0', 'map50@decode.py:fn' or 'metrics.py:fn'."""
    check_spec(spec)
    if is_user_metric(spec):
        fn = load_function(spec, "metric")
        return TaskMetric(spec, lambda outputs, labels, names: fn(list(outputs), labels), "", needs_labels=False,
                          user=True)
    name, _, param = spec.partition("@")
    build, unit, vs_reference = BUILTIN[name]
    return TaskMetric(spec, build(param or None), unit, needs_labels=not vs_reference,
                      against_reference=vs_reference)


def load_function(spec: str, what: str) -> Callable:
    """fn from 'path/to/module.py:fn', or InputError saying what is wrong."""
    file, _, fn = spec.rpartition(":")
    path = Path(file)
    if not file.endswith(".py") or not fn:
        raise InputError(f"'{spec}' is not module.py:function", hint=f"pass your {what} as path/to/file.py:name")
    return load_callable(path, fn, what)


def evaluate(metric: TaskMetric, outputs: list[np.ndarray], reference: list[np.ndarray], labels,
             names: list[str] | None = None) -> dict:
    """The metric for an artifact and for the float reference, and the drop:
    {metric, unit, value, reference, drop, against: "labels" | "reference"}."""
    out = {"metric": metric.name, "unit": metric.unit, "user": metric.user}
    if labels is None and metric.against_reference:
        out.update(value=metric.score(outputs, reference[0], names), reference=None, drop=None, against="reference")
        return out
    if labels is None and metric.needs_labels:
        raise InputError(f"metric {metric.name} needs labels, and the evaluation data has none",
                         hint="give labels in the data (an .npz 'labels' array, or module.py:fn yielding "
                              "(inputs, label))")
    value = metric.score(outputs, labels, names)
    ref = metric.score(reference, labels, names)
    out.update(value=value, reference=ref, drop=ref - value, against="labels")
    return out
