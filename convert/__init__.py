"""Routes from a source framework to a target format, one module each, and their registry.

The ROUTES table is the single source of truth: the CLI's help, the unsupported-route error and
the docs are generated from it; each route's `recipes` are the recipes it takes (from quantize/recipes.py). Route modules import their frameworks lazily.
"""

from __future__ import annotations

from edgeship.convert.base import ConvertOptions, ConvertResult, Route
from edgeship.errors import UnsupportedError, suggest
from edgeship.quantize.recipes import RECIPE_NAMES

WITH_INT16 = RECIPE_NAMES  # formats whose runtimes have int16 activations
ALL_RECIPES = tuple(n for n in RECIPE_NAMES if n not in ("int16x8", "int4-weight"))  # every format runs these
WITH_INT4 = (*ALL_RECIPES, "int4-weight")  # 4-bit weights: routes whose quantizer writes them
TARGETS = ("tflite", "pte", "onnx")

ROUTES: dict[tuple[str, str], Route] = {
    (r.source, r.target): r
    for r in (
        Route("torch", "pte", WITH_INT4, "torch_pte", "torch.export -> XNNPACK partitioner -> ExecuTorch .pte"),
        Route("torch", "tflite", WITH_INT16, "torch_tflite", "litert-torch -> LiteRT .tflite"),
        Route("keras", "tflite", WITH_INT16, "keras_tflite", "TFLiteConverter -> LiteRT .tflite"),
        Route("keras", "pte", ALL_RECIPES, "keras_pte", "Keras (torch backend) -> torch.export -> XNNPACK -> .pte"),
        Route("torch", "onnx", WITH_INT16, "torch_onnx", "torch.onnx.export -> onnxruntime .onnx"),
        Route("keras", "onnx", WITH_INT16, "keras_onnx", "tf2onnx -> onnxruntime .onnx"),
    )
}


def get_route(source: str, target: str) -> Route:
    if target not in TARGETS:
        raise UnsupportedError(suggest(target, TARGETS, "target format"),
                               hint="pass --to tflite, pte or onnx (comma-separated)")
    try:
        return ROUTES[(source, target)]
    except KeyError:
        have = ", ".join(f"{s} -> {t}" for s, t in ROUTES)
        raise UnsupportedError(f"no route from {source} to {target}. Supported routes: {have}") from None


__all__ = ["ROUTES", "TARGETS", "ALL_RECIPES", "ConvertOptions", "ConvertResult", "Route", "get_route"]
