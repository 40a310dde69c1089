"""Which layers lose the most in int8, by route: the one place that picks how to measure it, for
accuracy-aware mode (which keeps the worst in float) and `edgeship diff` (which prints them).

    ranker = ranker_for(model, "pte", calib, feeds, verbose)
    ranker.layers()                       # the layers it can name, in execution order
    ranker.rank(kept, artifact)           # [LayerError], worst first, with KEPT left in float
    ranker.note                           # what was compared, in words

torch -> .pte / .tflite: the route's PT2E int8 graph simulated on the host (torch -> .onnx: the
.pte's symmetric per-channel graph, as onnxruntime's QDQ quantizes); Keras -> .pte: the
same under Keras' torch backend, in the route's child process; Keras -> .tflite and .onnx: the
int8 artifact's intermediate tensors against the fp32 artifact of the same route.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

from edgeship.convert.keras_pte import layer_errors
from edgeship.convert.layers import keras_layers, torch_graph_layers
from edgeship.convert.torch_common import program_of
from edgeship.errors import UnsupportedError
from edgeship.quantize.layer_error import (
    ONNX_ARTIFACT_NOTE,
    ONNX_NOTE,
    PTE_NOTE,
    TFLITE_NOTE,
    TORCH_TFLITE_NOTE,
    onnx_layer_errors,
    pte_layer_errors,
    tflite_layer_errors,
)
from edgeship.quantize.recipes import get_recipe


class TorchRanker:
    """torch -> pte|tflite|onnx: the route's PT2E graph with the kept layers in float, simulated on the host."""

    def __init__(self, model, calib, feeds, target: str):
        self.program, self.examples = program_of(model)
        self.calib, self.feeds, self.target = calib, feeds, target
        self.note = {"pte": PTE_NOTE, "onnx": ONNX_NOTE}.get(target, TORCH_TFLITE_NOTE)

    def layers(self) -> list[str]:
        return [n for n, _, _ in torch_graph_layers(self.program.graph_module)]

    def rank(self, kept=(), artifact: Path | None = None):
        return pte_layer_errors(self.program, self.examples, self.calib, self.feeds, kept, self.target)


class KerasPteRanker:
    """Keras -> pte: the route's PT2E graph with the kept layers in float, simulated on the host in
    the route's torch-backend child process (convert/keras_pte.py)."""

    note = PTE_NOTE

    def __init__(self, model, calib, feeds, verbose: bool):
        self.model, self.calib, self.feeds, self.verbose = model, calib, feeds, verbose
        self.named: list[str] | None = None

    def layers(self) -> list[str]:
        if self.named is None:
            return [n for n, _ in keras_layers(self.model.obj)]
        return self.named

    def rank(self, kept=(), artifact: Path | None = None):
        rows = layer_errors(self.model, self.calib, self.feeds, kept, self.verbose)
        if self.named is None:
            self.named = [r.name for r in sorted(rows, key=lambda r: r.order)]
        return rows


class ArtifactRanker:
    """Keras -> tflite|onnx: the int8 artifact's intermediate tensors against the fp32 artifact of the same
    route (LiteRT's tensors by op position; onnxruntime's by the node names tf2onnx gives both graphs)."""

    def __init__(self, model, feeds, fp32: bytes, target: str = "tflite"):
        self.feeds, self.fp32, self.target = feeds, fp32, target
        self.named = keras_layers(model.obj)
        self.note = ONNX_ARTIFACT_NOTE if target == "onnx" else TFLITE_NOTE

    def layers(self) -> list[str]:
        return [n for n, _ in self.named]

    def rank(self, kept=(), artifact: Path | None = None):
        if artifact is None:
            raise UnsupportedError(f"the .{self.target} ranking reads an int8 artifact's tensors: give the artifact")
        compare = onnx_layer_errors if self.target == "onnx" else tflite_layer_errors
        return compare(Path(artifact).read_bytes(), self.fp32, self.named, self.feeds)


def fp32_twin(model, convert, options, target: str = "tflite") -> bytes:
    """The fp32 artifact of the same route (.tflite or .onnx), converted now, for ArtifactRanker to compare with:
    with the int8 graph's structure (a Keras model's recurrent layers unrolled as its int8 .tflite unrolls them;
    with its WHILE loop left, the two .tflite had 62 and 920 compute ops and no tensors to match)."""
    with tempfile.TemporaryDirectory(prefix="edgeship-fp32-twin-") as tmp:
        path = Path(tmp) / f"fp32.{target}"
        convert(model, get_recipe("fp32"), None, path, replace(options, float_layers=(), twin_of="int8"))
        return path.read_bytes()


def ranker_for(model, target: str, calib, feeds, verbose: bool = False, fp32: Callable[[], bytes] | None = None):
    """The ranker for MODEL's route to TARGET. FP32 gives the fp32 artifact's bytes (Keras -> .tflite/.onnx)."""
    if model.framework == "torch":
        return TorchRanker(model, calib, feeds, target)
    if model.kind != "keras":
        raise UnsupportedError(f"per-layer error on {target} needs the .keras (or .h5) file it was exported from: "
                               "its layers are Keras layers", hint="pass --source model.keras")
    if target == "pte":
        return KerasPteRanker(model, calib, feeds, verbose)
    if target not in ("tflite", "onnx"):
        raise UnsupportedError(f"per-layer error is not available on Keras -> {target}")
    if fp32 is None:
        raise UnsupportedError(f"internal: the Keras -> .{target} ranking needs the fp32 artifact")
    return ArtifactRanker(model, feeds, fp32(), target)
