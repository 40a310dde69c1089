"""Calibration and evaluation data: load, fit to the model's inputs, check before any conversion.

Sources (the DATA argument of --calib, --eval and --data):
  digits[:train|:test]   scikit-learn's 8x8 digits (1,797 labelled images), shaped to the input
  file.npz               arrays by input name (or a single array), optional `labels`
  folder of .npy/.npz    one sample per file
  image folder           one subfolder per class (preprocessing: ImageOptions)
  module.py:fn           a function yielding samples (an array, a tuple, or a dict by input name)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeship import labels as labels_mod
from edgeship.errors import InputError
from edgeship.loader import load_callable
from edgeship.model import IOSpec, TensorSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
DIGITS_TEST_FRACTION = 0.25
DIGITS_SEED = 0


@dataclass
class ImageOptions:
    size: tuple[int, int] | None = None  # (height, width); default: from the model's input
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1 / 255.0  # applied before mean/std
    layout: str | None = None  # NCHW or NHWC; default: the model's
    bgr: bool = False


def has_batch_axis(shape) -> bool:
    """The sample-axis rule: an input (or output) whose full shape starts with 1 has a batch axis,
    and its data arrays are (N, *shape[1:]) (or (N, *shape)); any other tensor (an RNN state
    (2, 1, 128), a time-first (6, 4)) is taken whole, and its data arrays are (N, *shape)."""
    return len(shape) > 0 and int(shape[0]) == 1


def _whole_rows(a: np.ndarray, spec: TensorSpec) -> bool:
    """Rows of `a` are whole tensors of the input (its first dimension is not 1)."""
    return not has_batch_axis(spec.shape) and tuple(a.shape[1:]) == tuple(int(d) for d in spec.shape)


@dataclass
class Dataset:
    """Samples fitted to a model's inputs: arrays[k] has shape (N, *spec.shape[1:]) for an input
    with a batch axis (first dimension 1), and (N, *spec.shape) for an input taken whole (see
    `has_batch_axis`). Row i of every array is sample i; `sample(i)` gives it in the full shape."""

    name: str
    arrays: list[np.ndarray]
    specs: list[TensorSpec]
    labels: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for a in self.arrays:
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        if labels_mod.is_ragged(self.labels):
            labels_mod.digest(self.labels, h)
        elif self.labels is not None:
            h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()

    def sample(self, i: int) -> list[np.ndarray]:
        """Sample i in each input's full shape (a batch of one, or the whole tensor), in model input order."""
        return [a[i] if _whole_rows(a, s) else a[i : i + 1] for a, s in zip(self.arrays, self.specs)]

    @property
    def batchable(self) -> bool:
        """Whether rows can be fed to the model as one batch (every input has a batch axis)."""
        return all(has_batch_axis(s.shape) for s in self.specs)

    def samples(self, limit: int | None = None) -> Iterator[list[np.ndarray]]:
        for i in range(len(self) if limit is None else min(limit, len(self))):
            yield self.sample(i)

    def batch(self, start: int, stop: int) -> list[np.ndarray]:
        return [a[start:stop] for a in self.arrays]

    def take(self, n: int) -> "Dataset":
        n = min(n, len(self))
        labels = None if self.labels is None else self.labels[:n]
        return Dataset(self.name, [a[:n] for a in self.arrays], self.specs, labels, dict(self.meta))

    def as_dict(self) -> dict[str, np.ndarray]:
        return {s.name: a for s, a in zip(self.specs, self.arrays)}


# ---------------------------------------------------------------------------------------------
# Loading


def load_data(source: str, io: IOSpec, image: ImageOptions | None = None) -> Dataset:
    """Load DATA and fit it to the model's inputs, or raise InputError saying what is wrong."""
    raw_inputs, labels, name = _load_raw(source, io, image or ImageOptions())
    ds = fit_to_spec(raw_inputs, labels, io, name)
    check_finite(ds)
    return ds


def _load_raw(source: str, io: IOSpec, image: ImageOptions):
    if source == "digits" or source.startswith("digits:"):
        return _digits(source, io)
    path_part, _, fn = source.rpartition(":")
    if path_part.endswith(".py") and fn:
        return _from_module(Path(path_part), fn, io, source)
    path = Path(source)
    if not path.exists():
        raise InputError(
            f"data not found: '{source}'",
            hint="pass an .npz file, a folder of .npy/.npz samples or class subfolders of images, "
            "module.py:fn, or 'digits'",
        )
    if path.is_file():
        if path.suffix == ".npz":
            return (*_from_npz(path, io), path.name)
        if path.suffix == ".npy":
            return [np.load(path, allow_pickle=False)], None, path.name
        raise InputError(f"cannot read data file '{source}' (suffix '{path.suffix}')", hint="use .npz or .npy")
    return _from_folder(path, io, image)


