"""The Runner protocol every format's runner follows (documentation; runners duck-type it).

Runner modules (tflite.py, executorch.py, onnx.py) and timing.py/agent.py are standalone: standard
library, numpy and their own runtime only, no `edgeship` imports. The same files are pushed to
a Raspberry Pi or run in a child process on the host, so a device needs neither PyTorch nor
TensorFlow, and a runtime that crashes takes down only its child.

    runner = Runner(path, signature=None, threads=1)   # loads; raises ValueError on a bad file
    runner.runtime   -> "ai-edge-litert 2.3.0"
    runner.delegate  -> {"name": "XNNPACK", "active": True, "detail": "..."}
    runner.inputs    -> [{"name", "shape", "dtype", "quantization": {"scale", "zero_point"} | None}]
    runner.outputs   -> same
    runner.run([x0, x1, ...]) -> [y0, ...]
        float32 arrays in (batch 1, model input order), float32 arrays out. Integer I/O is
        quantized/dequantized with the artifact's own parameters, else the signature's.

`signature` is the manifest's per-artifact "io" record: {"inputs": [...], "outputs": [...]},
each entry {"name", "shape", "dtype", "layout", "quantization"}.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    runtime: str
    delegate: dict
    inputs: list[dict]
    outputs: list[dict]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]: ...


RUNNER_MODULES = {"tflite": "tflite", "pte": "executorch", "onnx": "onnx"}


def format_of(path: str) -> str | None:
    for fmt in RUNNER_MODULES:
        if str(path).endswith("." + fmt):
            return fmt
    return None
