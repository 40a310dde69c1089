"""What a layer is, the one definition that accuracy-aware mode (ConvertOptions.float_layers),
`edgeship diff` and the routes share:

  torch  a named child module of the model that holds a conv or linear op; nn.Sequential,
         nn.ModuleList and nn.ModuleDict are opened ('0', '2', 'features.3'), any other module
         is one layer however much it holds inside ('fragile' for a custom block)
  keras  a top-level layer of the model that holds weights (a nested model is one layer)

and where a layer's ops sit in a converted graph: torch.export's nn_module_stack for torch
graphs, tensor names for .tflite. Frameworks are imported inside the functions.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from edgeship.errors import InputError

CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


COMPUTE_OPS = ("conv", "linear", "addmm", "matmul", "mm", "bmm")


def normalize_fqn(fqn: str) -> str:
    return fqn[len("L['self'].") :] if fqn.startswith("L['self'].") else fqn


def type_name(t) -> str:
    return t.__name__ if isinstance(t, type) else str(t).rsplit(".", 1)[-1].strip("'>")


def node_layer(node, strip: str = "") -> tuple[str, str] | None:
    """(layer name, module type) of a graph node: its outermost non-container module."""
    stack = node.meta.get("nn_module_stack") or {}
    for fqn, kind in stack.values():
        name = normalize_fqn(fqn)
        if strip and name.startswith(strip):
            name = name[len(strip):]
        elif strip:
            continue
        if name and type_name(kind) not in CONTAINERS:
            return name, type_name(kind)
    return None


def is_compute(node) -> bool:
    target = str(getattr(node.target, "__name__", node.target)).lower()
    return node.op == "call_function" and any(op in target.split(".")[0] for op in COMPUTE_OPS)


def torch_graph_layers(graph_module, strip: str = "") -> list[tuple[str, str, str]]:
    """[(layer name, module type, output node name)] in execution order, for layers that hold a
    conv or linear op. The output node is the layer's last node with a user outside the layer."""
    members: dict[str, list] = {}
    kinds: dict[str, str] = {}
    compute: set[str] = set()
    for node in graph_module.graph.nodes:
        found = node_layer(node, strip) if node.op == "call_function" else None
        if not found:
            continue
        members.setdefault(found[0], []).append(node)
        kinds[found[0]] = found[1]
        if is_compute(node):
            compute.add(found[0])
    out = []
    for name, nodes in members.items():
        if name not in compute:
            continue
        inside = set(nodes)
        leaving = [n for n in nodes if any(u not in inside for u in n.users)]
        out.append((name, kinds[name], (leaving or nodes)[-1].name))
    order = {n.name: i for i, n in enumerate(graph_module.graph.nodes)}
    return sorted(out, key=lambda t: order[t[2]])


SKIP_OPS = ("QUANTIZE", "DEQUANTIZE", "DELEGATE")


def tflite_ops(data: bytes, keep_tensors: bool = False):
    """(interpreter, [(op name, output tensor index, output tensor name)]) for the compute ops."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=bytes(data), experimental_preserve_all_tensors=keep_tensors,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    ops = [(op["op_name"], op["outputs"][0], names[op["outputs"][0]]) for op in it._get_ops_details()
           if op["op_name"] not in SKIP_OPS and len(op["outputs"])]
    return it, ops


def layer_of(tensor_name: str, layers: list[str]) -> str | None:
    """The Keras layer a TFLite tensor name belongs to: a '/'-separated part of the name equal to
    the layer name, or to the name with the '_N' suffix Keras adds when it rebuilds a model."""
    parts = {p for piece in tensor_name.split(";") for p in piece.split("/")}
    for layer in layers:
        if layer in parts:
            return layer
    for layer in layers:
        pattern = re.compile(re.escape(layer) + r"_\d+")
        if any(pattern.fullmatch(p) for p in parts):
            return layer
    return None


def keras_op_layers(ops: list[tuple[str, int, str]], layers: list[str]) -> dict[str, list[int]]:
    """{layer: positions of its ops}. The op that writes the model output often carries only the
    signature's name: it goes to the last layer that matched no op."""
    found: dict[str, list[int]] = {}
    for pos, (_, _, name) in enumerate(ops):
        layer = layer_of(name, layers)
        if layer:
            found.setdefault(layer, []).append(pos)
    missing = [layer for layer in layers if layer not in found]
    if missing and ops and layer_of(ops[-1][2], layers) is None:
        found[missing[-1]] = [len(ops) - 1]
    return found


def keras_onnx_layer(node_name: str) -> str:
    """The Keras layer a tf2onnx node name sits in: 'model_1/mha_1/SelectV2' -> 'mha' (TensorFlow's
    name scopes append '_1' to each scope of a traced Keras 3 call)."""
    parts = node_name.split("/")
    scope = parts[1] if len(parts) > 2 else parts[0]
    return re.sub(r"_\d+$", "", scope)


def keras_onnx_nodes(proto, layers) -> dict[str, list[str]]:
    """{layer: names of its nodes, in graph order} of a tf2onnx graph (or its QDQ form, which keeps the
    names). A layer with no node is an error naming the layers the graph has."""
    found: dict[str, list[str]] = {name: [] for name in layers}
    known = []
    for node in proto.graph.node:
        layer = keras_onnx_layer(node.name)
        if layer in found:
            found[layer].append(node.name)
        if layer not in known and "/" in node.name:
            known.append(layer)
    missing = [n for n, nodes in found.items() if not nodes]
    if missing:
        raise InputError(f"no node of the .onnx graph belongs to Keras layer(s) {', '.join(missing)}",
                         hint=f"layers the graph has: {', '.join(known[:12]) or 'none'}")
    return found


def keras_layers(keras_model) -> list[tuple[str, str]]:
    """Top-level layers of a Keras model that hold weights: (name, class name)."""
    return [(layer.name, type(layer).__name__) for layer in keras_model.layers if layer.weights]


def masked_attention(keras_model) -> list[str]:
    """The top-level Keras attention layers (MultiHeadAttention, Attention, ...) called with a mask: one that
    Keras propagates from Embedding(mask_zero=True) on their inputs, an `attention_mask`, or
    `use_causal_mask`. In int8, the mask's large negative bias and the scores are one tensor with one scale."""
    names = []
    for layer in getattr(keras_model, "layers", []):
        if "Attention" not in type(layer).__name__:
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            args = node.arguments
            if any(getattr(t, "_keras_mask", None) is not None for t in args.keras_tensors) or \
                    args.kwargs.get("attention_mask") is not None or args.kwargs.get("use_causal_mask"):
                names.append(layer.name)
                break
    return names


def denylisted_nodes(fp32_data: bytes, layers: list[str], keep: list[str]) -> list[str]:
    """Output tensor names of the ops of the `keep` layers: the TF quantization debugger's
    denylisted_nodes (the converter names ops by their output tensors, same names at fp32)."""
    _, ops = tflite_ops(fp32_data)
    by_layer = keras_op_layers(ops, layers)
    unknown = [k for k in keep if k not in by_layer]
    if unknown:
        raise InputError(f"no ops found for layer(s) {', '.join(unknown)} in the converted model",
                         hint=f"layers with ops: {', '.join(by_layer)}")
    return [ops[pos][2] for k in keep for pos in by_layer[k]]


@dataclass
class LayerError:
    name: str
    kind: str
    order: int  # execution order
    snr_db: float
    cosine: float
    max_abs_error: float
    added_db: float  # SNR lost at this layer (previous layer's SNR minus this one's)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}
