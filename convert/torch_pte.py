"""PyTorch -> ExecuTorch .pte: torch.export, PT2E quantization for XNNPACK, lowering with fallback.

Recipes (all lowered with the XNNPACK partitioner):
  fp32          the exported graph as is
  fp16          weights and compute in float16 (a graph pass); inputs and outputs stay float32,
                cast at the boundary by two small non-delegated ops
  dynamic-int8  XNNPACKQuantizer: per-channel int8 weights for linear/conv, activations
                quantized at run time
  int8          XNNPACKQuantizer: per-channel int8 weights, per-tensor int8 activations with
                ranges calibrated on `calib`; optionally int8 inputs/outputs (options.int8_io)

`export_pte` is shared with the Keras route (keras_pte.py), which hands it an ExportedProgram.
Before lowering, xnnpack_passes/xnnpack_decompose rewrite the ops XNNPACK refuses into ops it takes;
nodes it still cannot lower stay out of its partitions (the rest is delegated). If XNNPACK lowering
fails anyway, or the lowered program fails a trial run, it retries with one op per delegate, then
with no delegation (portable kernels), and records what happened. The delegation figure is counted
from the written .pte the way `edgeship inspect` counts it (xnnpack_delegation.py).
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from pathlib import Path

from edgeship.console import track
from edgeship.convert import ROUTES, int4_weight, xnnpack_delegation
from edgeship.convert.base import ConvertOptions, ConvertResult
from edgeship.convert.torch_common import (
    constants_observed_once,
    example_tensors,
    exported_program,
    quiet,
    seed_everything,
    shared_provenance,
    to_tensors,
    tool_versions,
)
from edgeship.convert.xnnpack_passes import (
    after_quantization,
    guarded_partitioner,
    lower_guarded,
    prepare_for_xnnpack,
)
from edgeship.convert.xnnpack_quant_patterns import clamp_fusing_quantizer
from edgeship.errors import ConversionError, InputError, UnsupportedError, error_line
from edgeship.quantize.calibration import pt2e_config as calibration_config
from edgeship.runtime.standalone.executorch import inspect_artifact, load_kernel_libraries

BACKEND = "XnnpackBackend"
# (mode, what the warning calls it); tried in this order until one lowers and runs
LOWERING_MODES = (
    ("xnnpack", "XNNPACK"),
    ("xnnpack-per-op", "XNNPACK with one op per delegate"),
    ("portable", "no delegation (portable kernels)"),
)


def convert(model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult:
    if model.kind not in ("torch-module", "torch-exported"):
        raise UnsupportedError(f"the torch -> pte route takes a PyTorch module or .pt2, not a '{model.kind}' model")
    examples = example_tensors(model)
    if recipe.name == "int4-weight":
        return _int4_weight(model, recipe, examples, Path(out_path), options)
    if model.kind == "torch-exported":
        program = model.obj
    else:
        with no_fused_attention():
            program = exported_program(model.obj.eval(), examples)
    return export_pte(program, recipe, examples, calib, Path(out_path), options, source="torch.export")


def _int4_weight(model, recipe, examples, out_path: Path, options: ConvertOptions) -> ConvertResult:
    """8da4w on the nn.Linear modules (convert/int4_weight.py), then export and lower as usual."""
    if model.kind != "torch-module":
        raise UnsupportedError("the int4-weight recipe quantizes nn.Linear modules, and a .pt2 ExportedProgram has "
                               "none left", hint="export from the nn.Module source (file.py:factory) instead")
    with quiet():
        module, done, kept = int4_weight.torch_8da4w(model.obj)
    with no_fused_attention():
        program = exported_program(module, examples)
    source = f"torchao 8da4w (int4 weights, group {int4_weight.GROUP}, {len(done)} Linear) -> torch.export"
    result = export_pte(program, recipe, examples, None, out_path, options, source=source)
    if kept:
        result.warnings.append(f"int4-weight: {len(kept)} Linear layer(s) kept float (input width not a multiple "
                               f"of {int4_weight.GROUP}): {', '.join(kept)}")
    return result


def export_pte(program, recipe, examples, calib, out_path: Path, options: ConvertOptions, source: str,
               tools: dict | None = None, layer_prefix: str = "") -> ConvertResult:
    """Quantize or convert a float32 ExportedProgram per `recipe`, lower it, write the .pte.
    `layer_prefix`: where options.float_layers sit in the program's module tree ('layers.' for
    the Keras route's per-layer wrappers)."""
    ROUTES[("torch", "pte")].require(recipe)
    seed_everything()
    notes: list[str] = []
    with quiet(), shared_provenance():
        program, rewrites = prepare_for_xnnpack(program, examples, quantized=recipe.name in ("int8", "dynamic-int8"))
        program, steps = prepare_program(program, recipe, examples, calib, options.float_layers, layer_prefix,
                                         calibration=options.calibration)
        if recipe.name in ("int8", "dynamic-int8"):  # recurrent layers, kept whole (float) for the quantizer
            program, after = after_quantization(program, examples)
            steps += [f"XNNPACK graph passes after quantization ({', '.join(f'{k}: {v}' for k, v in after.items())})"] * bool(after)
        steps = [f"XNNPACK graph passes ({', '.join(f'{k}: {v}' for k, v in rewrites.items())})"] * bool(rewrites) + steps
        io_quant = None
        if options.int8_io and recipe.name == "int8":
            io_quant, io_notes = make_integer_io(program)
            notes += io_notes
        elif options.int8_io:
            notes.append(f"int8 I/O applies to the int8 recipe only; the {recipe.name} artifact keeps float I/O")
        buffer, delegation = lower_with_fallback(program, examples, io_quant)
    if delegation.get("kept_out_of_xnnpack"):
        notes.append(f"XNNPACK could not lower nodes {', '.join(delegation['kept_out_of_xnnpack'])}: kept out "
                     "of its partitions")
    if below := xnnpack_delegation.warning(delegation):  # names the ops left out, and a lowering fallback
        notes.append(below)
    elif delegation["lowering_error"]:
        notes.append(f"XNNPACK delegation failed ({delegation['lowering_error']}); fell back to "
                     f"{dict(LOWERING_MODES)[delegation['mode']]}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(buffer)
    lowering = {"xnnpack": "XNNPACK", "xnnpack-per-op": "XNNPACK per-op", "portable": "portable"}[delegation["mode"]]
    return ConvertResult(
        route=" -> ".join([source, *steps, lowering, ".pte"]),
        tools={**tool_versions(), **(tools or {})},
        delegation=delegation,
        warnings=notes,
        io_quantization=io_quant,
    )


# ---------------------------------------------------------------------------------------------
# Recipes


def prepare_program(program, recipe, examples, calib, float_layers=(), layer_prefix: str = "",
                    calibration: str | None = None):
    """Float32 ExportedProgram -> (ExportedProgram for `recipe`, route steps). `float_layers`
    (module names, under `layer_prefix`) stay out of int8 quantization."""
    if recipe.name in ("fp32", "int4-weight"):  # int4-weight: quantized before export (_int4_weight)
        return program, []
    if recipe.name == "fp16":

        from edgeship.convert import torch_passes  # imports torch: a heavy module, loaded where it is used

        module = program.module()
        torch_passes.convert_to_half(module)
        return exported_program(module, examples, hint=None, what="float16 graph"), ["float16 graph"]
    dynamic = recipe.name == "dynamic-int8"
    quantized = pt2e_quantize(program, examples, calib, dynamic, float_layers if not dynamic else (),
                              layer_prefix=layer_prefix, calibration=None if dynamic else calibration)
    if dynamic:
        step = "PT2E dynamic int8 (XNNPACKQuantizer, per-channel weights)"
    else:
        step = f"PT2E static int8 (XNNPACKQuantizer, per-channel weights, {len(calib)} calibration samples"
        step += f", {calibration} ranges)" if calibration else ")"
        if float_layers:
            step += f", kept float: {', '.join(float_layers)}"
    return exported_program(quantized, examples, hint=None, what="re-export after quantization"), [step]


def pt2e_quantize(program, examples, calib, dynamic: bool = False, float_layers=(), quantizer=None,
                  layer_prefix: str = "", calibration: str | None = None):
    """The PT2E-quantized (q/dq, host-runnable) GraphModule of a float ExportedProgram, with the
    modules named in `float_layers` (under `layer_prefix`) left unquantized (the quantizer's node
    filter skips them).
    `quantizer`: another route's PT2E quantizer instead of XNNPACK's (float_layers then unused)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not dynamic and calib is None:
        raise InputError("the int8 recipe needs calibration data", hint="pass --calib DATA (e.g. --calib digits)")
    config = calibration_config(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic),
                                calibration)
    if quantizer is None:  # XNNPACK's quantizer, with conv -> ReLU6 as one pattern (xnnpack_quant_patterns)
        quantizer = clamp_fusing_quantizer().set_global(config)
    elif float_layers:
        raise ValueError("float_layers go into the quantizer passed in")
    if float_layers:  # set_module_name(name, None) is refused ("not supported yet"); a filter does it
        from torchao.quantization.pt2e.quantizer import get_module_name_filter

        in_float = [get_module_name_filter(layer_prefix + name) for name in float_layers]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in in_float))
    what = "dynamic-int8" if dynamic else "int8"
    try:
        prepared = prepare_pt2e(program.module(), quantizer)
        with torch.no_grad(), constants_observed_once(prepared):
            if dynamic:  # weight observers need one pass; activations are measured at run time
                prepared(*examples)
            else:  # the user's data only: the example input (zeros, or a factory's random tensor) is not the
                # data the artifact will see, and an all-masked zeros input gives 0/0 = NaN ranges
                for sample in track(calib.samples(), total=len(calib), description="calibrating"):
                    prepared(*to_tensors(sample))
        return convert_pt2e(prepared)
    except Exception as e:
        raise ConversionError(f"PT2E quantization ({what}) failed: {error_line(e)}") from None


def make_integer_io(program) -> tuple[dict, list[str]]:
    """Turn the program's float inputs/outputs into int8 where a quantize (dequantize) op sits
    right behind (before) them. Returns ({"inputs": [...], "outputs": [...]}, warnings)."""
    from executorch.exir.passes.quantize_io_pass import quantize_input, quantize_output

    io = {"inputs": [], "outputs": []}
    notes = []
    for i in range(len(program.graph_signature.user_inputs)):
        try:
            _hoist_input_quantize(program, i)
            scale, zero_point, *_ = quantize_input(program, i)
            io["inputs"].append({"scale": float(scale), "zero_point": int(zero_point), "dtype": "int8"})
        except (ValueError, AssertionError) as e:
            io["inputs"].append(None)
            notes.append(f"input {i} stays float32: {error_line(e)}")
    for i in range(len(program.graph_signature.user_outputs)):
        try:
            scale, zero_point, *_ = quantize_output(program, i)
            io["outputs"].append({"scale": float(scale), "zero_point": int(zero_point), "dtype": "int8"})
        except (ValueError, AssertionError) as e:
            io["outputs"].append(None)
            notes.append(f"output {i} stays float32: {error_line(e)}")
    return io, notes


def _hoist_input_quantize(program, index: int) -> bool:
    """input -> permute/reshape/... -> quantize  becomes  input -> quantize -> permute/reshape/...

    The quantizer leaves layout-only ops in front of the first quantize (Keras: the NHWC -> NCHW
    permute), which would keep that input float. Moving the quantize ahead of them changes no
    value: those ops only move elements."""
    import torch

    aten = torch.ops.aten
    layout_only = {aten.permute.default, aten.view.default, aten.reshape.default, aten.contiguous.default,
                   aten.clone.default, aten.unsqueeze.default, aten.squeeze.dim, aten.flatten.using_ints}
    quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
    graph = program.graph_module.graph
    name = program.graph_signature.user_inputs[index]
    source = next(n for n in graph.nodes if n.op == "placeholder" and n.name == name)
    chain, current = [], source
    while len(current.users) == 1:
        user = next(iter(current.users))
        if user.op == "call_function" and user.target == quantize:
            break
        if user.op != "call_function" or user.target not in layout_only:
            return False
        chain.append(user)
        current = user
    else:
        return False
    if not chain:
        return False
    q = next(iter(current.users))
    q_users = list(q.users)
    q.replace_input_with(current, source)
    chain[0].replace_input_with(source, q)
    chain[0].prepend(q)
    for user in q_users:
        user.replace_input_with(q, chain[-1])
    for node in chain:
        node.meta["val"] = node.meta["val"].to(q.meta["val"].dtype)
    program.graph_module.recompile()
    return True


def io_constant_methods(io_quant: dict | None) -> dict:
    """The I/O quantization as constant methods in the .pte ('forward_input0_scale', ...), the
    names ExecuTorch's own QuantizeInputs/QuantizeOutputs passes use."""
    methods = {}
    for side, key in (("input", "inputs"), ("output", "outputs")):
        for i, q in enumerate((io_quant or {}).get(key, [])):
            if q:
                methods[f"forward_{side}{i}_scale"] = q["scale"]
                methods[f"forward_{side}{i}_zp"] = q["zero_point"]
    return methods


# ---------------------------------------------------------------------------------------------
# Lowering


def lower_with_fallback(program, examples, io_quant=None) -> tuple[bytes, dict]:
    """Lower and serialize; each mode must also run the example once. Returns (pte bytes, delegation),
    the delegation counted from the .pte as `edgeship inspect` counts it (artifact_delegation)."""
    import executorch.kernels.quantized  # noqa: F401  (out-variants of quantize ops for portable kernels)

    first_error, errors = None, []
    for mode, _ in LOWERING_MODES:
        attempt = copy.deepcopy(program)  # lowering edits programs in place; the caller's stays intact
        stage = "lowering"
        excluded = []
        try:
            if mode == "xnnpack":  # nodes XNNPACK fails on stay out of its partitions, the rest goes in
                edge, excluded = lower_guarded(attempt, lambda p, names: _lower(p, mode, io_quant, names))
            else:
                edge = _lower(attempt, mode, io_quant)
            stage = "serializing"
            buffer = edge.to_executorch().buffer
            stage = "trial run"
            trial_run(buffer, examples, io_quant)
        except Exception as e:
            errors.append((dict(LOWERING_MODES)[mode], f"{stage}: {error_line(e)}"))
            if first_error is None:
                first_error = f"{stage}: {error_line(e)}"
            continue
        delegation = artifact_delegation(bytes(buffer))
        delegation.update(mode=mode, lowering_error=first_error, kept_out_of_xnnpack=excluded)
        if first_error:  # the warning line validate and check print says why, and what was left out
            delegation["fallback"] = (f"XNNPACK delegation failed ({first_error}); fell back to "
                                      f"{dict(LOWERING_MODES)[mode]}" + (f": {delegation['fallback']}"
                                                                         if delegation["fallback"] else ""))
        return bytes(buffer), delegation
    raise ConversionError(
        f"ExecuTorch lowering failed: {first_error}",
        hint="the model did not lower with XNNPACK, per-op XNNPACK or portable kernels"
        + "".join(f"; {mode}: {why[:160]}" for mode, why in errors[1:] if why != first_error)  # what else each said
        + "; try another recipe, or --to tflite",
    )


def _lower(program, mode: str, io_quant, excluded=frozenset()):
    from executorch.exir import to_edge_transform_and_lower

    partitioner = []
    if mode != "portable":
        partitioner = [guarded_partitioner(excluded, per_op_mode=mode == "xnnpack-per-op")]
    methods = io_constant_methods(io_quant) or None
    return to_edge_transform_and_lower(program, partitioner=partitioner, constant_methods=methods)


def artifact_delegation(buffer: bytes) -> dict:
    """The .pte's delegation as `edgeship inspect` reads it: XNNPACK nodes in its delegate blobs
    against the kernel calls left in its plan (xnnpack_delegation.summarize)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "program.pte")
        path.write_bytes(buffer)
        details = inspect_artifact(str(path))
    return xnnpack_delegation.summarize(details, "pte", BACKEND)


@contextlib.contextmanager
def no_fused_attention():
    """torch's MHA / TransformerEncoder fast path off while exporting: its fused kernels
    (_native_multi_head_attention, _transformer_encoder_layer_fwd) are not core ATen."""
    import torch

    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    was = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(was)


def count_delegation(edge_program) -> dict:
    """Ops of an edge program that went into delegates vs ops left to ExecuTorch's kernels, counted
    on the edge graph (a diagnostic for graphs not yet serialized; the manifest's figure is
    artifact_delegation's, counted from the .pte)."""
    import operator

    gm = edge_program.graph_module
    delegated = remaining = partitions = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        if getattr(node.target, "__name__", "") == "executorch_call_delegate":
            partitions += 1
            lowered = getattr(gm, node.args[0].target)
            delegated += sum(
                1 for n in lowered.original_module.graph.nodes
                if n.op == "call_function" and n.target is not operator.getitem
            )
        else:
            remaining += 1
    total = delegated + remaining
    return {
        "backend": BACKEND,
        "delegated_ops": delegated,
        "total_ops": total,
        "coverage": round(delegated / total, 4) if total else 0.0,
        "fallback": None,
        "partitions": partitions,
    }


def trial_run(buffer: bytes, examples, io_quant=None) -> None:
    """Load the program with ExecuTorch's runtime and run the example once; raise on failure
    with the runtime's own log line (it logs to the native stderr, captured here)."""
    import torch
    from executorch.extension.pybindings import _C

    load_kernel_libraries(_C)  # the same kernels edgeship's runner registers (portable int8 ops)
    feeds = []
    for i, x in enumerate(examples):
        q = (io_quant or {}).get("inputs", [None] * (i + 1))[i]
        if q:
            x = torch.clamp(torch.round(x / q["scale"]) + q["zero_point"], -128, 127).to(torch.int8)
        feeds.append(x)
    error = None
    with _native_stderr() as log:
        try:
            method = _C._load_program_from_buffer(buffer).load_method("forward")
            method.call(feeds)
        except Exception as e:  # RuntimeError, IndexError: the runtime's own checks
            error = e
    if error is not None:
        raise RuntimeError(f"{error}; runtime log: {_runtime_error_line(log['text']) or 'empty'}")


# ---------------------------------------------------------------------------------------------
# Small helpers


def _runtime_error_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for word in ("Error", "failed", "Check failed"):
        for ln in lines:
            if word in ln:
                return ln
    return lines[-1] if lines else ""


@contextlib.contextmanager
def _native_stderr():
    """Capture what ExecuTorch's runtime logs: it writes through Python's sys.stderr when the
    pybindings forward its log, else straight to file descriptor 2. Both are captured."""
    import io
    import sys

    sys.stderr.flush()
    captured = {"text": ""}
    saved_fd, saved_stream, python_side = os.dup(2), sys.stderr, io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        sys.stderr = python_side
        try:
            yield captured
        finally:
            sys.stderr = saved_stream
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            tmp.seek(0)
            captured["text"] = python_side.getvalue() + tmp.read().decode("utf-8", "replace")


