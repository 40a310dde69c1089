"""Graph passes that make a Keras (torch backend) graph as lean as a native PyTorch one.

Keras' torch backend runs every layer in NHWC and wraps each convolution in a pair of permutes
(NHWC -> NCHW before, NCHW -> NHWC after); BatchNormalization exports as `(x - mean) *
(rsqrt(var + eps) * gamma) + beta` on the activation. XNNPACK then runs a transpose around every
conv and four elementwise ops per BatchNorm (959 ops for a MobileNetV2 whose .tflite has 67).

The passes, in the order `clean_layout_and_batchnorm` runs them:
  functionalize_inplace    x.mul_(y) -> mul(x, y) where nobody else sees x (lets the rest match)
  fold_constant_subgraphs  ops on constants only (rsqrt(var + eps) * gamma) computed once
  fold_affine_into_conv    conv/linear -> [permute] -> sub/add/mul/div by per-channel constants:
                           folded into the conv's (linear's) weight and bias (BatchNorm folding)
  sink_permutes            a permute moves below elementwise ops, pads, and means, and meets its
                           inverse: both go; chains of permutes merge into one
  replicate_pad_to_neg_inf the replicate pad Keras puts before a 'same' max pool -> a -inf pad
  prelu_pattern_to_prelu   relu(x) + (-alpha) * relu(-x) -> prelu(x, alpha)
Each takes a GraphModule (`ExportedProgram.module()`, constants as get_attr nodes), edits it in
place and returns the number of nodes it changed; values stay the same up to float rounding.
"""

from __future__ import annotations

from edgeship.convert.torch_passes import aliases_to_canonical_ops, fold_constant_layout_ops, row_major

# elementwise ops of one tensor: they commute with any permutation of their input
_UNARY = ("relu", "relu6", "hardtanh", "clamp", "neg", "sigmoid", "tanh", "hardswish", "hardsigmoid", "silu",
          "gelu", "elu", "leaky_relu", "abs", "exp", "sqrt", "rsqrt", "clone", "contiguous", "alias",
          "dropout", "_to_copy", "to")
_BINARY = ("add", "sub", "mul", "div", "maximum", "minimum")
_INPLACE = {"mul_": "mul", "add_": "add", "sub_": "sub", "div_": "div", "rsqrt_": "rsqrt", "relu_": "relu",
            "clamp_": "clamp", "hardtanh_": "hardtanh"}


def clean_layout_and_batchnorm(gm) -> dict[str, int]:
    """All the passes, to a fixed point; {what: nodes changed}."""
    done = {"alias ops renamed (multiply -> mul)": aliases_to_canonical_ops(gm), "in-place ops made functional": 0, "constant subgraphs folded": 0,
            "BatchNorm/affine folded into conv or linear": 0, "permutes cancelled or merged": 0,
            "replicate pads before max pools -> -inf pads": 0, "PReLU patterns -> prelu": 0}
    for _ in range(8):
        step = {
            "in-place ops made functional": functionalize_inplace(gm),
            "constant subgraphs folded": fold_constant_subgraphs(gm),
            "BatchNorm/affine folded into conv or linear": fold_affine_into_conv(gm),
            "permutes cancelled or merged": sink_permutes(gm),
            "replicate pads before max pools -> -inf pads": replicate_pad_to_neg_inf(gm),
            "PReLU patterns -> prelu": prelu_pattern_to_prelu(gm),
        }
        for k, v in step.items():
            done[k] += v
        if not any(step.values()):
            break
    return done


# ---------------------------------------------------------------------------------------------


def functionalize_inplace(gm) -> int:
    import torch

    changed = 0
    for node in list(gm.graph.nodes):
        name = _op_name(node)
        if name not in _INPLACE:
            continue
        target = node.args[0]
        if not isinstance(target, torch.fx.Node) or target.op != "call_function" or len(target.users) != 1:
            continue  # someone else reads the tensor it writes (or it is a weight): leave it
        overload = node.target._overloadname
        new = getattr(getattr(torch.ops.aten, _INPLACE[name]), overload)
        node.target = new
        changed += 1
    if changed:
        gm.recompile()
    return changed


def fold_constant_subgraphs(gm) -> int:
    """Evaluate call_function nodes whose tensor inputs are all constants (get_attr)."""
    import torch

    changed = fold_constant_layout_ops(gm)
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not node.all_input_nodes:
            continue
        if any(n.op != "get_attr" for n in node.all_input_nodes):
            continue
        name = _op_name(node)
        if any(w in name for w in ("rand", "dropout", "empty", "assert")) or name.endswith("_"):
            continue
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: _fetch(gm, n.target).clone())
        try:
            with torch.no_grad():
                value = node.target(*args, **kwargs)
        except Exception:
            continue
        if not isinstance(value, torch.Tensor):
            continue
        _replace_with_constant(gm, node, value.contiguous())
        changed += 1
    if changed:
        _drop_unused(gm)
        gm.recompile()
    return changed


