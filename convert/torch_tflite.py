"""PyTorch (nn.Module or .pt2 ExportedProgram) -> LiteRT .tflite with litert-torch.

Inputs keep the torch model's layout (NCHW); the signature's input names are the model's.

  fp32          float32
  fp16          float16 weights: ai-edge-quantizer FLOAT_CAST, weight-only (litert-torch's
                full_fp16_recipe), float compute
  dynamic-int8  int8 per-channel weights, activations quantized at run time: ai-edge-quantizer
                DYNAMIC_RANGE (litert-torch's full_dynamic_recipe), no data
  int8          PT2E static: litert-torch's PT2EQuantizer, symmetric per-channel int8 weights,
                int8 activations calibrated with HistogramObserver on the calibration data
                (torchao prepare_pt2e / convert_pt2e). litert-torch gives the artifact int8 I/O;
                edgeship adds QUANTIZE/DEQUANTIZE at the boundary for float I/O (the default),
                and keeps int8 I/O with options.int8_io.
  int16x8       the float .tflite through ai-edge-quantizer's static_wi8_ai16, ranges from the
                calibration data (tflite_16x8.py): int16 activations, int8 per-channel weights,
                float I/O. litert-torch's own int16 spec leaves int32 biases LiteRT's kernels refuse.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edgeship.console import track
from edgeship.convert import ROUTES, int4_weight, tflite_16x8
from edgeship.convert import tflite_common as common
from edgeship.convert.base import ConvertOptions, ConvertResult
from edgeship.convert.layers import normalize_fqn
from edgeship.convert.tflite_int8_annotations import (
    annotate_conv_clamps,
    annotate_remaining,
    attention_as_int8_ops,
    layer_norm_as_int8_ops,
    prelu_as_int8_ops,
)
from edgeship.convert.torch_common import constants_observed_once, shared_provenance
from edgeship.errors import InputError, UnsupportedError
from edgeship.quantize.calibration import pt2e_config as calibration_config
from edgeship.runtime.standalone.tflite import inspect_bytes

ROUTE = "litert-torch -> LiteRT .tflite"
INT4_STEP = (f"blockwise-{int4_weight.GROUP} int4 FULLY_CONNECTED weights, dynamic int8 activations "
             "(ai-edge-quantizer)")


def convert(model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult:
    with shared_provenance():  # torch.fx's provenance records shared, not deep-copied (torch_common.py)
        return _convert(model, recipe, calib, out_path, options)


def _convert(model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult:
    if model.kind not in ("torch-module", "torch-exported"):
        raise InputError(f"the PyTorch -> .tflite route takes an nn.Module or a .pt2, not '{model.kind}'")
    ROUTES[("torch", "tflite")].require(recipe, calib)
    common.check_static(model)
    if not model.example_inputs:
        raise InputError(f"'{model.name}' has no example inputs", hint="pass --input-shape NAME=1x3x224x224")
    int_io = recipe.name == "int8" and options.int8_io
    with common.quiet_native_output(options.verbose), _litert_progress(options.verbose):
        import litert_torch
        import torch

    names = [common.arg_name(s.name, i) for i, s in enumerate(model.io.inputs)]
    module = _by_name(_torch_module(model), names)
    sample = {n: torch.from_numpy(x.copy()) for n, x in zip(names, model.example_inputs)}
    output_keys = _output_keys(module, sample)
    quant_config, notes = None, []
    if recipe.name in ("fp16", "dynamic-int8"):
        from litert_torch.generative.quantize import quant_recipes

        recipes = {"fp16": quant_recipes.full_fp16_recipe, "dynamic-int8": quant_recipes.full_dynamic_recipe}
        quant_config = recipes[recipe.name]()
    elif recipe.name == "int8":
        module, quant_config, notes = _pt2e_static(module, sample, names, calib, options.verbose,
                                                   tuple(f"inner.{n}" for n in options.float_layers), options.calibration)

    what = f"litert-torch could not convert '{model.name}' ({recipe.name})"
    with common.converting(what, options.verbose), _litert_progress(options.verbose):
        edge = litert_torch.convert(module, sample_kwargs=sample, quant_config=quant_config)
        data = bytes(edge.model_content())
    if recipe.name == "int8" and not int_io:
        data = common.float_io(data)
    if recipe.name == "int4-weight":
        with common.converting("ai-edge-quantizer's blockwise int4 failed", options.verbose):
            data, _ = int4_weight.tflite_blockwise(data)
    if recipe.name == "int16x8":
        with common.converting("ai-edge-quantizer's int16x8 failed", options.verbose):
            samples = track(calib.samples(), total=len(calib), description="calibrating (int16x8)")
            data = common.float_io(tflite_16x8.static_16x8(data, names, samples))
    if int_io:
        _require_int8_io(data)
    warnings, delegation = common.finish(data, model, recipe.name, int_io, out_path, names, output_keys,
                                         options.verbose)
    warnings = notes + warnings
    kept = f", kept float: {', '.join(options.float_layers)}" if recipe.name == "int8" and options.float_layers else ""
    return ConvertResult(route=f"{ROUTE} [{_describe(recipe.name, int_io)}{kept}]", tools=_versions(),
                         delegation=delegation, warnings=warnings)


def _torch_module(model):
    if model.kind == "torch-exported":
        return model.obj.module()
    return model.obj


def _by_name(inner, names: list[str]):
    import torch

    class ByName(torch.nn.Module):
        """Takes the inputs by name, so the .tflite signature carries the model's input names."""

        def __init__(self):
            super().__init__()
            self.inner, self.names = inner, list(names)
            self.training = False  # not .eval(): an exported program's module refuses train()

        def forward(self, **inputs):
            return self.inner(*[inputs[n] for n in self.names])

    return ByName()