def _digits(source: str, io: IOSpec):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    split = source.partition(":")[2] or "all"
    if split not in ("all", "train", "test"):
        raise InputError(f"unknown digits split '{split}'", hint="use digits, digits:train or digits:test")
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    if split != "all":
        xtr, xte, ytr, yte = train_test_split(
            x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SEED, stratify=y
        )
        x, y = (xtr, ytr) if split == "train" else (xte, yte)
    if len(io.inputs) != 1:
        raise InputError("the digits data set feeds models with one input", hint="pass your own .npz")
    shape = io.inputs[0].shape[1:]
    if int(np.prod(shape)) != 64:
        raise InputError(
            f"digits are 8x8 images (64 values) but the model's input '{io.inputs[0].name}' takes "
            f"{'x'.join(map(str, io.inputs[0].shape))}",
            hint="use a model with an 8x8x1 (or 64-value) input, or pass your own data",
        )
    return [x.reshape((len(x), *shape))], y.astype(np.int64), source


def _from_npz(path: Path, io: IOSpec):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError for pickled objects, ...
        raise InputError(f"cannot read '{path}': {e}", hint="write it with numpy.savez") from None
    labels = labels_mod.from_npz(arrays, str(path))  # any array, or ragged (labels + labels_index)
    names = [s.name for s in io.inputs]
    if all(n in arrays for n in names):
        return [arrays[n] for n in names], labels
    if len(arrays) == len(names) == 1:
        return list(arrays.values()), labels
    positional = [f"input_{i}" for i in range(len(names))]
    if sorted(arrays) == sorted(positional):  # arrays in model input order (the Python API's lists)
        return [arrays[k] for k in positional], labels
    raise InputError(
        f"'{path}' holds arrays {sorted(arrays)} but the model's inputs are {names}",
        hint="name each array after a model input (numpy.savez(f, **{name: array}))",
    )


def _from_folder(path: Path, io: IOSpec, image: ImageOptions):
    files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
    if files:
        per_input: list[list[np.ndarray]] = [[] for _ in io.inputs]
        labels = []
        for f in files:
            if f.suffix == ".npy":
                parts, label = [np.load(f, allow_pickle=False)], None
            else:
                parts, label = _from_npz(f, io)
            if len(parts) != len(io.inputs):
                raise InputError(f"sample '{f}' has {len(parts)} arrays, the model takes {len(io.inputs)}")
            for lst, a in zip(per_input, parts):
                lst.append(a)
            labels.append(label)
        have_labels = all(lab is not None for lab in labels)
        labels = labels_mod.collect(labels, str(path)) if have_labels else None
        return [_stack(lst, path) for lst in per_input], labels, path.name
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    if classes:
        return _from_images(path, classes, io, image)
    raise InputError(
        f"folder '{path}' holds no .npy/.npz samples and no class subfolders of images",
        hint="put one sample per .npy/.npz file, or images in one subfolder per class",
    )


def _from_images(root: Path, classes: list[Path], io: IOSpec, opt: ImageOptions):
    from PIL import Image

    if len(io.inputs) != 1:
        raise InputError("an image folder feeds models with one input")
    spec = io.inputs[0]
    layout = opt.layout or spec.layout
    if layout not in ("NCHW", "NHWC"):
        raise InputError(
            f"cannot tell the layout of input '{spec.name}' {list(spec.shape)}", hint="pass --layout NCHW or NHWC"
        )
    h, w, c = (spec.shape[2], spec.shape[3], spec.shape[1]) if layout == "NCHW" else spec.shape[1:4]
    if opt.size:
        h, w = opt.size
    images, labels = [], []
    for label, cls in enumerate(classes):
        for f in sorted(cls.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                img = Image.open(f).convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
            except OSError as e:
                raise InputError(f"cannot read image '{f}': {e}") from None
            a = np.asarray(img, dtype=np.float32) * opt.scale
            a = a[..., None] if a.ndim == 2 else a
            if opt.bgr:
                a = a[..., ::-1]
            a = (a - np.asarray(opt.mean, np.float32)) / np.asarray(opt.std, np.float32)
            images.append(a.transpose(2, 0, 1) if layout == "NCHW" else a)
            labels.append(label)
    if not images:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{root}'")
    return [np.stack(images).astype(np.float32)], np.array(labels), root.name


def _from_module(path: Path, fn: str, io: IOSpec, source: str):
    gen = load_callable(path, fn, "data")
    names = [s.name for s in io.inputs]
    per_input: list[list[np.ndarray]] = [[] for _ in names]
    labels: list = []
    for item in gen():
        label = None
        if isinstance(item, dict):
            label = item.get("labels", item.get("label"))
            try:
                parts = [item[n] for n in names]
            except KeyError as e:
                raise InputError(f"{source} yielded a dict without input {e}; inputs: {names}") from None
        elif isinstance(item, (tuple, list)):
            parts = list(item)
            if len(parts) == len(names) + 1:
                parts, label = parts[:-1], parts[-1]
        else:
            parts = [item]
        if len(parts) != len(names):
            raise InputError(f"{source} yielded {len(parts)} arrays; the model takes {len(names)} ({names})")
        for lst, a in zip(per_input, parts):
            lst.append(np.asarray(a))
        labels.append(label)
    if not per_input[0]:
        raise InputError(f"{source} yielded no samples")
    lab = labels_mod.collect(labels, source) if all(lab is not None for lab in labels) else None
    return [_stack(lst, source) for lst in per_input], lab, source


def _stack(arrays: list[np.ndarray], where) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"samples in '{where}' differ in shape: {sorted(shapes)[:3]}")
    return np.stack(arrays)


