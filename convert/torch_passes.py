"""Graph passes on exported torch graphs, applied before lowering to ExecuTorch.

Each pass takes a torch.fx GraphModule (usually `ExportedProgram.module()`, where weights and
constants are `get_attr` nodes), edits it in place, and returns how many nodes it changed. Values
computed by the graph never change; callers re-export the module afterwards with torch.export.

Most of them clean up what Keras' torch backend emits (NHWC activations, HWIO kernels permuted
inside the graph, `matmul + add` for Dense layers, no-op dtype conversions and metadata asserts),
so that XNNPACK sees the same patterns a native PyTorch model gives it.
"""

from __future__ import annotations

import torch
import torch.fx

_aten = torch.ops.aten

# Ops that only copy or rearrange their input: safe to evaluate once when the input is a constant.
_LAYOUT_OPS = {
    _aten.permute.default,
    _aten.contiguous.default,
    _aten.clone.default,
    _aten.reshape.default,
    _aten.view.default,
    _aten.t.default,
    _aten.transpose.int,
    _aten.unsqueeze.default,
    _aten.squeeze.dim,
    _aten.flatten.using_ints,
    _aten.to.dtype,
    _aten.to.dtype_layout,
    _aten._to_copy.default,
}
_CONVERSION_OPS = {_aten.to.dtype, _aten.to.dtype_layout, _aten._to_copy.default, _aten.to.device}
_MEMORY_FORMAT_HINT_OPS = {_aten.contiguous.default, _aten.clone.default}


def strip_channels_last_hints(gm: torch.fx.GraphModule) -> int:
    """Drop `memory_format=torch.channels_last` from `aten.contiguous` / `aten.clone` nodes.

    Keras' torch backend calls `x.contiguous(memory_format=torch.channels_last)` before each
    convolution. The keyword changes strides only, never values, but it leaves tensors of mixed
    dim orders in the graph: ExecuTorch's portable convolution rejects them at run time and
    XNNPACK's channels-last pass refuses to lower quantized convolutions fed by them. Without it
    the node is a plain contiguous copy with the same values.
    """
    changed = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _MEMORY_FORMAT_HINT_OPS:
            if node.kwargs.get("memory_format") == torch.channels_last:
                node.kwargs = {k: v for k, v in node.kwargs.items() if k != "memory_format"}
                changed += 1
    if changed:
        gm.recompile()
    return changed


# ATen's alias ops, each by the op it aliases (same schema). torch.export keeps the alias a model calls
# (torch.multiply, torch.subtract, torch.true_divide; Keras' torch backend calls them for keras.ops), and the
# PT2E quantizers (XNNPACK's, litert-torch's) annotate only aten.mul/add/sub/div: every alias stayed float.
_ALIASES = {
    _aten.multiply.Tensor: _aten.mul.Tensor, _aten.multiply.Scalar: _aten.mul.Scalar,
    _aten.multiply_.Tensor: _aten.mul_.Tensor, _aten.multiply_.Scalar: _aten.mul_.Scalar,
    _aten.subtract.Tensor: _aten.sub.Tensor, _aten.subtract.Scalar: _aten.sub.Scalar,
    _aten.subtract_.Tensor: _aten.sub_.Tensor, _aten.subtract_.Scalar: _aten.sub_.Scalar,
    _aten.divide.Tensor: _aten.div.Tensor, _aten.divide.Scalar: _aten.div.Scalar,
    _aten.divide.Tensor_mode: _aten.div.Tensor_mode, _aten.divide.Scalar_mode: _aten.div.Scalar_mode,
    _aten.divide_.Tensor: _aten.div_.Tensor, _aten.divide_.Scalar: _aten.div_.Scalar,
    _aten.true_divide.Tensor: _aten.div.Tensor, _aten.true_divide.Scalar: _aten.div.Scalar,
    _aten.true_divide_.Tensor: _aten.div_.Tensor, _aten.true_divide_.Scalar: _aten.div_.Scalar,
}


def aliases_to_canonical_ops(gm: torch.fx.GraphModule) -> int:
    """multiply -> mul, subtract -> sub, divide / true_divide -> div: the same function under the name
    the quantizers and the other passes look for. Returns the number of nodes renamed."""
    changed = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _ALIASES:
            node.target = _ALIASES[node.target]
            changed += 1
    if changed:
        gm.recompile()
    return changed