@contextlib.contextmanager
def _litert_progress(verbose: bool):
    """litert-torch prints its own step log unless LITERT_TORCH_SHOW_PROGRESS is off."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    before = os.environ.get(key)
    os.environ[key] = "y" if verbose else "n"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def irregular_grus(graph_module) -> dict[str, list]:
    """{module name: its nodes} of the nn.GRU calls litert-torch's GRU annotator cannot take: it assumes an
    explicit h0 and both outputs used (`_annotate_gru_io_only`: input_nodes[1], two output nodes), and fails
    the whole int8 conversion otherwise ('list index out of range', 'expecting GRU to have two outputs') -
    which is how a GRU is usually called (`y, _ = self.gru(x)`). These stay float, as the .pte route keeps
    recurrent layers float in int8."""
    import itertools

    import torch
    from torch.fx.passes.utils.source_matcher_utils import get_source_partitions

    out = {}
    for p in itertools.chain(*get_source_partitions(graph_module.graph, [torch.nn.GRU]).values()):
        if len(p.input_nodes) < 2 or len(p.output_nodes) != 2:
            stack = p.nodes[0].meta.get("nn_module_stack", {}).values()
            name = next((normalize_fqn(path).removeprefix("inner.") for path, kind in stack if "GRU" in str(kind)),
                        "") or "a GRU"
            out[f"{name} (#{len(out) + 1})" if name in out else name] = list(p.nodes)
    return out


def pt2e_quantizer(float_layers=(), calibration: str | None = None):
    """litert-torch's PT2EQuantizer (symmetric, per-channel int8), leaving the modules named in
    `float_layers` unannotated: its set_module_name refuses None, so the pattern filter does it."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    in_float = [get_module_name_filter(name) for name in float_layers]

    class KeepFloat(PT2EQuantizer):
        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            unannotatable = {n for nodes in irregular_grus(model).values() for n in nodes}

            def keep(node):
                return (filter_fn is None or filter_fn(node)) and not any(f(node) for f in in_float) \
                    and node not in unannotatable

            annotate_conv_clamps(model, quantization_config, keep)  # conv -> ReLU6: one fused pattern
            model = super()._annotate_all_static_patterns(model, quantization_config, keep)
            annotate_remaining(model, quantization_config, keep)  # adds, PReLUs, means the patterns miss
            return model

    config = calibration_config(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False),
                                calibration)
    return KeepFloat().set_global(config)  # always: it also annotates what the stock patterns miss


