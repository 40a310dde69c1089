"""Feeding and reading an artifact's tensors, shared by the standalone runners (tflite.py, onnx.py).

Standalone like them (numpy only, no edgeship imports): pushed to devices in the agent package.
Integer I/O is quantized/dequantized with the tensor's own (scale, zero point); everything else is
cast to the dtype the artifact declares (int64 token ids stay ints; litert-torch's int32 ids get int32).
"""

from __future__ import annotations

import numpy as np


def to_tensor(x: np.ndarray, dtype: np.dtype, q: dict | None) -> np.ndarray:
    """Float data for an integer (quantized) input is quantized; any other data is cast to `dtype`."""
    if dtype.kind in "iu" and x.dtype.kind == "f" and q is not None:
        info = np.iinfo(dtype)
        x = np.round(x.astype(np.float64) / q["scale"]) + q["zero_point"]
        return np.clip(x, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def from_tensor(y: np.ndarray, q: dict | None) -> np.ndarray:
    """An output as float32: a quantized integer output is dequantized with its parameters."""
    if q is not None and y.dtype.kind in "iu":
        return ((y.astype(np.float32) - q["zero_point"]) * q["scale"]).astype(np.float32)
    return y.astype(np.float32, copy=False)  # the runtimes hand back arrays of their own