# ---------------------------------------------------------------------------------------------
# Checks


def fit_to_spec(arrays: list[np.ndarray], labels, io: IOSpec, name: str) -> Dataset:
    """Check each array against its input spec. An input with a batch axis (full shape (1, ...))
    accepts (N, *shape[1:]) or (N, *shape); any other input accepts (N, *shape) only: N whole tensors."""
    if len(arrays) != len(io.inputs):
        raise InputError(f"data '{name}' has {len(arrays)} arrays; the model takes {len(io.inputs)} inputs")
    fitted = []
    for a, spec in zip(arrays, io.inputs):
        a = np.asarray(a)
        if not has_batch_axis(spec.shape):
            _check_whole(a, spec, name)
            fitted.append(_fit_dtype(a, spec, name))
            continue
        want = tuple(spec.shape[1:])
        if a.shape[1:] != want and a.ndim == len(spec.shape) + 1 and a.shape[1] == 1 and a.shape[2:] == want:
            a = a[:, 0]
        if a.shape[1:] != want:
            hint = "check the layout (NCHW vs NHWC)" if sorted(a.shape[1:]) == sorted(want) else None
            raise InputError(
                f"data '{name}' input '{spec.name}': samples have shape {_fmt(a.shape[1:])}, "
                f"the model takes {_fmt(want)}: expected an array of shape {_form(want)} or "
                f"{_form(spec.shape)}, got {_fmt(a.shape)}",
                hint=hint or "reshape the data, or pass --input-shape to match it",
            )
        fitted.append(_fit_dtype(a, spec, name))
    counts = {a.shape[0] for a in fitted}
    if len(counts) != 1:
        raise InputError(f"data '{name}': inputs have different sample counts {sorted(counts)}")
    labels = labels_mod.normalize(labels, fitted[0].shape[0], name)  # class ids, masks, boxes (ragged), ...
    return Dataset(name, fitted, io.inputs, labels)


def _check_whole(a: np.ndarray, spec: TensorSpec, name: str) -> None:
    """An input taken whole (first dimension not 1): the data must be (N, *shape), one row a sample."""
    want = tuple(int(d) for d in spec.shape)
    if a.shape[1:] == want:
        return
    form = _form(want)
    raise InputError(
        f"data '{name}' input '{spec.name}' {_fmt(want)} is taken whole (its first dimension, {want[0]}, is not a batch of 1): "
        f"expected an array of shape {form}, N samples, got {_fmt(a.shape)}"
        + (" (one sample without the N axis)" if a.shape == want else ""),
        hint=f"stack the samples on a new first axis: numpy.stack(samples) is {form}",
    )


def _fit_dtype(a: np.ndarray, spec: TensorSpec, name: str) -> np.ndarray:
    """Cast to the input's dtype: integer inputs (token ids, int64) take integer data and stay integer."""
    want_float = np.dtype(spec.dtype).kind == "f"
    if want_float and a.dtype.kind not in "fiu" or (not want_float and a.dtype.kind not in "iub"):
        raise InputError(f"data '{name}' input '{spec.name}' has dtype {a.dtype}; the model takes {spec.dtype}",
                         hint="pass integer arrays (e.g. int64 token ids) for an integer input" if not want_float
                         else "pass float arrays")
    return a.astype(spec.dtype, copy=False)


def check_finite(ds: Dataset) -> None:
    for a, spec in zip(ds.arrays, ds.specs):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).reshape(len(a), -1).any(axis=1).sum())
            raise InputError(
                f"data '{ds.name}' input '{spec.name}' has NaN or Inf values in {bad} of {len(a)} samples",
                hint="clean the data before calibrating",
            )


def check_calibration(ds: Dataset, minimum: int) -> None:
    if len(ds) < minimum:
        raise InputError(
            f"calibration data '{ds.name}' has {len(ds)} samples; int8 calibration needs at least {minimum}",
            hint="pass more samples (about 200 is a good default), or lower --calib-min",
        )


def _form(shape) -> str:
    return "(" + ", ".join(["N", *map(str, shape)]) + ")"


def _fmt(shape) -> str:
    return "x".join(map(str, shape)) if len(shape) else "scalar"