def _pt2e_static(module, sample: dict, names: list[str], calib, verbose: bool, float_layers=(), calibration=None):
    """Static int8 with per-channel weights: export, insert observers, calibrate, convert. Returns the
    quantized graph, litert-torch's QuantConfig and notes on what stays float and why."""
    import torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeship.convert.torch_passes import aliases_to_canonical_ops  # imports torch: loaded where used

    quantizer = pt2e_quantizer(float_layers, calibration)
    with common.converting("preparing the model for int8 calibration (PT2E) failed", verbose):
        graph = torch.export.export(module, (), sample).module()
        aliases_to_canonical_ops(graph)  # torch.multiply & co.: litert-torch's quantizer annotates aten.mul only
        # litert-torch would lower PReLU, attention and LayerNorm to float ops between one dequantize
        # and one quantize: written as ATen ops, each is annotated and converted in int8
        attention, kept = attention_as_int8_ops(graph)
        notes = [(f"{len(kept)} attention(s) keep float32 BATCH_MATMUL and SOFTMAX between QUANTIZE/DEQUANTIZE: "
                  f"{', '.join(kept)}: a mask's -inf would take the scores' whole int8 range; dropout and "
                  "grouped-query heads are not rewritten")] if kept else []
        if prelu_as_int8_ops(graph) + attention + layer_norm_as_int8_ops(graph):
            graph = torch.export.export(graph, (), sample).module()
        grus = irregular_grus(graph)
        if grus:
            notes.append(f"kept float: {', '.join(grus)} (nn.GRU without an explicit h0 or with an output unused: "
                         "litert-torch's GRU quantization takes only h0-in, both-outputs-used calls)")
        prepared = prepare_pt2e(graph, quantizer)
    _eval(prepared)
    with torch.no_grad(), common.converting("int8 calibration (PT2E observers) failed", verbose), \
            constants_observed_once(prepared):
        for batch in track(calib.samples(), total=len(calib), description="calibrating"):
            prepared(**{n: torch.from_numpy(x.copy()) for n, x in zip(names, batch)})
    with common.converting("converting the calibrated model to int8 (PT2E) failed", verbose):
        quantized = convert_pt2e(prepared, fold_quantize=False)
    _eval(quantized)
    return quantized, QuantConfig(pt2e_quantizer=quantizer), notes


def _eval(graph_module) -> None:
    """Exported graphs refuse .eval(); torchao has the helper that switches them."""
    try:
        from torchao.quantization.pt2e import move_exported_model_to_eval
    except ImportError:
        graph_module.training = False
        return
    move_exported_model_to_eval(graph_module)
    graph_module.training = False


def _output_keys(module, sample: dict) -> list[str]:
    """The signature keys litert-torch gives the outputs, in the model's order: a dict output keeps
    its keys, anything else is numbered output_0..output_N (torch's pytree order)."""
    import torch

    with torch.no_grad():
        out = module(**sample)
    if isinstance(out, dict):  # nested values are keyed 'key_0', 'key_sub' (litert-torch's flattening)
        return _dict_keys(out, "")
    n = len(_leaves(out)) if isinstance(out, (tuple, list)) else 1
    return [f"output_{i}" for i in range(n)]


def _dict_keys(out, prefix: str) -> list[str]:
    if isinstance(out, dict):
        return [n for k, v in out.items() for n in _dict_keys(v, f"{prefix}_{k}" if prefix else str(k))]
    if isinstance(out, (tuple, list)):
        return [n for i, v in enumerate(out) for n in _dict_keys(v, f"{prefix}_{i}")]
    return [prefix]


def _leaves(out) -> list:
    if isinstance(out, dict):
        return [t for v in out.values() for t in _leaves(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _leaves(v)]
    return [out]


def _require_int8_io(data: bytes) -> None:
    with common.quiet_native_output():
        details = inspect_bytes(data)
    floats = [t["name"] for t in details["inputs"] + details["outputs"] if t["dtype"] != "int8"]
    if floats:
        raise UnsupportedError(
            f"litert-torch left these inputs/outputs as non-int8: {', '.join(floats)}; integer I/O is not "
            "available for this model on the torch -> .tflite route",
            hint="drop --int8-io (float I/O with int8 compute works), or export to .pte",
        )


def _describe(recipe: str, int_io: bool) -> str:
    return {
        "fp32": "float32",
        "fp16": "float16 weights (ai-edge-quantizer)",
        "dynamic-int8": "dynamic-range int8 per-channel weights (ai-edge-quantizer)",
        "int8": "PT2E static int8, per-channel weights" + (", int8 I/O" if int_io else ", float I/O"),
        "int4-weight": INT4_STEP,
        "int16x8": "int16 activations, int8 per-channel weights (ai-edge-quantizer, calibrated ranges), float I/O",
    }[recipe]


def _versions() -> dict[str, str]:
    from importlib import metadata

    import torch

    return {"torch": torch.__version__, "litert-torch": metadata.version("litert-torch")}
