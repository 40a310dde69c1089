"""Per-layer error of an int8 model against its float reference: what `edgeship diff` prints and
what accuracy-aware mode ranks layers by.

What a layer is: convert/layers.py (the same names accuracy-aware mode keeps in float).

Per layer, the layer's output as the quantized model computes it (dequantized) is compared with
the float model's over the same inputs: SNR (dB), cosine and max abs error. Errors accumulate
through a network, so the ranking uses what each layer *adds*: the SNR of the previous layer's
output (execution order) minus the SNR of its own, in dB; the layer that adds the most is worst.

  .pte     the PT2E-quantized graph (q/dq ops, same quantizer and calibration as the route) run
           on the host with torch against the float graph: a host simulation, not the runtime
  .tflite  Keras: the int8 artifact's intermediate tensors (experimental_preserve_all_tensors)
           against the fp32 artifact of the same route, ops matched by position, dequantized;
           torch: litert-torch's PT2E graph simulated on the host, like .pte
"""

from __future__ import annotations

import numpy as np

from edgeship.convert.layers import LayerError, keras_onnx_nodes, keras_op_layers, tflite_ops, torch_graph_layers
from edgeship.convert.tflite_common import quiet_native_output
from edgeship.convert.torch_common import program_of, quiet, to_tensors
from edgeship.convert.torch_pte import pt2e_quantize
from edgeship.convert.torch_tflite import pt2e_quantizer
from edgeship.errors import ArtifactError
from edgeship.metrics import cosine, snr_db

SNR_CAP_DB = 60.0  # a clean signal: above int8's best case, so an exact layer adds nothing
TORCH_TFLITE_NOTE = ("the .tflite's int8 graph simulated on the host: litert-torch's PT2E fake-quant (q/dq) graph "
                     "vs the float graph in torch (the converter renames its tensors, so they are not matched)")
PTE_NOTE = ("the .pte's int8 graph simulated on the host: PT2E fake-quant (q/dq) graph vs the float graph in "
            "torch; the ExecuTorch runtime exposes no intermediate tensors")
ONNX_NOTE = ("the .onnx's int8 graph approximated on the host: a symmetric per-channel PT2E fake-quant (q/dq) graph "
             "vs the float graph in torch, as onnxruntime's QDQ quantizes; its kernels are not run layer by layer")
TFLITE_NOTE = "int8 .tflite intermediate tensors vs the fp32 .tflite of the same route (LiteRT, dequantized)"
ONNX_ARTIFACT_NOTE = ("int8 .onnx intermediate tensors (its QDQ graph run as written, each layer's output after its "
                      "QuantizeLinear/DequantizeLinear) vs the fp32 .onnx of the same route (onnxruntime)")


def finish(layers: list[tuple[str, str]], reference: dict[str, list], quantized: dict[str, list]) -> list[LayerError]:
    """Metrics per layer (`layers` in execution order), worst first."""
    rows, previous = [], SNR_CAP_DB
    for order, (name, kind) in enumerate(layers):
        if name not in reference or name not in quantized:
            continue
        ref = np.concatenate([np.asarray(a, np.float32).reshape(1, -1) for a in reference[name]])
        q = np.concatenate([np.asarray(a, np.float32).reshape(1, -1) for a in quantized[name]])
        snr = snr_db(ref, q)
        capped = min(snr, SNR_CAP_DB)
        rows.append(LayerError(name, kind, order, snr, cosine(ref, q), float(np.abs(ref - q).max()),
                               max(0.0, previous - capped)))
        previous = capped
    return worst_first(rows)


def worst_first(rows: list[LayerError]) -> list[LayerError]:
    return sorted(rows, key=lambda r: (-r.added_db, min(r.snr_db, SNR_CAP_DB), r.order))


# ---------------------------------------------------------------------------------------------
# torch: layers by module, PT2E host simulation


def torch_layer_names(model) -> list[str]:
    """Layer names of a loaded torch Model (edgeship.model.Model), in execution order."""
    program, _ = program_of(model)
    return [name for name, _, _ in torch_graph_layers(program.graph_module)]


def _dequantized_view(graph_module, node_name: str) -> str:
    """The node the rest of the quantized graph reads for `node_name`: its dequantize if the
    output is quantized (q -> dq right behind it), else the node itself."""
    node = next(n for n in graph_module.graph.nodes if n.name == node_name)
    for user in node.users:
        if "quantize_per_tensor" in str(user.target) and "dequantize" not in str(user.target):
            for dq in user.users:
                if "dequantize" in str(dq.target):
                    return dq.name
    return node_name