def remove_identity_conversions(gm: torch.fx.GraphModule) -> int:
    """Remove `aten._assert_tensor_metadata` checks and dtype/device conversions that convert
    nothing (same dtype, same device, no memory-format change)."""
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target == _aten._assert_tensor_metadata.default and not node.users:
            gm.graph.erase_node(node)
            changed += 1
        elif node.target in _CONVERSION_OPS and _converts_nothing(node):
            if any(user.op == "output" for user in node.users):
                continue  # keep graph outputs as they are: their names are part of the signature
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            changed += 1
    if changed:
        gm.recompile()
    return changed


def fold_constant_layout_ops(gm: torch.fx.GraphModule) -> int:
    """Evaluate permutes, reshapes, copies and conversions of constants once, at export time.

    Keras keeps kernels in HWIO order and permutes them inside the graph on every call; folded,
    each convolution gets a constant OIHW weight, as XNNPACK (and the quantizer) expect.
    """
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _LAYOUT_OPS:
            continue
        inputs = node.all_input_nodes
        if not inputs or any(n.op != "get_attr" for n in inputs):
            continue
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: _fetch_attr(gm, n.target))
        with torch.no_grad():
            value = node.target(*args, **kwargs)
        if not isinstance(value, torch.Tensor):
            continue
        _replace_with_constant(gm, node, value.contiguous(), "_folded")
        changed += 1
    if changed:
        _drop_unused_constants(gm)
        gm.recompile()
    return changed


def matmul_add_to_linear(gm: torch.fx.GraphModule) -> int:
    """Rewrite `matmul(x, W) [+ b]` with a constant 2-D W (and constant 1-D b) as `linear(x, W.T, b)`.

    Keras Dense layers export as matmul + add; PyTorch's quantizers (XNNPACKQuantizer among them)
    only recognise `linear`, so without this the largest weights of a Keras model stay float.
    """
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (_aten.matmul.default, _aten.mm.default):
            continue
        x, w = node.args[:2]
        weight = _constant(gm, w)
        if weight is None or weight.dim() != 2 or not weight.is_floating_point():
            continue
        bias_node, replaced = None, node
        if len(node.users) == 1:
            add = next(iter(node.users))
            is_plain_add = add.op == "call_function" and add.target == _aten.add.Tensor and "alpha" not in add.kwargs
            if is_plain_add and len(add.args) == 2:
                other = add.args[1] if add.args[0] is node else add.args[0]
                bias = _constant(gm, other)
                if bias is not None and bias.shape == (weight.shape[1],) and bias.dtype == weight.dtype:
                    bias_node, replaced = other, add
        weight_t = _register_constant(gm, weight.t().contiguous(), "_linear_weight")
        with gm.graph.inserting_before(replaced):
            w_node = gm.graph.get_attr(weight_t)
            linear = gm.graph.call_function(_aten.linear.default, (x, w_node, bias_node))
        linear.meta = dict(replaced.meta)
        replaced.replace_all_uses_with(linear)
        gm.graph.erase_node(replaced)
        if replaced is not node:
            gm.graph.erase_node(node)
        changed += 1
    if changed:
        _drop_unused_constants(gm)
        gm.recompile()
    return changed


def convert_to_half(gm: torch.fx.GraphModule) -> int:
    """Make the graph compute in float16 while its inputs and outputs stay float32.

    Float32 weights and constants become float16, explicit float32 dtypes in the graph (casts,
    factory ops) become float16, float32 inputs are cast to float16 on entry and float16 outputs
    back to float32 on exit. Returns the number of tensors and nodes converted.
    """
    changed = 0
    for owner, name, tensor in _tensor_attrs(gm):
        if tensor.dtype == torch.float32:
            converted = tensor.detach().to(torch.float16)
            if isinstance(tensor, torch.nn.Parameter):
                owner._parameters[name] = torch.nn.Parameter(converted, requires_grad=False)
            elif name in owner._buffers:
                owner._buffers[name] = converted
            else:
                setattr(owner, name, converted)
            changed += 1
    for node in gm.graph.nodes:
        if node.op == "call_function":
            args = tuple(torch.float16 if a is torch.float32 else a for a in node.args)
            kwargs = {k: torch.float16 if v is torch.float32 else v for k, v in node.kwargs.items()}
            if args != node.args or kwargs != node.kwargs:
                node.args, node.kwargs = args, kwargs
                changed += 1
    graph = gm.graph
    for node in [n for n in graph.nodes if n.op == "placeholder" and _dtype(n) == torch.float32]:
        users = [u for u in node.users if u.op != "call_module"]  # e.g. `_guards_fn` sees the real input
        with graph.inserting_after(node):
            cast = graph.call_function(_aten._to_copy.default, (node,), {"dtype": torch.float16})
        for user in users:
            user.replace_input_with(node, cast)
        changed += 1
    output = next(n for n in graph.nodes if n.op == "output")

    def cast_back(arg):
        nonlocal changed
        if isinstance(arg, torch.fx.Node) and _dtype(arg) in (torch.float16, torch.float32):
            with graph.inserting_before(output):
                changed += 1
                return graph.call_function(_aten._to_copy.default, (arg,), {"dtype": torch.float32})
        return arg

    output.args = torch.fx.node.map_aggregate(output.args, cast_back)
    gm.recompile()
    return changed


