"""Ground truth ("labels") of any shape: class ids, masks, target images, embeddings, or a
different number of rows per sample (boxes).

In memory, labels are either one array whose first axis is the sample (class ids (N,), masks
(N, H, W), target images, embeddings), or a list of N arrays (ragged: boxes, one (M_i, 5) array
per sample, M_i may be 0).

On disk (an .npz of --data / --calib / --eval, and the bundle's golden.npz), pickle-free:
  labels                 one array, first axis the sample
  labels + labels_index  ragged: `labels` holds every sample's rows stacked on axis 0, and
                         `labels_index` (N+1 integers, starting at 0, non-decreasing) the offsets:
                         sample i is labels[labels_index[i]:labels_index[i + 1]]
(numpy writes a list of differently shaped arrays as a pickled object array, which edgeship does
not load: allow_pickle stays off, since loading a pickle runs code.)

Detection labels (map50, map50_95): per sample an (M, 5) array of rows `class, x1, y1, x2, y2`
(pixels or any unit the model's boxes use).
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgeship.errors import InputError

INDEX_KEY = "labels_index"


def is_ragged(labels) -> bool:
    return isinstance(labels, list)


def count(labels) -> int:
    return len(labels)


def collect(items: list, where: str):
    """Per-sample labels (from a module.py:fn or a folder of samples) as one array when they
    share a shape, else a ragged list."""
    arrays = [np.asarray(x) for x in items]
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        return np.stack(arrays)
    ndims = {a.ndim for a in arrays}
    if len(ndims) != 1 or next(iter(ndims)) == 0:
        raise InputError(f"labels in '{where}' mix shapes {sorted(shapes, key=str)[:3]}",
                         hint="give every sample the same kind of label (e.g. an (M, 5) array of boxes each)")
    return arrays


def normalize(labels, n: int, where: str):
    """Labels checked against n samples: class ids (N,) / (N, 1) become (N,); lists stay ragged."""
    if labels is None:
        return None
    if isinstance(labels, (list, tuple)):
        labels = collect(list(labels), where)
    if not isinstance(labels, list):
        labels = np.asarray(labels)
        if labels.ndim == 0:
            raise InputError(f"data '{where}' has a single scalar as labels", hint="give one label per sample")
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.reshape(-1)
    if len(labels) != n:
        raise InputError(f"data '{where}' has {len(labels)} labels for {n} samples")
    return labels


def take(labels, n: int):
    return None if labels is None else labels[:n]


def class_ids(labels, n: int) -> np.ndarray | None:
    """Labels as class ids (N,) when they are ones, else None (masks, boxes, images)."""
    if labels is None or is_ragged(labels):
        return None
    a = np.asarray(labels)
    if a.ndim == 1 and len(a) == n and a.dtype.kind in "iub":
        return a.astype(np.int64)
    if a.ndim == 1 and len(a) == n and a.dtype.kind == "f" and np.all(a == np.round(a)):
        return a.astype(np.int64)
    return None


def to_npz(labels) -> dict[str, np.ndarray]:
    """Arrays to store in an .npz (see the module docstring)."""
    if labels is None:
        return {}
    if not is_ragged(labels):
        return {"labels": np.asarray(labels)}
    rows = [np.asarray(a) for a in labels]
    lengths = [len(a) for a in rows]
    index = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    nonempty = [a for a in rows if a.size]
    tail = nonempty[0].shape[1:] if nonempty else (0,)
    dtype = np.result_type(*nonempty) if nonempty else np.float32
    stacked = np.concatenate([a.reshape((len(a), *tail)) for a in rows]).astype(dtype) if rows else np.zeros((0, *tail))
    return {"labels": stacked, INDEX_KEY: index}


def from_npz(arrays: dict, where: str):
    """Pop `labels` (and `labels_index`) from the arrays of an .npz; None when there are none."""
    labels = arrays.pop("labels", None)
    index = arrays.pop(INDEX_KEY, None)
    if index is None:
        return labels
    if labels is None:
        raise InputError(f"'{where}' has {INDEX_KEY} but no labels array")
    index = np.asarray(index).reshape(-1)
    if (index.dtype.kind not in "iu" or len(index) < 1 or index[0] != 0 or np.any(np.diff(index) < 0)
            or index[-1] != len(labels)):
        raise InputError(f"'{where}': {INDEX_KEY} must be N+1 non-decreasing offsets from 0 to len(labels) "
                         f"({len(labels)}), got {index[:6].tolist()}{'...' if len(index) > 6 else ''}",
                         hint="labels_index = numpy.cumsum([0] + [len(rows) for rows in per_sample])")
    return [labels[index[i]:index[i + 1]] for i in range(len(index) - 1)]


def digest(labels, h: "hashlib._Hash") -> None:
    for a in to_npz(labels).values():
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
