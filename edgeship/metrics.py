"""Accuracy of an artifact's outputs against the float reference and against labels."""

from __future__ import annotations

import numpy as np

from edgeship.labels import class_ids


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-sample cosine similarity (1.0 = same direction)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = np.where(both_zero, 1.0, (a * b).sum(1) / np.maximum(na * nb, 1e-30))
    return float(cos.mean())


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-noise ratio of `other` against `reference`, in dB (inf when identical)."""
    ref = reference.astype(np.float64)
    noise = float(((other.astype(np.float64) - ref) ** 2).sum())
    signal = float((ref**2).sum())
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(max(signal, 1e-30) / noise))


def is_classifier_output(a: np.ndarray) -> bool:
    return a.ndim == 2 and a.shape[1] > 1


def compare_output(reference: np.ndarray, other: np.ndarray, classes: bool | None = None) -> dict:
    """Cosine, SNR and max error; top-1 agreement for a classification output (CLASSES; None: a
    2-D [batch, classes] output)."""
    other = other.reshape(reference.shape)
    out = {
        "cosine": cosine(reference, other),
        "snr_db": snr_db(reference, other),
        "max_abs_error": float(np.abs(other.astype(np.float64) - reference).max()) if reference.size else 0.0,
    }
    if is_classifier_output(reference) if classes is None else classes:
        out["top1_agreement"] = float((reference.argmax(1) == other.argmax(1)).mean() * 100)
    return out


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
    ids = class_ids(labels, len(logits))  # None for masks, boxes, images: no top-1 for those
    if not is_classifier_output(logits) or ids is None:
        return None
    return float((logits.argmax(1) == ids).mean() * 100)


def compare(reference: list[np.ndarray], outputs: list[np.ndarray], names: list[str], labels=None) -> dict:
    """Per output metrics, plus accuracy vs labels (first output) for artifact and reference."""
    per_output = {n: compare_output(r, o, _classes(i, r, labels))
                  for i, (n, r, o) in enumerate(zip(names, reference, outputs))}
    result: dict = {"outputs": per_output}
    first = per_output[names[0]]
    result.update({k: first[k] for k in ("cosine", "snr_db", "max_abs_error", "top1_agreement") if k in first})
    if labels is not None:
        acc = top1_accuracy(outputs[0].reshape(reference[0].shape), labels)
        ref_acc = top1_accuracy(reference[0], labels)
        if acc is not None:
            result["accuracy"] = acc
            result["reference_accuracy"] = ref_acc
            result["accuracy_drop"] = ref_acc - acc
    return result


def _classes(index: int, reference: np.ndarray, labels) -> bool:
    """Whether output INDEX is a classification, which top-1 agreement is for: a 2-D [batch,
    classes] output; where labels are given, only the output they label (the first), and only
    when they are class ids (not masks, boxes or images)."""
    if not is_classifier_output(reference):
        return False
    return labels is None or (index == 0 and class_ids(labels, len(reference)) is not None)