# ---------------------------------------------------------------------------------------------
# Helpers


def _converts_nothing(node: torch.fx.Node) -> bool:
    src, out = node.args[0], node
    if not isinstance(src, torch.fx.Node):
        return False
    a, b = src.meta.get("val"), out.meta.get("val")
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return False
    fmt = node.kwargs.get("memory_format")
    return a.dtype == b.dtype and a.device == b.device and fmt in (None, torch.preserve_format)


def _dtype(node: torch.fx.Node):
    val = node.meta.get("val")
    return val.dtype if isinstance(val, torch.Tensor) else None


def _fetch_attr(gm: torch.nn.Module, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _constant(gm: torch.fx.GraphModule, arg) -> torch.Tensor | None:
    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        value = _fetch_attr(gm, arg.target)
        if isinstance(value, torch.Tensor):
            return value
    return None


def row_major(value: torch.Tensor) -> torch.Tensor:
    """VALUE with the row-major strides of its shape on every dim, size-1 dims included.

    ExecuTorch reads a tensor's dim order from its strides, and `.contiguous()` keeps a tensor
    whose only out-of-order dims have size 1 as it is: a (1, 1, 64) constant permuted to (1, 64, 1)
    keeps strides (64, 1, 64), which read as dim order (0, 2, 1). The portable kernels then refuse
    the op that reads it ('input tensors have different dim orders') and XNNPACK fails to propagate
    its shapes (xnn_status_invalid_parameter): a Keras Conv1D's bias add failed the fp32 .pte."""
    strides, step = [], 1
    for size in reversed(value.shape):
        strides.insert(0, step)
        step *= max(size, 1)
    if value.layout != torch.strided or value.is_quantized or value.stride() == tuple(strides):
        return value
    return value.clone(memory_format=torch.contiguous_format)


def _register_constant(gm: torch.fx.GraphModule, value: torch.Tensor, prefix: str) -> str:
    i = 0
    while hasattr(gm, f"{prefix}{i}"):
        i += 1
    name = f"{prefix}{i}"
    gm.register_buffer(name, row_major(value.detach()))
    return name


def _replace_with_constant(gm: torch.fx.GraphModule, node: torch.fx.Node, value: torch.Tensor, prefix: str):
    name = _register_constant(gm, value, prefix)
    with gm.graph.inserting_before(node):
        attr = gm.graph.get_attr(name)
    attr.meta = dict(node.meta)
    node.replace_all_uses_with(attr)
    gm.graph.erase_node(node)


def _drop_unused_constants(gm: torch.fx.GraphModule) -> None:
    """Erase get_attr nodes nobody uses, then buffers and plain tensors no get_attr refers to
    (parameters stay: ExecuTorch drops unused parameters itself)."""
    for node in list(gm.graph.nodes):
        if node.op == "get_attr" and not node.users:
            gm.graph.erase_node(node)
    referenced = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for owner, name, tensor, path in _tensor_attrs(gm, with_path=True):
        if path not in referenced and not isinstance(tensor, torch.nn.Parameter):
            if name in owner._buffers:
                del owner._buffers[name]
            else:
                delattr(owner, name)


def _tensor_attrs(gm: torch.nn.Module, with_path: bool = False):
    """(owning module, attribute name, tensor[, dotted path]) for every parameter, buffer and
    plain tensor attribute."""
    found = []
    for prefix, module in gm.named_modules():
        attrs = {**vars(module), **module._parameters, **module._buffers}
        for name, value in attrs.items():
            if isinstance(value, torch.Tensor):
                path = f"{prefix}.{name}" if prefix else name
                found.append((module, name, value, path) if with_path else (module, name, value))
    return found