def _surviving(float_graph, quant_graph, node_name: str) -> str:
    """The node of the quantized graph that computes `node_name`'s value: the node itself, or, where
    quantization folded it away (a BatchNorm folded into the conv before it), the nearest node
    before it along its first input that the quantized graph still has."""
    present = {n.name for n in quant_graph.graph.nodes}
    nodes = {n.name: n for n in float_graph.graph.nodes}
    node = nodes[node_name]
    while node.name not in present and node.args and hasattr(node.args[0], "name"):
        node = node.args[0]
    return node.name


def _folded_into(float_graph, quant_graph, node_name: str) -> str:
    """The float node to compare a layer's output with: the layer's own output node, or, where its
    only user is a BatchNorm (a sibling module) that quantization folded into it, that BatchNorm:
    the quantized conv computes conv + BN."""
    present = {n.name for n in quant_graph.graph.nodes}
    node = next(n for n in float_graph.graph.nodes if n.name == node_name)
    while node.name in present and len(node.users) == 1:
        user = next(iter(node.users))
        if "batch_norm" not in str(user.target) or user.name in present:
            break
        node = user
    return node.name


def capture(graph_module, inputs: list, names: set[str]) -> dict:
    """Run a GraphModule once (torch.fx.Interpreter) and keep the outputs of the named nodes."""
    import torch

    kept: dict = {}

    class Capture(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in names:
                kept[n.name] = out.detach().float().numpy().copy()
            return out

    with torch.no_grad():
        Capture(graph_module).run(*inputs)
    return kept


def pte_layer_errors(program, examples, calib, inputs: list[list[np.ndarray]], float_layers=(),
                     target: str = "pte", layer_prefix: str = "") -> list[LayerError]:
    """Per-layer error of the route's PT2E int8 graph against the float graph (torch programs).
    `inputs`: samples, each a list of batch-1 arrays in model input order. target 'pte' uses
    ExecuTorch's XNNPACKQuantizer, 'tflite' litert-torch's PT2EQuantizer (torch -> .tflite).
    `layer_prefix`: layers are the modules under it (the Keras route's 'layers.' wrappers)."""
    with quiet():
        float_gm = program.module()
        if target == "tflite":
            quant_gm = pt2e_quantize(program, examples, calib, quantizer=pt2e_quantizer(tuple(float_layers)))
        else:
            quant_gm = pt2e_quantize(program, examples, calib, False, tuple(float_layers),
                                     layer_prefix=layer_prefix)
    layers = torch_graph_layers(program.graph_module, strip=layer_prefix)
    float_names = {name: _folded_into(program.graph_module, quant_gm, node) for name, _, node in layers}
    quant_names = {name: _dequantized_view(quant_gm, _surviving(program.graph_module, quant_gm, node))
                   for name, _, node in layers}
    reference: dict[str, list] = {n: [] for n in float_names}
    quantized: dict[str, list] = {n: [] for n in float_names}
    with quiet():
        for sample in inputs:
            tensors = to_tensors(sample)
            ref = capture(float_gm, tensors, set(float_names.values()))
            got = capture(quant_gm, tensors, set(quant_names.values()))
            for name in float_names:
                reference[name].append(ref[float_names[name]])
                quantized[name].append(got[quant_names[name]])
    return finish([(n, k) for n, k, _ in layers], reference, quantized)


# ---------------------------------------------------------------------------------------------
# tflite: ops matched by position, layers by tensor name


def tflite_layer_errors(int8_data: bytes, fp32_data: bytes, layers: list[tuple[str, str]], feeds) -> list[LayerError]:
    """Per-layer error of an int8 .tflite against the fp32 .tflite of the same route. `feeds`:
    samples, each a list of batch-1 float arrays in model input order. Ops are matched by position
    among compute ops; a layer's output is its last op's output."""
    with quiet_native_output():
        q_it, q_ops = tflite_ops(int8_data, keep_tensors=True)
        f_it, f_ops = tflite_ops(fp32_data, keep_tensors=True)
    if [o[0] for o in q_ops] != [o[0] for o in f_ops]:
        raise ArtifactError(
            "the int8 and fp32 .tflite have different op sequences, so their tensors cannot be matched "
            f"(int8: {len(q_ops)} compute ops, fp32: {len(f_ops)})",
            hint="diff compares an int8 artifact with the fp32 artifact of the same route",
        )
    names = [n for n, _ in layers]
    by_layer = keras_op_layers(f_ops, names) if names else {}
    if not by_layer:  # no layer names: one row per compute op
        by_layer = {f"{op}#{i}": [i] for i, (op, _, _) in enumerate(f_ops)}
        layers = [(k, k.split("#")[0]) for k in by_layer]
    kinds = dict(layers)
    ordered = sorted(by_layer, key=lambda k: by_layer[k][-1])
    reference = {k: [] for k in ordered}
    quantized = {k: [] for k in ordered}
    q_details = {t["index"]: t for t in q_it.get_tensor_details()}
    for sample in feeds:
        for it in (q_it, f_it):
            _feed(it, sample)
        for k in ordered:
            pos = by_layer[k][-1]
            reference[k].append(f_it.get_tensor(f_ops[pos][1]).astype(np.float32))
            quantized[k].append(_dequantize(q_it.get_tensor(q_ops[pos][1]), q_details[q_ops[pos][1]]))
    return finish([(k, kinds.get(k, f_ops[by_layer[k][-1]][0])) for k in ordered], reference, quantized)


def onnx_layer_errors(int8_data: bytes, fp32_data: bytes, layers: list[tuple[str, str]], feeds) -> list[LayerError]:
    """Per-layer error of an int8 (QDQ) .onnx against the fp32 .onnx of the same route (Keras -> .onnx: the
    quantizer keeps tf2onnx's node and tensor names, and folds an activation into the node before it, which
    then writes the activation's tensor). A layer's output is the tensor its last surviving node writes; in
    the int8 graph, read after the QuantizeLinear/DequantizeLinear pair that follows it, as the next layer
    reads it. Both graphs run with onnxruntime's graph optimizations off, so the QDQ arithmetic is the one
    written."""
    import onnx

    fp32, int8 = onnx.load_from_string(fp32_data), onnx.load_from_string(int8_data)
    kinds = dict(layers)
    ops = [n for n in int8.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    bare = onnx.GraphProto()
    bare.node.extend(ops)
    last = {layer: nodes[-1] for layer, nodes in keras_onnx_nodes(onnx.ModelProto(graph=bare), list(kinds)).items()}
    position = {n.name: i for i, n in enumerate(ops)}
    written = {n.name: n.output[0] for n in ops}
    readers: dict[str, list] = {}
    for node in int8.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def read_as_next(tensor: str) -> str:  # tensor -> Q -> DQ: the DQ's output
        q = next((r for r in readers.get(tensor, []) if r.op_type == "QuantizeLinear"), None)
        dq = q and next((r for r in readers.get(q.output[0], []) if r.op_type == "DequantizeLinear"), None)
        return dq.output[0] if dq else tensor

    in_fp32 = {o for n in fp32.graph.node for o in n.output}
    ordered = sorted(last, key=lambda k: position[last[k]])
    f_names = [written[last[k]].removesuffix("_QuantizeLinear_Input") for k in ordered]
    lost = [k for k, t in zip(ordered, f_names) if t not in in_fp32]
    if lost:
        raise ArtifactError(f"the fp32 .onnx has no tensor for layer(s) {', '.join(lost)} of the int8 .onnx",
                            hint="diff compares an int8 artifact with the fp32 artifact of the same route")
    q_names = [read_as_next(written[last[k]]) for k in ordered]
    f_run, q_run = _onnx_session(fp32, f_names), _onnx_session(int8, q_names)
    reference = {k: [] for k in ordered}
    quantized = {k: [] for k in ordered}
    for sample in feeds:
        for run, into in ((f_run, reference), (q_run, quantized)):
            for k, value in zip(ordered, run(sample)):
                into[k].append(np.asarray(value, np.float32))
    return finish([(k, kinds[k]) for k in ordered], reference, quantized)


def _onnx_session(proto, tensors: list[str]):
    """A function sample -> the values of `tensors` (named intermediate tensors made graph outputs)."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in dict.fromkeys(tensors) if t not in present)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    types = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}

    def run(sample):
        feed = {i.name: np.asarray(x).astype(types.get(i.type, np.float32)).reshape(
            [d if isinstance(d, int) else 1 for d in i.shape]) for i, x in zip(inputs, sample)}
        return session.run(tensors, feed)

    return run


def _feed(it, sample) -> None:
    for d, x in zip(it.get_input_details(), sample):
        x = np.asarray(x, np.float32).reshape(d["shape"])
        scale, zero = d["quantization"]
        if d["dtype"] != np.float32 and scale:
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale) + zero, info.min, info.max)
        it.set_tensor(d["index"], x.astype(d["dtype"]))
    it.invoke()


def _dequantize(x: np.ndarray, details: dict) -> np.ndarray:
    if x.dtype == np.float32:
        return x.copy()
    params = details.get("quantization_parameters") or {}
    scales, zeros = params.get("scales"), params.get("zero_points")
    if scales is None or len(scales) == 0:
        scale, zero = details["quantization"]
        return (x.astype(np.float32) - zero) * scale
    axis = params.get("quantized_dimension", 0)
    shape = [1] * x.ndim
    if len(scales) > 1:
        shape[axis] = len(scales)
    return (x.astype(np.float32) - np.reshape(zeros, shape)) * np.reshape(scales, shape)
