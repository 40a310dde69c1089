"""Routes from a source framework to a target format, one module each, and their registry.

The ROUTES table is the single source of truth: the CLI's help, the unsupported-route error and
the docs are generated from it. Route modules import their frameworks lazily.
"""

from __future__ import annotations

from edgeship.convert.base import ConvertOptions, ConvertResult, Route
from edgeship.errors import UnsupportedError, suggest

ALL_RECIPES = ("fp32", "fp16", "dynamic-int8", "int8")
WITH_INT16 = (*ALL_RECIPES, "int16x8")  # formats whose runtimes have int16 activations
TARGETS = ("tflite", "pte", "onnx")

ROUTES: dict[tuple[str, str], Route] = {
    (r.source, r.target): r
    for r in (
        Route("torch", "pte", ALL_RECIPES, "torch_pte", "torch.export -> XNNPACK partitioner -> ExecuTorch .pte"),
        Route("torch", "tflite", ALL_RECIPES, "torch_tflite", "litert-torch -> LiteRT .tflite"),
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