def fold_affine_into_conv(gm) -> int:
    """conv2d(x, W, b) [-> permute(s)] -> (sub|add|mul|div)(., c) ... with c constant and
    per-channel along the conv's output channel: fold each into W and b. The same for linear
    (channel = last dim). Returns the number of affine ops folded."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.conv2d.default, aten.linear.default):
            continue
        weight = _const(gm, node.args[1])
        if weight is None or not weight.is_floating_point():
            continue
        bias_arg = node.args[2] if len(node.args) > 2 else None
        bias = _const(gm, bias_arg) if bias_arg is not None else torch.zeros(weight.shape[0], dtype=weight.dtype)
        if bias is None:
            continue
        is_conv = node.target == aten.conv2d.default
        rank, channel = (4, 1) if is_conv else (None, -1)
        w, b, folded, current = weight.clone(), bias.clone(), [], node
        while len(current.users) == 1:
            user = next(iter(current.users))
            name = _op_name(user)
            if name == "permute" and rank is not None:
                perm = list(user.args[1])
                channel = perm.index(channel % rank)
                current = user
                continue
            if name in ("contiguous", "clone") and not user.kwargs:
                current = user
                continue
            if name not in ("add", "sub", "mul", "div") or len(user.args) != 2 or user.kwargs:  # alpha, rounding_mode
                break
            other_first = user.args[1] is current
            other = user.args[0] if other_first else user.args[1]
            c = _per_channel(gm, other, channel, rank, w.shape[0])
            if c is None or (other_first and name not in ("add", "mul")):
                break
            if name == "add":
                b = b + c
            elif name == "sub":
                b = b - c
            elif name == "mul":
                w, b = w * c.reshape(-1, *[1] * (w.dim() - 1)), b * c
            else:
                w, b = w / c.reshape(-1, *[1] * (w.dim() - 1)), b / c
            folded.append((user, 1 if other_first else 0))  # (op, index of its activation input)
            current = user
        if not folded:
            continue
        w_name, b_name = _register(gm, w.contiguous(), "_fused_weight"), _register(gm, b.contiguous(), "_fused_bias")
        with gm.graph.inserting_before(node):
            w_node, b_node = gm.graph.get_attr(w_name), gm.graph.get_attr(b_name)
        args = list(node.args) + [None] * (3 - len(node.args))
        args[1], args[2] = w_node, b_node
        node.args = tuple(args)
        for op, index in folded:  # each becomes its activation input (the previous one, rewritten)
            op.replace_all_uses_with(op.args[index])
            gm.graph.erase_node(op)
        changed += len(folded)
    if changed:
        _drop_unused(gm)
        gm.recompile()
    return changed


def _overlapping(node) -> bool:
    """Whether NODE's value has elements sharing memory (an expand's zero strides): a copy of it is the
    copy that a later view needs (repeat_interleave: unsqueeze, expand, clone, view), not a layout hint."""
    val = node.meta.get("val")
    strides = val.stride() if hasattr(val, "stride") else ()
    return any(st == 0 and size > 1 for st, size in zip(strides, getattr(val, "shape", ())))


def sink_permutes(gm) -> int:
    """Move each permute below the ops that do not care about layout, merge permute chains and
    drop identity permutes: a conv's NCHW -> NHWC permute then meets the next conv's NHWC -> NCHW
    one and both go. Returns the number of permutes removed or merged."""
    import torch

    aten = torch.ops.aten
    graph = gm.graph
    removed = 0
    before = sum(1 for n in graph.nodes if _op_name(n) == "permute")
    for _ in range(400):
        moved = False
        for node in list(graph.nodes):
            if node.op != "call_function":
                continue
            name = _op_name(node)
            if name in ("contiguous", "clone") and not node.kwargs and _is_node(node.args[0]) \
                    and not any(u.op == "output" for u in node.users) and not _overlapping(node.args[0]):
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
                moved = True
                continue
            if name != "permute":
                continue
            src, perm = node.args[0], list(node.args[1])
            if perm == sorted(perm) and not any(u.op == "output" for u in node.users):
                node.replace_all_uses_with(src)
                graph.erase_node(node)
                moved = True
                continue
            if _op_name(src) == "permute":  # permute(permute(x, p), q) -> permute(x, p then q)
                inner = list(src.args[1])  # also where the inner one has other users (a residual branch's
                node.args = (src.args[0], [inner[i] for i in perm])  # two convs): each reads x directly
                if not src.users:
                    graph.erase_node(src)
                moved = True
                continue
            users = list(node.users)
            if users and all(_can_sink_into(gm, u, node, perm) for u in users):
                for u in users:
                    _sink_into(gm, u, node, perm, aten)
                if not node.users:
                    graph.erase_node(node)
                moved = True
        if not moved:
            break
    for node in reversed(list(graph.nodes)):  # permutes left behind without users
        if _op_name(node) == "permute" and not node.users:
            graph.erase_node(node)
    after = sum(1 for n in graph.nodes if _op_name(n) == "permute")
    removed = max(0, before - after)
    _drop_unused(gm)
    gm.recompile()
    return removed


def replicate_pad_to_neg_inf(gm) -> int:
    """pad(x, p, 'replicate') feeding only max pools whose windows are wider than each pad:
    pad with -inf instead. Same values (a window that covers padding also covers the edge element
    the padding copies); a constant pad lowers to XNNPACK, a replicate one to gathers that do not."""
    import torch

    changed = 0
    for node in list(gm.graph.nodes):
        if _op_name(node) != "pad" or len(node.args) < 3 or node.args[2] != "replicate":
            continue
        pads = list(node.args[1])
        if not node.users or len(pads) % 2 or any(pads[4:]):
            continue  # only the two spatial dims (W, H: the first four entries) may be padded
        pads = pads[:4]
        ok = True
        for user in node.users:
            if _op_name(user) != "max_pool2d" or user.args[0] is not node:
                ok = False
                break
            kernel = list(user.args[1]) if isinstance(user.args[1], (list, tuple)) else [user.args[1]] * 2
            kernel = kernel * 2 if len(kernel) == 1 else kernel
            padding = user.args[3] if len(user.args) > 3 else user.kwargs.get("padding", 0)
            if any(padding if isinstance(padding, (list, tuple)) else [padding]):
                ok = False
                break
            # pads = [w_before, w_after, h_before, h_after]; kernel = [kh, kw]
            widths = [kernel[1], kernel[1], kernel[0], kernel[0]]
            if any(p >= k for p, k in zip(pads, widths)):
                ok = False
                break
        if not ok:
            continue
        node.target = torch.ops.aten.constant_pad_nd.default
        node.args = (node.args[0], pads, float("-inf"))
        node.kwargs = {}
        changed += 1
    if changed:
        gm.recompile()
    return changed


def prelu_pattern_to_prelu(gm) -> int:
    """relu(x) + c * relu(-x), c a per-channel constant (Keras' PReLU: -alpha * relu(-x)):
    prelu(x, -c). One op, which XNNPACK runs natively."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for add in list(gm.graph.nodes):
        if _op_name(add) != "add" or len(add.args) != 2 or add.kwargs:
            continue
        for pos, neg in (add.args, add.args[::-1]):
            if _op_name(pos) != "relu" or _op_name(neg) != "mul" or len(neg.args) != 2:
                continue
            x = pos.args[0]
            for c_arg, r in (neg.args, neg.args[::-1]):
                c = _const(gm, c_arg)
                if c is None or _op_name(r) != "relu" or _op_name(r.args[0]) != "neg" or r.args[0].args[0] is not x:
                    continue
                val = x.meta.get("val")
                rank = val.dim() if isinstance(val, torch.Tensor) else None
                n = val.shape[1] if rank and rank >= 2 else None
                alpha = _per_channel(gm, c_arg, 1, rank, n) if n else None
                if alpha is None or rank not in (2, 4) or c.dim() > rank:
                    continue
                with gm.graph.inserting_before(add):
                    w = gm.graph.get_attr(_register(gm, (-alpha).contiguous(), "_prelu_weight"))
                    prelu = gm.graph.call_function(aten.prelu.default, (x, w))
                prelu.meta = dict(add.meta)
                add.replace_all_uses_with(prelu)
                for dead in (add, neg, r, r.args[0], pos):
                    if not dead.users:
                        gm.graph.erase_node(dead)
                changed += 1
                break
            else:
                continue
            break
    if changed:
        _drop_unused(gm)
        gm.recompile()
    return changed


def _can_sink_into(gm, user, permute, perm) -> bool:
    import torch

    if user.op != "call_function":
        return False
    name = _op_name(user)
    if name in _UNARY:
        return user.args[0] is permute and not any(isinstance(a, torch.fx.Node) for a in user.args[1:]) \
            and "memory_format" not in user.kwargs
    if name in _BINARY and len(user.args) == 2 and "alpha" not in user.kwargs:
        for other in user.args:
            if other is permute:
                continue
            if isinstance(other, (int, float)):
                continue
            if _op_name(other) == "permute" and list(other.args[1]) == perm:
                continue
            c = _const(gm, other)
            if c is not None and c.dim() <= len(perm):
                continue
            return False
        return True
    if name == "pad" and user.args[0] is permute:
        return len(user.args[1]) % 2 == 0 and len(user.args[1]) // 2 <= len(perm)
    if name == "mean" and user.args[0] is permute and len(user.args) >= 2:
        if _keepdim(user):  # the reduced dims stay, as size 1: the permute moves below the mean unchanged
            return True
        dims = [d % len(perm) for d in user.args[1]]
        rest = [perm[d] for d in range(len(perm)) if d not in dims]
        return rest == sorted(rest)
    return False


def _keepdim(mean) -> bool:
    return bool(mean.args[2]) if len(mean.args) > 2 else bool(mean.kwargs.get("keepdim", False))


def _sink_into(gm, user, permute, perm, aten) -> None:
    """user(permute(x), ...) -> permute(user(x, ...)) (a mean without keepdim over the permuted dims: the
    permute disappears)."""
    import torch

    graph = gm.graph
    src = permute.args[0]
    name = _op_name(user)
    inverse = [perm.index(i) for i in range(len(perm))]
    if name == "mean":
        dims = [perm[d % len(perm)] for d in user.args[1]]
        user.args = (src, sorted(dims), *user.args[2:])
        if not _keepdim(user):  # the permuted dims were the reduced ones: the rest are in order already
            return
    if name == "pad":
        pads = list(user.args[1])
        per_dim = {len(perm) - 1 - i: (pads[2 * i], pads[2 * i + 1]) for i in range(len(pads) // 2)}
        new = {perm[d]: p for d, p in per_dim.items()}  # output dim d is input dim perm[d]
        deepest = min(new) if new else len(perm) - 1
        flat = []
        for d in range(len(perm) - 1, deepest - 1, -1):
            flat += list(new.get(d, (0, 0)))
        user.args = (src, flat, *user.args[2:])
    else:
        args = []
        for a in user.args:
            if a is permute:
                args.append(src)
            elif isinstance(a, torch.fx.Node) and _op_name(a) == "permute" and list(a.args[1]) == perm:
                args.append(a.args[0])
            elif isinstance(a, torch.fx.Node) and a.op == "get_attr":
                c = _fetch(gm, a.target)
                c = c.reshape([1] * (len(perm) - c.dim()) + list(c.shape)).permute(inverse).contiguous()
                with graph.inserting_before(user):
                    args.append(graph.get_attr(_register(gm, c, "_permuted_const")))
            else:
                args.append(a)
        user.args = tuple(args)
    with graph.inserting_after(user):
        out = graph.call_function(aten.permute.default, (user, perm))
    for u in list(user.users):
        if u is not out:
            u.replace_input_with(user, out)
    user.meta.pop("val", None)


# ---------------------------------------------------------------------------------------------
# Helpers


def _op_name(node) -> str:
    if getattr(node, "op", None) != "call_function":
        return ""
    target = node.target
    name = getattr(target, "_opname", None) or getattr(target, "__name__", "")
    return name


def _is_node(x) -> bool:
    import torch

    return isinstance(x, torch.fx.Node)


def _fetch(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _const(gm, arg):
    import torch

    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        value = _fetch(gm, arg.target)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _per_channel(gm, arg, channel: int, rank, n: int):
    """A constant operand as a (n,) per-channel vector along `channel`, or None if it is not one."""
    import torch

    if isinstance(arg, (int, float)):
        return torch.full((n,), float(arg))
    c = _const(gm, arg)
    if c is None or not c.is_floating_point():
        return None
    r = rank or max(c.dim(), 2)
    if c.dim() > r:
        return None
    shape = [1] * (r - c.dim()) + list(c.shape)
    ch = channel % r
    if any(s != 1 for i, s in enumerate(shape) if i != ch) or shape[ch] not in (1, n):
        return None
    return c.reshape(-1).expand(n).clone() if c.numel() in (1, n) else None


def _register(gm, value, prefix: str) -> str:
    i = 0
    while hasattr(gm, f"{prefix}{i}"):
        i += 1
    gm.register_buffer(f"{prefix}{i}", row_major(value.detach()))  # not .contiguous(): see row_major
    return f"{prefix}{i}"


def _replace_with_constant(gm, node, value) -> None:
    name = _register(gm, value, "_const")
    with gm.graph.inserting_before(node):
        attr = gm.graph.get_attr(name)
    attr.meta = {"val": value}
    node.replace_all_uses_with(attr)
    gm.graph.erase_node(node)


def _drop_unused(gm) -> None:
    import torch

    for node in list(gm.graph.nodes):
        if node.op == "get_attr" and not node.users:
            gm.graph.erase_node(node)
    referenced = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in list(gm._buffers):
        if name not in referenced and (name.startswith("_") and not isinstance(gm._buffers[name], torch.nn.Parameter)):
            del gm._buffers[name]
