"""Graph passes that write ops XNNPACK's partitioner refuses as ops it takes, for any model.

They run on the float ATen graph before quantization and lowering (xnnpack_passes.prepare_for_xnnpack),
so the int8 quantizer sees the rewritten ops too. What the installed executorch's XNNPACK partitioner
(backends/xnnpack/partition/config) refuses, and the rewrite each pass makes:

  layer norm         no config      -> mean / sub / mul / rsqrt / add, the means with keepdim
  group norm         no config      -> the same per group, on a (N, groups, rest) view
  instance norm      to_edge: a batch norm over (1, N*C, ...) and `repeat`ed weights, no config
                                    -> the same per sample and channel, on a (N, C, rest) view
  pools              1-d pools (unsqueeze/squeeze copies), adaptive pools, avg_pool2d counting its padding
                                    -> 2-d avg/max pools on (N, C, 1, L) views, kernel = stride = in / out,
                                       explicit zero padding
  roll               to_edge: arange, fmod, index_select: no config
                                    -> per dim, cat of two slices (stride 1)
  hardsigmoid, elu, selu, celu, softplus, mish, log_sigmoid, log_softmax
                     int64 scalars cast to float, where, expm1, log1p: refused
                                    -> relu, exp, log, abs, min, hardtanh, amax, sum (exact rewrites)
  pow(x, n)          exponent 2 only -> products of x (n = 3, 4), sqrt, rsqrt, 1 / x
  cat with an empty input (a cache that starts empty), alias
                     refused    -> the cat of the rest, or the one input left; the alias's input
  values that depend on no input (arange masks and position ids, their embeddings, weight norm)
                     arange, comparisons, gather: no config -> computed once, kept as constants
  _safe_softmax      no config      -> _softmax, where the input can hold no -inf (no mask in its
                                       ancestry: safe and plain softmax then agree)
  _safe_softmax of scores + a -inf mask (key padding, attention mask), and its masking ops (eq, logical_not,
                     any, where, full_like; to_edge's)
                                    -> _softmax(scores - 3e4 * mask) * amax(1 - mask): exact, rows with
                                       every key masked still 0
  bool ops (not, and, or, views) cast to float: no config for bool
                                    -> sub / mul / maximum / view on the 0/1 float of the mask's source
  expand             no config      -> dropped where the binary op it feeds broadcasts the same
  chunk, split       split_with_sizes_copy: no config -> slices (stride 1)
  matmul (batched)   expand_copy    -> view / bmm / view, batch dims flattened (no expand)
  expand             no config      -> view, where it adds no elements (a batch-1 CLS token)
  select, unbind     no config (to_edge writes unbind as squeeze_copy) -> slice (stride 1) + view
  mul/add/sub/div.Scalar  no config -> the .Tensor op with a constant one-element tensor
  squeeze/unsqueeze  unsqueeze only on the last dim, squeeze not at all -> view
  amax, max.dim      4-D only, keepdim, dim 2 or 3 (the lowering raises otherwise)
                                    -> view to 4-D (1, before, K, after), max.dim(2, keepdim), view
  conv1d             lowered as a conv2d between layout transposes, twice per conv
                                    -> conv2d on (N, C, 1, L) views; `sink_views` then moves views
                                       below unary ops and cancels view pairs, so a conv chain stays 4-D
  mean.dim           4-D over (2, 3) with keepdim only
                                    -> (2, 3): keepdim + view; NHWC (1, 2): permute + the same;
                                       any other dims: permute them last, view, linear(1/K), view
  sum.dim_IntList    no config      -> the same linear, with a row of ones
  constants          a dim order read from their strides: (1, C, 1) permuted from (1, 1, C) reads as (0, 2, 1),
                     which the portable kernels and XNNPACK's shape propagation refuse at run time
                                    -> stored with the row-major strides of their shape
  attention's data movement (every op of it lowers; each costs a copy or a kernel call)
                     a packed projection read in parts (q, k, v) -> one linear per part
                     a constant product after a linear (q's and k's scale) -> in the linear's weights
                     views, transposes and copies in a chain -> at most one permute (run on element indices)
                     a mask's bias and kept-key count, equal in every layer -> computed once
  LSTM, GRU, RNN     kept whole by torch.export; to_edge's decomposition left split_with_sizes_copy and
                     squeeze/unsqueeze_copy per step -> decomposed first (decompose_fused), so the
                     split, squeeze and select passes rewrite those steps like any other

Every pass returns how many nodes it rewrote; each keeps the values (tests/test_xnnpack_decompose.py
compares each against eager on a minimal model; the mask and split passes: tests/test_xnnpack_passes.py).
"""

from __future__ import annotations

import functools
import math

# fused ops decomposed before the passes run, into the ops the passes rewrite, by kind: torch.export
# keeps them whole and to_edge decomposes them after the passes, into ops XNNPACK refuses (SDPA's
# _safe_softmax and expand; an LSTM/GRU's split_with_sizes_copy, squeeze_copy and unsqueeze_copy per step)
FUSED_OPS = {
    "attention": ("scaled_dot_product", "_native_multi_head_attention", "_transformer_encoder_layer_fwd"),
    "recurrent layers": ("aten.lstm.", "aten.gru.", "aten.rnn_tanh.", "aten.rnn_relu."),
}


def decompose_fused(program, kinds=tuple(FUSED_OPS)):
    """Decompose SDPA (and torch's fused MHA/encoder ops, if any) and the recurrent layers (LSTM, GRU,
    RNN) in an ExportedProgram, keeping `_safe_softmax` whole so `safe_softmax_to_softmax` can see it.
    `kinds`: which of FUSED_OPS to look for. Returns (program, the kinds decomposed, in FUSED_OPS' order)."""
    import torch

    names = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    kinds = [kind for kind, ops in FUSED_OPS.items() if kind in kinds and any(a in name for name in names for a in ops)]
    if not kinds:
        return program, []
    ops = [a for kind in kinds for a in FUSED_OPS[kind]]
    table = {k: v for k, v in torch.export.default_decompositions().items() if any(a in str(k) for a in ops)}
    return program.run_decompositions(table), kinds


# ---------------------------------------------------------------------------------------------
# Helpers: new nodes carry a fake "val" so later passes can read shapes


def _val(node):
    import torch

    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _fake_mode(gm):
    from torch._guards import detect_fake_mode

    vals = [n.meta.get("val") for n in gm.graph.nodes if n.op == "placeholder"]
    vals += [n.meta.get("val") for n in gm.graph.nodes if n.op == "call_function"][:8]
    return detect_fake_mode([v for v in vals if v is not None])


class _Builder:
    """Insert call_function nodes before `anchor`, computing each one's fake value."""

    def __init__(self, gm, anchor):
        self.gm, self.graph, self.anchor = gm, gm.graph, anchor
        self.mode = _fake_mode(gm)

    def __call__(self, target, *args, **kwargs):
        """A view of a tensor whose strides allow no view (a permuted one) is built as a reshape, which
        copies where it must, as the ops the passes replace did inside (matmul, mean over other axes)."""
        import torch

        fake = lambda a: _val(a) if isinstance(a, torch.fx.Node) else a
        f_args = torch.fx.node.map_aggregate(args, fake)
        f_kwargs = torch.fx.node.map_aggregate(kwargs, fake)
        val = None
        if self.mode is not None:
            with self.mode:
                try:
                    val = _concrete(target(*f_args, **f_kwargs))
                except (RuntimeError, ValueError):
                    if target is not torch.ops.aten.view.default:
                        raise
                    target = torch.ops.aten.reshape.default
                    val = _concrete(target(*f_args, **f_kwargs))
        with self.graph.inserting_before(self.anchor):
            node = self.graph.call_function(target, args, kwargs)
        if val is not None:
            node.meta["val"] = val
        node.meta["stack_trace"] = self.anchor.meta.get("stack_trace")
        node.meta["nn_module_stack"] = self.anchor.meta.get("nn_module_stack")
        return node

    def constant(self, tensor, hint: str, persistent: bool = False):
        """A buffer of the module, read with get_attr: non-persistent (lifted as a constant on re-export),
        or persistent (a buffer of the program, as a weight must be for the XNNPACK lowering: a
        non-persistent one read as a conv's weight fails it with "Non-persistent buffer ... is in the
        state dict")."""
        i = 0
        while hasattr(self.gm, f"_xnnpack_{hint}_{i}"):
            i += 1
        name = f"_xnnpack_{hint}_{i}"
        self.gm.register_buffer(name, tensor, persistent=persistent)
        with self.graph.inserting_before(self.anchor):
            node = self.graph.get_attr(name)
        if self.mode is not None:
            node.meta["val"] = self.mode.from_tensor(tensor, static_shapes=True)
        return node


def _concrete(val):
    """A fake value whose sizes are symbols of known value (a conv's output length) as one with int
    sizes, so later passes see a static shape."""
    import torch

    if isinstance(val, (list, tuple)):
        return type(val)(_concrete(v) for v in val)
    if not isinstance(val, torch.Tensor) or all(isinstance(d, int) for d in val.shape):
        return val
    try:
        sizes = [int(d) for d in val.shape]  # a size symbol of a static graph has one value
    except (RuntimeError, TypeError, ValueError):
        return val
    return torch.empty(sizes, dtype=val.dtype, device=val.device)


def _replace(gm, node, new) -> None:
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _calls(gm, *targets):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in targets]


def _static(val) -> bool:
    import torch

    return isinstance(val, torch.Tensor) and all(isinstance(d, int) for d in val.shape)


def _finish(gm, changed: int) -> int:
    if changed:
        gm.graph.eliminate_dead_code()
        read = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
        for name in [b for b in gm._buffers if b.startswith("_xnnpack_") and b not in read]:
            del gm._buffers[name]  # a constant a pass made and a later one replaced: not stored in the program
        gm.recompile()
    return changed


def _attr(gm, node):
    """The tensor a get_attr node reads from the module (a dotted name)."""
    return functools.reduce(getattr, node.target.split("."), gm)


def _arg(node, i, name, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


# ---------------------------------------------------------------------------------------------
# Passes


def layer_norm_decompose(gm) -> int:
    """layer_norm / native_layer_norm over the last dim(s) -> (x - mean) * rsqrt(var + eps) * w + b,
    mean and var as mean.dim(-1, keepdim) (which `mean_for_xnnpack` turns into a linear); over several
    trailing dims, on a view that makes them one."""
    import operator

    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.layer_norm.default, aten.native_layer_norm.default):
        x, shape = node.args[0], list(node.args[1])
        weight, bias = _arg(node, 2, "weight"), _arg(node, 3, "bias")
        eps = _arg(node, 4, "eps", 1e-5)
        val = _val(x)
        if not _static(val) or not val.is_floating_point() or not shape or list(val.shape[-len(shape):]) != shape:
            continue
        native = node.target == aten.native_layer_norm.default
        if native and any(u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
            continue  # mean / rstd outputs used: a training graph, leave it
        b = _Builder(gm, node)
        if len(shape) == 1:
            out = _normalized_last_dim(b, x, eps, val.dtype)
        else:  # over several trailing dims (LayerNorm([C, H, W])): on a view with them as one
            rows = b(aten.view.default, x, list(val.shape[: -len(shape)]) + [math.prod(shape)])
            out = b(aten.view.default, _normalized_last_dim(b, rows, eps, val.dtype), list(val.shape))
        if weight is not None:
            out = b(aten.mul.Tensor, out, weight)
        if bias is not None:
            out = b(aten.add.Tensor, out, bias)
        _replace_norm(gm, node, out, native)
        changed += 1
    return _finish(gm, changed)


def _normalized_last_dim(b, x, eps: float, dtype):
    """(x - mean) * rsqrt(var + eps) over the last dim, the means as mean.dim(-1, keepdim)."""
    import torch

    aten = torch.ops.aten
    mean = b(aten.mean.dim, x, [-1], True)
    centred = b(aten.sub.Tensor, x, mean)
    var = b(aten.mean.dim, b(aten.mul.Tensor, centred, centred), [-1], True)
    eps_c = b.constant(torch.tensor([float(eps)], dtype=dtype), "eps")
    return b(aten.mul.Tensor, centred, b(aten.rsqrt.default, b(aten.add.Tensor, var, eps_c)))


def _replace_norm(gm, node, out, native: bool) -> None:
    """A norm node by `out`; a native_*_norm's output 0 (its only use) by `out`, then the node."""
    if native:
        for user in list(node.users):
            _replace(gm, user, out)
        gm.graph.erase_node(node)
    else:
        _replace(gm, node, out)


def _normalized_per_group(b, x, groups: int, eps: float, weight, bias):
    """x (N, C, *) normalized over each of `groups` channel groups (C of them: per channel, as instance norm
    does) on a (N, groups, rest) view, viewed back, then * w + b per channel."""
    import torch

    aten = torch.ops.aten
    val = _val(x)
    n, c = val.shape[0], val.shape[1]
    grouped = b(aten.view.default, x, [n, groups, val.numel() // (n * groups)])
    out = b(aten.view.default, _normalized_last_dim(b, grouped, eps, val.dtype), list(val.shape))
    per_channel = [1, c] + [1] * (val.dim() - 2)
    if weight is not None:
        out = b(aten.mul.Tensor, out, b(aten.view.default, weight, per_channel))
    if bias is not None:
        out = b(aten.add.Tensor, out, b(aten.view.default, bias, per_channel))
    return out


def group_norm_decompose(gm) -> int:
    """group_norm / native_group_norm (N, C, *) -> per group of C/G channels, as layer norm: view to
    (N, G, rest), (x - mean) * rsqrt(var + eps), view back, * w + b per channel (GroupNorm in audio
    front ends: wav2vec2's first conv, diffusion U-Nets). XNNPACK has no config for group norm."""
    import operator

    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.group_norm.default, aten.native_group_norm.default):
        native = node.target == aten.native_group_norm.default
        x = node.args[0]
        val = _val(x)
        if not _static(val) or not val.is_floating_point() or val.dim() < 2:
            continue
        if native:
            weight, bias, groups, eps = node.args[1], node.args[2], node.args[6], node.args[7]
            if any(u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
                continue  # mean / rstd outputs used: a training graph, leave it
        else:
            groups, weight, bias = node.args[1], _arg(node, 2, "weight"), _arg(node, 3, "bias")
            eps = _arg(node, 4, "eps", 1e-5)
        c = val.shape[1]
        if not isinstance(groups, int) or c % groups:
            continue
        out = _normalized_per_group(_Builder(gm, node), x, groups, eps, weight, bias)
        _replace_norm(gm, node, out, native)
        changed += 1
    return _finish(gm, changed)


def instance_norm_decompose(gm) -> int:
    """instance_norm with the input's own statistics (InstanceNorm1d/2d/3d, track_running_stats off: style
    transfer, image-to-image generators, audio front ends) -> per sample and channel, as layer norm over a
    (N, C, rest) view, * w + b per channel. to_edge writes it as a batch norm over a (1, N*C, ...) view with
    the weights `repeat`ed N times, neither of which XNNPACK takes. An instance norm with running statistics
    (use_input_stats False) is a batch norm and stays."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.instance_norm.default):
        x, weight, bias = node.args[0], _arg(node, 1, "weight"), _arg(node, 2, "bias")
        use_input_stats, eps = _arg(node, 5, "use_input_stats", True), _arg(node, 7, "eps", 1e-5)
        val = _val(x)
        if not use_input_stats or not _static(val) or not val.is_floating_point() or val.dim() < 3:
            continue
        _replace(gm, node, _normalized_per_group(_Builder(gm, node), x, val.shape[1], eps, weight, bias))
        changed += 1
    return _finish(gm, changed)


def roll_as_slices(gm) -> int:
    """roll(x, shifts, dims) -> per rolled dim, cat of its last `shift` elements and the rest (two slices of
    stride 1); with no dims, the same on the flattened tensor, viewed back (shifted-window attention,
    circular padding). to_edge writes roll as arange, fmod and index_select, which XNNPACK refuses."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.roll.default):
        x, shifts, dims = node.args[0], _arg(node, 1, "shifts"), _arg(node, 2, "dims", [])
        val = _val(x)
        shifts = [shifts] if isinstance(shifts, int) else list(shifts)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if not _static(val) or not all(isinstance(v, int) for v in shifts + dims) or \
                (dims and len(dims) != len(shifts)) or (not dims and len(shifts) != 1) or val.dim() == 0:
            continue
        b = _Builder(gm, node)
        out, shape = x, list(val.shape)
        if not dims:
            out, shape, dims = b(aten.view.default, x, [val.numel()]), [val.numel()], [0]
        for shift, dim in zip(shifts, dims):
            dim %= len(shape)
            size = shape[dim]
            cut = size - shift % size if size else 0
            if cut in (0, size):
                continue
            out = b(aten.cat.default, [b(aten.slice.Tensor, out, dim, cut, size), b(aten.slice.Tensor, out, dim, 0, cut)],
                    dim)
        if out is x:
            out = b(aten.view.default, x, list(val.shape))
        elif len(shape) != val.dim():
            out = b(aten.view.default, out, list(val.shape))
        _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


def rms_norm_decompose(gm) -> int:
    """rms_norm(x, shape, w, eps) (nn.RMSNorm, F.rms_norm: LLaMA-style transformers) -> x * rsqrt(mean(x * x) +
    eps) * w over the trailing dims of `shape` (eps None: the dtype's machine epsilon, as torch does).
    to_edge left a mean over a non-4-D tensor and an add.Scalar, both refused."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.rms_norm.default):
        x, shape = node.args[0], list(node.args[1])
        weight, eps = _arg(node, 2, "weight"), _arg(node, 3, "eps")
        val = _val(x)
        if not _static(val) or not val.is_floating_point() or not shape or list(val.shape[-len(shape):]) != shape:
            continue
        eps = torch.finfo(val.dtype).eps if eps is None else float(eps)
        b = _Builder(gm, node)
        rows = x if len(shape) == 1 else b(aten.view.default, x, list(val.shape[: -len(shape)]) + [math.prod(shape)])
        mean_sq = b(aten.mean.dim, b(aten.mul.Tensor, rows, rows), [-1], True)
        eps_c = b.constant(torch.tensor([eps], dtype=val.dtype), "eps")
        out = b(aten.mul.Tensor, rows, b(aten.rsqrt.default, b(aten.add.Tensor, mean_sq, eps_c)))
        if len(shape) > 1:
            out = b(aten.view.default, out, list(val.shape))
        if weight is not None:
            out = b(aten.mul.Tensor, out, weight)
        _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


def variance_as_means(gm) -> int:
    """var / std over dims (AdaIN and hand-written norms) -> mean((x - mean(x))^2) * n / (n - correction), and its
    sqrt for std; the means then go through `mean for XNNPACK`. to_edge left var.correction on portable kernels."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.var.dim, aten.var.correction, aten.std.dim, aten.std.correction):
        x = node.args[0]
        val = _val(x)
        if not _static(val) or not val.is_floating_point() or val.dim() == 0:
            continue
        dims = _arg(node, 1, "dim")
        dims = list(range(val.dim())) if dims is None else ([dims] if isinstance(dims, int) else list(dims))
        dims = sorted(d % val.dim() for d in dims)
        if node.target in (aten.var.dim, aten.std.dim):
            correction, keep = (1 if _arg(node, 2, "unbiased", True) else 0), bool(_arg(node, 3, "keepdim", False))
        else:
            correction = node.kwargs.get("correction", 1 if len(node.args) < 3 else node.args[2])
            correction = 1 if correction is None else correction
            keep = bool(node.kwargs.get("keepdim", False if len(node.args) < 4 else node.args[3]))
        n = math.prod(val.shape[d] for d in dims)
        if not isinstance(correction, (int, float)) or n - correction <= 0:
            continue
        b = _Builder(gm, node)
        centred = b(aten.sub.Tensor, x, b(aten.mean.dim, x, dims, True))
        out = b(aten.mean.dim, b(aten.mul.Tensor, centred, centred), dims, keep)
        if correction:
            out = b(aten.mul.Tensor, out, b.constant(torch.tensor([n / (n - correction)], dtype=val.dtype), "bessel"))
        if node.target in (aten.std.dim, aten.std.correction):
            out = b(aten.sqrt.default, out)
        _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


def softmax_on_last_dim(gm) -> int:
    """softmax over a dim that is not the last (spatial or channel attention maps, segmentation heads) ->
    permute it last, softmax(-1), permute back: XNNPACK's softmax takes the last dim only."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.softmax.int, aten._softmax.default):
        x, dim = node.args[0], node.args[1]
        val = _val(x)
        if not _static(val) or not val.is_floating_point() or not isinstance(dim, int) or dim % val.dim() == val.dim() - 1:
            continue
        if (node.target == aten.softmax.int and _arg(node, 2, "dtype") is not None) or \
                (node.target == aten._softmax.default and node.args[2]):
            continue
        d = dim % val.dim()
        order = [i for i in range(val.dim()) if i != d] + [d]
        back = sorted(range(val.dim()), key=order.__getitem__)
        b = _Builder(gm, node)
        y = b(aten._softmax.default, b(aten.permute.default, x, order), val.dim() - 1, False)
        _replace(gm, node, b(aten.permute.default, y, back))
        changed += 1
    return _finish(gm, changed)


def strided_slice_as_view(gm) -> int:
    """slice(x, dim, start, end, step > 1) (YOLOv5's Focus `x[..., ::2, ::2]`, decimation) -> a stride-1 slice
    (zero-padded to a whole number of steps), viewed with the step as its own dim, whose first entry is taken:
    XNNPACK's slice takes stride 1 only."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.slice.Tensor, aten.slice_copy.Tensor):
        x = node.args[0]
        dim, start, end, step = _arg(node, 1, "dim", 0), _arg(node, 2, "start"), _arg(node, 3, "end"), _arg(node, 4, "step", 1)
        val, vo = _val(x), _val(node)
        if not isinstance(step, int) or step <= 1 or not (_static(val) and _static(vo)) or not isinstance(dim, int):
            continue
        d = dim % val.dim()
        size, m = val.shape[d], vo.shape[d]
        first = range(size)[slice(start, end, step)]
        if m == 0 or len(first) != m:
            continue
        begin = first[0]
        stop = begin + m * step
        b = _Builder(gm, node)
        part = b(aten.slice.Tensor, x, d, begin, min(stop, size))
        if stop > size:  # zeros after the last step, so the steps divide evenly
            pad = [0, 0] * (val.dim() - 1 - d) + [0, stop - size]
            part = b(aten.constant_pad_nd.default, part, pad, 0.0)
        shape = list(val.shape)
        grouped = b(aten.view.default, part, shape[:d] + [m, step] + shape[d + 1:])
        first_of_each = b(aten.slice.Tensor, grouped, d + 1, 0, 1)
        _replace(gm, node, b(aten.view.default, first_of_each, list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


def repeat_as_cat(gm) -> int:
    """repeat / tile that copies data (what `repeat as expand` leaves) -> per repeated dim, a cat of r copies on a
    new dim before it, merged into it by a view (r <= REPEAT_AS_CAT_MAX): XNNPACK has no repeat, and its cat takes
    distinct inputs only (copies of the same shape were merged into one)."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.repeat.default, aten.tile.default):
        x, reps = node.args[0], list(node.args[1])
        vi, vo = _val(x), _val(node)
        if not (_static(vi) and _static(vo)) or not all(isinstance(r, int) and r >= 1 for r in reps):
            continue
        shape = list(vi.shape)
        if node.target == aten.tile.default and len(reps) < len(shape):
            reps = [1] * (len(shape) - len(reps)) + reps
        if len(reps) < len(shape) or any(r > REPEAT_AS_CAT_MAX for r in reps):
            continue
        b = _Builder(gm, node)
        out = x
        shape = [1] * (len(reps) - len(shape)) + shape
        if len(shape) != vi.dim():
            out = b(aten.view.default, x, shape)
        for d, r in enumerate(reps):
            if r > 1:  # r copies stacked on a new dim before d, then merged into it: tile's order
                now = list(_val(out).shape)
                stacked = b(aten.cat.default, _copies(b, out, now[:d] + [1] + now[d:], r), d)
                out = b(aten.view.default, stacked, now[:d] + [r * now[d]] + now[d + 1:])
        _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


PAD_AS_CAT_MAX = 16  # reflected / replicated rows per side that a pad may become (a cat of that many slices)


def reflect_pad_as_cat(gm) -> int:
    """pad(x, mode='reflect' / 'replicate') (style transfer, HiFi-GAN, audio front ends) -> per padded dim, a cat
    of one-row slices (reflected: rows p..1 before, n-2..n-1-p after; replicated: the edge row p times) around x.
    to_edge wrote them as arange / abs / clamp / index, none of which XNNPACK takes."""
    import torch

    aten = torch.ops.aten
    changed = 0
    targets = [aten.pad.default, aten.reflection_pad1d.default, aten.reflection_pad2d.default,
               aten.replication_pad1d.default, aten.replication_pad2d.default]
    for node in _calls(gm, *targets):
        x = node.args[0]
        val = _val(x)
        pads = list(node.args[1])
        if node.target == aten.pad.default:
            mode = _arg(node, 2, "mode", "constant")
        else:
            mode = "reflect" if "reflection" in str(node.target) else "replicate"
        if mode not in ("reflect", "replicate") or not _static(val) or not all(isinstance(p, int) for p in pads) \
                or any(p < 0 or p > PAD_AS_CAT_MAX for p in pads) or len(pads) % 2 or len(pads) // 2 > val.dim():
            continue
        b = _Builder(gm, node)
        out = x
        for i in range(len(pads) // 2):
            d = val.dim() - 1 - i
            left, right = pads[2 * i], pads[2 * i + 1]
            n = val.shape[d]
            if mode == "reflect" and (left >= n or right >= n):
                out = None
                break
            if not left and not right:
                continue
            if mode == "reflect":
                picks, tail = list(range(left, 0, -1)), [n - 2 - j for j in range(right)]
            else:
                picks, tail = [0] * left, [n - 1] * right
            rows = [b(aten.slice.Tensor, out, d, j, j + 1) for j in picks + tail]
            before, after = rows[:left], rows[left:]
            out = b(aten.cat.default, before + [out] + after, d)
        if out is None:
            continue
        _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


def reductions_over_one_dim(gm) -> int:
    """amax over several dims (global max pooling as CBAM writes it) -> permute them last, view them as one, amax
    over it; amin(x) -> -amax(-x). `max as 4-D keepdim` then lowers the one-dim amax."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.amax.default, aten.amin.default):
        x = node.args[0]
        val, vo = _val(x), _val(node)
        if not (_static(val) and _static(vo)) or not val.is_floating_point() or val.dim() == 0:
            continue
        dims = _arg(node, 1, "dim", [])
        dims = list(range(val.dim())) if not dims else ([dims] if isinstance(dims, int) else list(dims))
        dims = sorted(d % val.dim() for d in dims)
        is_min = node.target == aten.amin.default
        if len(dims) == 1 and not is_min:
            continue
        b = _Builder(gm, node)
        src = b(aten.neg.default, x) if is_min else x
        if len(dims) > 1:
            rest = [i for i in range(val.dim()) if i not in dims]
            if rest + dims != list(range(val.dim())):
                src = b(aten.permute.default, src, rest + dims)
            src = b(aten.view.default, src, [val.shape[i] for i in rest] + [math.prod(val.shape[d] for d in dims)])
            reduced = b(aten.amax.default, src, [len(rest)], False)
        else:
            reduced = b(aten.amax.default, src, dims, False)
        out = b(aten.view.default, reduced, list(vo.shape))
        if is_min:
            out = b(aten.neg.default, out)
        _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


def nearest_upsample_as_repeats(gm) -> int:
    """Nearest-neighbour upsampling by whole factors (FPN / YOLO necks, U-Net decoders: F.interpolate(x,
    scale_factor=2)) -> repeat_interleave per spatial dim, which `materialized expand as concatenation` writes as
    cats of copies. XNNPACK has no nearest upsampling: to_edge left it on the portable kernels."""
    import torch

    aten = torch.ops.aten
    changed = 0
    targets = [aten.upsample_nearest2d.vec, aten.upsample_nearest1d.vec, aten.upsample_nearest2d.default,
               aten.upsample_nearest1d.default]
    for node in _calls(gm, *targets):
        x = node.args[0]
        val, vo = _val(x), _val(node)
        if not (_static(val) and _static(vo)) or not val.is_floating_point() or val.dim() != vo.dim():
            continue
        spatial = list(range(2, val.dim()))
        ratios = [vo.shape[d] // val.shape[d] if val.shape[d] and vo.shape[d] % val.shape[d] == 0 else 0
                  for d in spatial]
        if not all(1 <= r <= REPEAT_AS_CAT_MAX for r in ratios):
            continue
        b = _Builder(gm, node)
        out = x
        for d, r in zip(spatial, ratios):
            if r > 1:
                out = b(aten.repeat_interleave.self_int, out, r, d)
        _replace(gm, node, out if out is not x else b(aten.view.default, x, list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


def pow_as_muls(gm) -> int:
    """pow(x, n) with a small exponent -> what XNNPACK takes: 2, 3, 4 as products of x (GPT-2's tanh
    GELU cubes its input), 0.5 as sqrt, -0.5 as rsqrt, -1 as 1 / x, 1 as x. XNNPACK's partitioner
    takes pow with exponent 2 only."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.pow.Tensor_Scalar):
        x, e = node.args[0], node.args[1]
        val = _val(x)
        if not isinstance(val, torch.Tensor) or not val.is_floating_point() or not isinstance(e, (int, float)) or \
                float(e) not in (1.0, 2.0, 3.0, 4.0, 0.5, -0.5, -1.0):
            continue
        e = float(e)
        b = _Builder(gm, node)
        if e == 1.0:
            out = x
        elif e == 0.5:
            out = b(aten.sqrt.default, x)
        elif e == -0.5:
            out = b(aten.rsqrt.default, x)
        elif e == -1.0:
            out = b(aten.div.Tensor, b.constant(torch.ones(1, dtype=val.dtype), "one"), x)
        else:
            square = b(aten.mul.Tensor, x, x)
            out = {2.0: square, 3.0: b(aten.mul.Tensor, square, x), 4.0: b(aten.mul.Tensor, square, square)}[e]
        _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


_MASKING = ("where", "masked_fill", "full", "full_like", "fill", "scalar_tensor")


def _may_hold_neg_inf(gm, node) -> bool:
    """Whether `node`'s value may contain -inf: a masking op, an inf literal, an inf constant or a
    second float input in its ancestry (one input and finite parameters are taken as finite); integer values
    end the search (they hold no inf)."""
    import torch

    seen, todo, inputs = set(), [node], 0
    while todo:
        n = todo.pop()
        if n in seen or not isinstance(n, torch.fx.Node):
            continue
        seen.add(n)
        if isinstance(_val(n), torch.Tensor) and not _val(n).is_floating_point() and _val(n).dtype != torch.bool:
            continue  # an integer value holds no -inf, whatever made it (an embedding's index fix-up: where(ids < 0, ...))
        if n.op == "placeholder" and isinstance(_val(n), torch.Tensor) and _val(n).is_floating_point():
            inputs += 1  # a second float input may be a mask the caller filled with -inf
            if inputs > 1:
                return True
            continue
        if n.op == "get_attr":
            t = getattr(gm, n.target, None)
            if isinstance(t, torch.Tensor) and t.is_floating_point() and torch.isinf(t).any():
                return True
            continue
        if n.op != "call_function":
            continue
        name = getattr(n.target, "__name__", str(n.target))
        if any(name.split(".")[0] == m for m in _MASKING):
            return True
        for a in _flat(n.args, n.kwargs):
            if isinstance(a, float) and math.isinf(a):
                return True
            if isinstance(a, torch.fx.Node):
                todo.append(a)
    return False


def _flat(args, kwargs):
    out = []
    for a in list(args) + list(kwargs.values()):
        out.extend(a if isinstance(a, (list, tuple)) else [a])
    return out


def safe_softmax_to_softmax(gm) -> int:
    """_safe_softmax(x, dim) -> _softmax(x, dim, False) where x can hold no -inf. The two differ
    only on a row that is all -inf (safe: zeros, plain: NaN), which needs a mask."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten._safe_softmax.default):
        x, dim = node.args[0], node.args[1]
        if _arg(node, 2, "dtype") is not None or _may_hold_neg_inf(gm, x):
            continue
        b = _Builder(gm, node)
        _replace(gm, node, b(aten._softmax.default, x, dim, False))
        changed += 1
    return _finish(gm, changed)


def batched_matmul_to_bmm(gm) -> int:
    """matmul(a, b) with a, b of the same rank >= 3 and the same batch dims -> view both to 3-D,
    bmm, view back (torch's own decomposition adds expand_copy, which XNNPACK refuses)."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.matmul.default):
        a, bb = node.args[0], node.args[1]
        va, vb, vo = _val(a), _val(bb), _val(node)
        if not (_static(va) and _static(vb) and va.dim() == vb.dim() >= 3 and va.shape[:-2] == vb.shape[:-2]):
            continue
        batch = math.prod(va.shape[:-2])
        b = _Builder(gm, node)
        a3 = b(aten.view.default, a, [batch, *va.shape[-2:]])
        b3 = b(aten.view.default, bb, [batch, *vb.shape[-2:]])
        _replace(gm, node, b(aten.view.default, b(aten.bmm.default, a3, b3), list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


def expand_to_view(gm) -> int:
    """expand(x, shape) that adds no elements (only size-1 dims 'expanded' to 1) -> view."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.expand.default, aten.expand_copy.default):
        vi, vo = _val(node.args[0]), _val(node)
        if not (_static(vi) and _static(vo)) or vi.numel() != vo.numel():
            continue
        b = _Builder(gm, node)
        _replace(gm, node, b(aten.view.default, node.args[0], list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


REPEAT_AS_CAT_MAX = 16  # copies per grown dim that a materialized expand may become (a cat of that many inputs)


def materialized_expand_as_cat(gm) -> int:
    """expand(x, shape) that really repeats data (size-1 dims grown to r > 1), left after the broadcast and
    view passes: a copy or reshape reads it, as repeat_interleave writes nearest-neighbour upsampling
    (unsqueeze, expand, clone, view: Keras' UpSampling2D, `x.repeat_interleave(2, dim)`). XNNPACK has no
    expand: per grown dim, a cat of r copies of x along it (cat lowers, and r copies of one tensor are what
    the expand's copy wrote). aten.repeat_interleave with an int count, still whole before to_edge, becomes
    view, cat of r copies along a new dim after `dim`, view. Dims grown past REPEAT_AS_CAT_MAX stay as they are."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.expand.default, aten.expand_copy.default):
        x, vo = node.args[0], _val(node)
        vi = _val(x)
        if not (_static(vi) and _static(vo)) or vi.numel() == vo.numel() or not vi.is_floating_point():
            continue
        lead = vo.dim() - vi.dim()
        in_shape = [1] * lead + list(vi.shape)
        grown = [(d, int(vo.shape[d])) for d in range(vo.dim()) if in_shape[d] == 1 and vo.shape[d] > 1]
        if not grown or any(r > REPEAT_AS_CAT_MAX for _, r in grown) or \
                any(in_shape[d] != vo.shape[d] and in_shape[d] != 1 for d in range(vo.dim())):
            continue
        b = _Builder(gm, node)
        out = x
        for d, r in grown:
            shape = in_shape if out is x else list(_val(out).shape)
            out = b(aten.cat.default, _copies(b, out, shape, r), d)
        _replace(gm, node, out)
        changed += 1
    for node in _calls(gm, aten.repeat_interleave.self_int):  # x.repeat_interleave(r, dim): the same, whole
        x, r, dim = node.args[0], _arg(node, 1, "repeats"), _arg(node, 2, "dim")
        vi = _val(x)
        if not _static(vi) or dim is None or not isinstance(r, int) or not 1 < r <= REPEAT_AS_CAT_MAX \
                or not vi.is_floating_point() or _arg(node, 3, "output_size") not in (None, vi.shape[dim % vi.dim()] * r):
            continue
        dim %= vi.dim()
        shape = list(vi.shape)
        b = _Builder(gm, node)
        copies = b(aten.cat.default, _copies(b, x, shape[: dim + 1] + [1] + shape[dim + 1 :], r), dim + 1)
        _replace(gm, node, b(aten.view.default, copies, shape[:dim] + [shape[dim] * r] + shape[dim + 1 :]))
        changed += 1
    return _finish(gm, changed)


def _copies(b, x, shape, r: int) -> list:
    """R distinct view nodes of x: XNNPACK's cat config counts distinct input nodes, and refuses fewer than 2."""
    import torch

    return [b(torch.ops.aten.view.default, x, shape) for _ in range(r)]


def vector_norm_as_sums(gm) -> int:
    """linalg_vector_norm(x, ord, dim, keepdim) of a float tensor -> sqrt(sum(x * x)) for ord 2 (F.normalize,
    L2-normalized embeddings), sum(abs(x)) for ord 1; the sum then goes through `mean for XNNPACK`. to_edge
    would decompose the norm itself later, into pow and sum ops XNNPACK has no config for."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.linalg_vector_norm.default):
        x = node.args[0]
        vi = _val(x)
        order, dims = _arg(node, 1, "ord", 2), _arg(node, 2, "dim")
        keep = bool(_arg(node, 3, "keepdim", False))
        if not _static(vi) or not vi.is_floating_point() or _arg(node, 4, "dtype") is not None or order not in (1, 2) \
                or vi.dim() == 0:
            continue
        dims = list(range(vi.dim())) if dims is None else ([dims] if isinstance(dims, int) else list(dims))
        b = _Builder(gm, node)
        terms = b(aten.mul.Tensor, x, x) if order == 2 else b(aten.abs.default, x)
        total = b(aten.sum.dim_IntList, terms, dims, keep)
        _replace(gm, node, b(aten.sqrt.default, total) if order == 2 else total)
        changed += 1
    return _finish(gm, changed)


def select_to_slice(gm) -> int:
    """select(x, dim, i) -> view(slice(x, dim, i, i + 1), shape without dim); unbind(x, dim) -> one
    such slice per output used."""
    import operator

    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.unbind.int):
        x, vi = node.args[0], _val(node.args[0])
        dim = _arg(node, 1, "dim", 0)
        users = list(node.users)
        if not _static(vi) or not all(u.target is operator.getitem for u in users):
            continue
        dim = dim % vi.dim()
        shape = [s for i, s in enumerate(vi.shape) if i != dim]
        for user in users:
            i = user.args[1]
            b = _Builder(gm, user)
            _replace(gm, user, b(aten.view.default, b(aten.slice.Tensor, x, dim, i, i + 1), shape))
        gm.graph.erase_node(node)
        changed += 1
    for node in _calls(gm, aten.select.int, aten.select_copy.int):
        x, dim, index = node.args[0], node.args[1], node.args[2]
        vi, vo = _val(x), _val(node)
        if not (_static(vi) and _static(vo)) or not isinstance(index, int):
            continue
        dim = dim % vi.dim()
        index = index % vi.shape[dim]
        b = _Builder(gm, node)
        sliced = b(aten.slice.Tensor, x, dim, index, index + 1)
        _replace(gm, node, b(aten.view.default, sliced, list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


def scalar_ops_to_tensor(gm) -> int:
    """mul/add/sub/div.Scalar(x, s), and the .Tensor ops given a Python number s -> the .Tensor op with a
    one-element constant of x's dtype (rsub: s - x)."""
    import torch

    aten = torch.ops.aten
    pairs = {aten.mul.Scalar: aten.mul.Tensor, aten.add.Scalar: aten.add.Tensor,
             aten.sub.Scalar: aten.sub.Tensor, aten.div.Scalar: aten.div.Tensor, aten.rsub.Scalar: aten.sub.Tensor}
    # a .Tensor op given a Python int (softsign's `1 + |x|`): to_edge makes the int an int64 scalar tensor and a
    # dtype cast, which XNNPACK refuses
    pairs.update({op: op for op in (aten.mul.Tensor, aten.add.Tensor, aten.sub.Tensor, aten.div.Tensor)})
    changed = 0
    for node in _calls(gm, *pairs):
        if len(node.args) != 2 or node.kwargs:  # alpha, rounding_mode: leave them
            continue
        x, s = node.args
        vx = _val(x)
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not _static(vx) or not vx.is_floating_point():
            continue
        b = _Builder(gm, node)
        const = b.constant(torch.tensor([float(s)], dtype=vx.dtype), "scalar")
        args = (const, x) if node.target == aten.rsub.Scalar else (x, const)  # rsub(x, s) = s - x
        _replace(gm, node, b(pairs[node.target], *args))
        changed += 1
    return _finish(gm, changed)


def _number(b, dtype, value):
    """A one-element constant of `dtype` holding `value`."""
    import torch

    return b.constant(torch.tensor([float(value)], dtype=dtype), "act")


def _softplus(b, dtype, y):
    """relu(y) + log(1 + exp(-|y|)): softplus, stable, with ops XNNPACK has."""
    import torch

    aten = torch.ops.aten
    tail = b(aten.log.default, b(aten.add.Tensor, b(aten.exp.default, b(aten.neg.default, b(aten.abs.default, y))),
                                 _number(b, dtype, 1.0)))
    return b(aten.add.Tensor, b(aten.relu.default, y), tail)


def activations_as_xnnpack_ops(gm) -> int:
    """Activations XNNPACK has no kernel for, written with the ones it has (exact up to float rounding):
      reciprocal(x)            -> 1 / x
      hardsigmoid(x)           -> hardtanh(x / 6 + 1/2, 0, 1)
      elu, selu, celu          -> scale * (relu(x) + alpha * (exp(min(x, 0) * input_scale) - 1))
      softplus(x, beta)        -> (relu(bx) + log(1 + exp(-|bx|))) / beta (stable; past torch's threshold the two
                                  differ by log(1 + exp(-threshold)) / beta, under 3e-9 at the default 20)
      mish(x)                  -> x * tanh(softplus(x))
      log_sigmoid(x)           -> min(x, 0) - log(1 + exp(-|x|))
      log_softmax(x, dim)      -> x - m - log(sum(exp(x - m))), m = amax(x, dim) (the sum and amax then go
                                  through `mean for XNNPACK` and `max as 4-D keepdim`)
    to_edge writes these with int64 scalars cast to float, comparisons, where, expm1 and log1p, none of which
    XNNPACK takes, so each activation split its graph in two."""
    import operator

    import torch

    aten = torch.ops.aten
    changed = 0
    targets = {aten.hardsigmoid.default, aten.elu.default, aten.selu.default, aten.celu.default,
               aten.softplus.default, aten.mish.default, aten.log_sigmoid.default, aten.log_sigmoid_forward.default,
               aten.log_softmax.int, aten._log_softmax.default, aten.reciprocal.default}
    for node in list(_calls(gm, *targets)):
        x = node.args[0]
        vx = _val(x)
        if not _static(vx) or not vx.is_floating_point() or any(isinstance(a, torch.fx.Node) for a in node.args[1:]):
            continue
        b = _Builder(gm, node)
        c = functools.partial(_number, b, vx.dtype)
        softplus_of = functools.partial(_softplus, b, vx.dtype)
        t = node.target
        if t == aten.reciprocal.default:
            out = b(aten.div.Tensor, c(1.0), x)
        elif t == aten.hardsigmoid.default:
            out = b(aten.hardtanh.default, b(aten.add.Tensor, b(aten.mul.Tensor, x, c(1 / 6)), c(0.5)), 0.0, 1.0)
        elif t in (aten.elu.default, aten.selu.default, aten.celu.default):
            if t == aten.selu.default:
                alpha, scale, input_scale = 1.6732632423543772, 1.0507009873554805, 1.0
            elif t == aten.celu.default:
                alpha = float(_arg(node, 1, "alpha", 1.0))
                scale, input_scale = 1.0, 1.0 / alpha
            else:
                alpha, scale = float(_arg(node, 1, "alpha", 1.0)), float(_arg(node, 2, "scale", 1.0))
                input_scale = float(_arg(node, 3, "input_scale", 1.0))
            neg = b(aten.minimum.default, x, c(0.0))
            if input_scale != 1.0:
                neg = b(aten.mul.Tensor, neg, c(input_scale))
            out = b(aten.add.Tensor, b(aten.relu.default, x),
                    b(aten.mul.Tensor, b(aten.sub.Tensor, b(aten.exp.default, neg), c(1.0)), c(alpha)))
            if scale != 1.0:
                out = b(aten.mul.Tensor, out, c(scale))
        elif t == aten.softplus.default:
            beta = float(_arg(node, 1, "beta", 1.0))
            out = softplus_of(b(aten.mul.Tensor, x, c(beta)) if beta != 1.0 else x)
            if beta != 1.0:
                out = b(aten.mul.Tensor, out, c(1.0 / beta))
        elif t == aten.mish.default:
            out = b(aten.mul.Tensor, x, b(aten.tanh.default, softplus_of(x)))
        elif t in (aten.log_softmax.int, aten._log_softmax.default):
            dim = node.args[1] % vx.dim()
            if (t == aten.log_softmax.int and _arg(node, 2, "dtype") is not None) or \
                    (t == aten._log_softmax.default and node.args[2]):
                continue  # a dtype change: leave it
            shifted = b(aten.sub.Tensor, x, b(aten.amax.default, x, [dim], True))
            total = b(aten.sum.dim_IntList, b(aten.exp.default, shifted), [dim], True)
            out = b(aten.sub.Tensor, shifted, b(aten.log.default, total))
        else:  # log_sigmoid (log_sigmoid_forward returns (output, buffer): only output 0 may be used)
            if t == aten.log_sigmoid_forward.default:
                if any(u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
                    continue
            out = b(aten.sub.Tensor, b(aten.minimum.default, x, c(0.0)),
                    b(aten.log.default, b(aten.add.Tensor, b(aten.exp.default, b(aten.neg.default, b(aten.abs.default, x))),
                                          c(1.0))))
            if t == aten.log_sigmoid_forward.default:
                for user in list(node.users):
                    _replace(gm, user, out)
                gm.graph.erase_node(node)
                changed += 1
                continue
        _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


def _pair(v, fill):
    """A pool argument ([k], k, [] or None) as a list of one int; `fill` where it is empty."""
    if v is None or (isinstance(v, (list, tuple)) and not v):
        return [fill] if isinstance(fill, int) else list(fill)
    return [int(v)] if isinstance(v, int) else [int(a) for a in v]


def pooling_as_2d_pools(gm) -> int:
    """Pools in the forms XNNPACK's avg_pool2d / max_pool2d take:
      avg/max/adaptive pool 1-d on (N, C, L)   -> the 2-d pool on a (N, C, 1, L) view, viewed back (to_edge
                                                 wrapped it in unsqueeze / squeeze copies, or refused it)
      adaptive avg/max pool 2-d, output dividing the input
                                              -> avg/max pool with kernel = stride = input / output
                                                 (adaptive_max_pool is not core ATen: the lowering failed)
      avg_pool2d with padding, counting it     -> zero padding, then the pool without it (XNNPACK counts no pad)
    Each only where the shapes are static and, for the max pools, the indices are unused."""
    import operator

    import torch

    aten = torch.ops.aten
    changed = 0

    def only_values_used(node) -> bool:  # a (values, indices) pool: no user of the indices
        return all(u.target is operator.getitem and (u.args[1] == 0 or not u.users) for u in node.users)

    def replace_values(node, out) -> None:  # a (values, indices) pool's getitem(0) users by `out`
        for user in list(node.users):
            if user.args[1] == 0:
                _replace(gm, user, out)
            else:
                gm.graph.erase_node(user)
        gm.graph.erase_node(node)

    def pool2d(b, kind, x, shape, kernel, stride, padding, dilation=(1, 1), ceil=False, include_pad=True):
        """The 2-d pool on x (of 4-d `shape`): XNNPACK's form (padding counted as zeros made explicit)."""
        if kind == "avg":
            if any(padding) and include_pad and not ceil:
                x = b(aten.constant_pad_nd.default, x, [padding[1], padding[1], padding[0], padding[0]], 0.0)
                padding = [0, 0]
            return b(aten.avg_pool2d.default, x, list(kernel), list(stride), list(padding), ceil, include_pad)
        return b(aten.max_pool2d.default, x, list(kernel), list(stride), list(padding), list(dilation), ceil)

    one_d = {aten.avg_pool1d.default: "avg", aten.max_pool1d.default: "max", aten.adaptive_avg_pool1d.default: "aavg",
             aten.adaptive_max_pool1d.default: "amax"}
    two_d = {aten.adaptive_avg_pool2d.default: "aavg", aten.adaptive_max_pool2d.default: "amax",
             aten.avg_pool2d.default: "avg"}
    for node in list(_calls(gm, *one_d, *two_d)):
        x, kind = node.args[0], one_d.get(node.target) or two_d[node.target]
        vi = _val(x)
        flat = node.target in one_d
        if not _static(vi) or not vi.is_floating_point() or vi.dim() != (3 if flat else 4):
            continue
        if kind == "amax" and not only_values_used(node):
            continue
        n, c = vi.shape[0], vi.shape[1]
        h, w = (1, vi.shape[2]) if flat else (vi.shape[2], vi.shape[3])
        if kind in ("aavg", "amax"):
            out_hw = [1] + _pair(node.args[1], 1) if flat else _pair(node.args[1], [1, 1])
            if len(out_hw) == 1:
                out_hw = out_hw * 2
            oh, ow = (h if out_hw[0] is None else out_hw[0]), (w if out_hw[1] is None else out_hw[1])
            if not oh or not ow or h % oh or w % ow or (not flat and kind == "aavg" and oh == ow == 1):
                continue  # uneven windows; a global average already lowers as a mean
            kernel = stride = [h // oh, w // ow]
            args = {"kernel": kernel, "stride": stride, "padding": [0, 0]}
            kind = kind[1:]
        elif flat:
            k = _pair(_arg(node, 1, "kernel_size"), 1)[0]
            st = _pair(_arg(node, 2, "stride"), k)[0]
            pd = _pair(_arg(node, 3, "padding", 0), 0)[0]
            if kind == "avg":
                args = {"kernel": [1, k], "stride": [1, st], "padding": [0, pd],
                        "ceil": bool(_arg(node, 4, "ceil_mode", False)),
                        "include_pad": bool(_arg(node, 5, "count_include_pad", True))}
            else:
                dl = _pair(_arg(node, 4, "dilation", 1), 1)[0]
                args = {"kernel": [1, k], "stride": [1, st], "padding": [0, pd], "dilation": [1, dl],
                        "ceil": bool(_arg(node, 5, "ceil_mode", False))}
        else:  # avg_pool2d: only where XNNPACK refuses it for its counted padding
            padding = _pair(_arg(node, 3, "padding", 0), [0, 0])
            padding = padding * 2 if len(padding) == 1 else padding
            include_pad, ceil = bool(_arg(node, 5, "count_include_pad", True)), bool(_arg(node, 4, "ceil_mode", False))
            if not any(padding) or not include_pad or ceil or _arg(node, 6, "divisor_override") is not None:
                continue
            kernel = _pair(node.args[1], 1)
            kernel = kernel * 2 if len(kernel) == 1 else kernel
            stride = _pair(_arg(node, 2, "stride"), kernel)
            stride = stride * 2 if len(stride) == 1 else stride
            args = {"kernel": kernel, "stride": stride, "padding": padding}
        b = _Builder(gm, node)
        src = b(aten.view.default, x, [n, c, 1, w]) if flat else x
        pooled = pool2d(b, kind, src, [n, c, h, w], **args)
        vo = _val(pooled)
        out = b(aten.view.default, pooled, [n, c, vo.shape[-1]]) if flat else pooled
        if node.target in (aten.adaptive_max_pool1d.default, aten.adaptive_max_pool2d.default):
            replace_values(node, out)
        else:
            _replace(gm, node, out)
        changed += 1
    return _finish(gm, changed)


def squeeze_to_view(gm) -> int:
    """squeeze / unsqueeze / flatten with static shapes -> view."""
    import torch

    aten = torch.ops.aten
    targets = [aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default,
               aten.squeeze_copy.dim, aten.squeeze_copy.dims, aten.unsqueeze_copy.default, aten.flatten.using_ints]
    changed = 0
    for node in _calls(gm, *targets):
        vi, vo = _val(node.args[0]), _val(node)
        if not (_static(vi) and _static(vo)):
            continue
        b = _Builder(gm, node)
        _replace(gm, node, b(aten.view.default, node.args[0], list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


def max_to_4d_keepdim(gm) -> int:
    """amax(x, [d]) or max.dim(x, d) (values only) of any rank, with or without keepdim ->
    view(x, (1, before, K, after)) -> max.dim(2, keepdim=True) -> view to the result's shape:
    the one form XNNPACK's max pooling lowers."""
    import operator

    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.amax.default, aten.max.dim):
        x = node.args[0]
        vi = _val(x)
        if not _static(vi) or vi.dtype not in (torch.float32, torch.float16) or vi.dim() == 0:
            continue
        dims = _arg(node, 1, "dim", [])
        dims = [dims] if isinstance(dims, int) else list(dims)
        if len(dims) != 1:
            continue
        d = dims[0] % vi.dim()
        keep = bool(_arg(node, 2, "keepdim", False))
        if node.target == aten.max.dim:
            users = list(node.users)
            if not all(u.target is operator.getitem and (u.args[1] == 0 or not u.users) for u in users):
                continue  # indices used
            for u in users:
                if u.args[1] != 0:  # indices taken but unused (torch.export keeps the getitem)
                    gm.graph.erase_node(u)
            outs = [u for u in users if u.args[1] == 0]
        else:
            outs = [node]
        before, k, after = math.prod(vi.shape[:d]), vi.shape[d], math.prod(vi.shape[d + 1:])
        if vi.dim() == 4 and keep and d in (2, 3) and node.target == aten.max.dim:
            continue  # already the lowered form
        out_shape = [s for i, s in enumerate(vi.shape) if i != d] if not keep else \
            [1 if i == d else s for i, s in enumerate(vi.shape)]
        b = _Builder(gm, node)
        if vi.dim() == 4 and d in (2, 3):  # already 4-D: only keepdim is missing
            values = b(operator.getitem, b(aten.max.dim, x, d, True), 0)
        else:
            x4 = b(aten.view.default, x, [1, before, k, after])
            values = b(operator.getitem, b(aten.max.dim, x4, 2, True), 0)
        result = b(aten.view.default, values, out_shape)
        for o in outs:
            o.replace_all_uses_with(result)
        for o in outs:
            if o is not node:
                gm.graph.erase_node(o)
        gm.graph.erase_node(node)
        changed += 1
    return _finish(gm, changed)


MEAN_AS_POOL_FROM = 1024  # reduced values from which a mean is pooled, not a linear (mean_for_xnnpack)


def mean_for_xnnpack(gm) -> int:
    """mean.dim in a form XNNPACK takes: 4-D over (2, 3) -> keepdim + view; 4-D over (1, 2)
    (NHWC) -> permute to NCHW + the same; over any other dims -> permute them last, then for K reduced
    values: K < MEAN_AS_POOL_FROM, view to (rest, K) and a linear with a constant 1/K row; larger, view to
    (1, rest, 1, K) and the 4-D mean. sum.dim_IntList (no XNNPACK config) of a float tensor: the same with a
    row of ones, or the mean times K. Why two forms (int8, measured): a GroupNorm's statistics over 16,384
    values as the linear came out wrong from XNNPACK (cosine 0.57 on a small U-Net, 0.999 simulated; the
    pooled mean: 0.995), while a transformer block's layer norms over 32 values lost accuracy as pooled
    means (a ViT block of width 32 on digits: cosine 0.9878, against above 0.99 as the linear)."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.mean.dim, aten.sum.dim_IntList):
        x = node.args[0]
        vi, vo = _val(x), _val(node)
        if _arg(node, 3, "dtype") is not None or not (_static(vi) and _static(vo)) or not vi.is_floating_point():
            continue
        dims = _arg(node, 1, "dim")
        if dims is None or (not isinstance(dims, int) and len(dims) == 0):
            continue
        dims = sorted({d % vi.dim() for d in ([dims] if isinstance(dims, int) else dims)})
        keep = bool(_arg(node, 2, "keepdim", False))
        is_sum = node.target == aten.sum.dim_IntList
        if vi.dim() == 4 and dims == [2, 3] and keep and not is_sum:
            continue  # XNNPACK's own form
        b = _Builder(gm, node)
        if vi.dim() == 4 and dims in ([2, 3], [1, 2]) and not is_sum:
            src = x if dims == [2, 3] else b(aten.permute.default, x, [0, 3, 1, 2])
            pooled = b(aten.mean.dim, src, [2, 3], True)
        else:
            rest = [i for i in range(vi.dim()) if i not in dims]
            src = x if rest + dims == list(range(vi.dim())) else b(aten.permute.default, x, rest + dims)
            k = math.prod(vi.shape[d] for d in dims)
            if k >= MEAN_AS_POOL_FROM:
                flat = b(aten.view.default, src, [1, math.prod(vi.shape[i] for i in rest), 1, k])
                pooled = b(aten.mean.dim, flat, [2, 3], True)
                if is_sum:
                    pooled = b(aten.mul.Tensor, pooled, b.constant(torch.tensor(float(k), dtype=vi.dtype), "sum_count"))
            else:
                flat = b(aten.view.default, src, [math.prod(vi.shape[i] for i in rest), k])
                row = b.constant(torch.full((1, k), 1.0 if is_sum else 1.0 / k, dtype=vi.dtype), "mean")
                pooled = b(aten.linear.default, flat, row)
        _replace(gm, node, b(aten.view.default, pooled, list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


def conv1d_as_conv2d(gm) -> int:
    """conv1d(x, w) -> view(conv2d(view(x, (N, C, 1, L)), w as (O, I, 1, K)), (N, O, L')): written
    4-D here, consecutive convs stay 4-D once `sink_views` cancels the views between them, and
    XNNPACK converts the layout once per chain instead of twice per conv."""

    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.conv1d.default):
        x, w = node.args[0], node.args[1]
        vi, vo = _val(x), _val(node)
        bias = _arg(node, 2, "bias")
        stride, padding, dilation = (list(_arg(node, i, k, [d])) for i, k, d in
                                     ((3, "stride", 1), (4, "padding", 0), (5, "dilation", 1)))
        groups = _arg(node, 6, "groups", 1)
        if w.op != "get_attr" or not (_static(vi) and _static(vo)) or vi.dim() != 3 or not vi.is_floating_point():
            continue
        b = _Builder(gm, node)
        weight = _attr(gm, w)
        w4 = b.constant(weight.detach().unsqueeze(2).clone(), "conv_weight")
        x4 = b(aten.view.default, x, [vi.shape[0], vi.shape[1], 1, vi.shape[2]])
        y = b(aten.conv2d.default, x4, w4, bias, [1, *stride], [0, *padding], [1, *dilation], groups)
        _replace(gm, node, b(aten.view.default, y, list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


def _taps_seen(size: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """(first, last) kernel tap, along one spatial dim, that lands on the input (not on padding) at some
    output position."""
    out = (size + 2 * padding - kernel) // stride + 1
    seen = [i for i in range(kernel) if any(0 <= o * stride - padding + i < size for o in range(out))]
    return (seen[0], seen[-1]) if seen else (0, kernel - 1)


def conv_kernel_cropped_to_the_input(gm) -> int:
    """conv2d whose kernel is wider than what its zero padding lets reach the input: the taps that only
    ever meet padding multiply zeros, so the kernel is cut to the taps that meet the input, and the padding
    by as much (same output, same values). The case that matters: late 'same'-padded depthwise convs on a
    2x2 or 1x1 feature map (MobileNetV3's 5x5 at a small input): cut to 3x3 or 1x1, they do a ninth to a
    twenty-fifth of the work (Keras MobileNetV3-Small at 32x32, 6 convs cut: .pte p50 fp32 0.116 -> 0.112 ms,
    int8 0.111 -> 0.104). Only where the cut keeps the padding symmetric, as conv2d's padding must be, and
    with dilation 1."""

    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.conv2d.default):
        x, w = node.args[0], node.args[1]
        vi, vo = _val(x), _val(node)
        stride, padding, dilation = (list(_arg(node, i, k, [d, d])) for i, k, d in
                                     ((3, "stride", 1), (4, "padding", 0), (5, "dilation", 1)))
        if w.op != "get_attr" or not (_static(vi) and _static(vo)) or vi.dim() != 4 or set(dilation) != {1}:
            continue
        stride, padding = (v * 2 if len(v) == 1 else v for v in (stride, padding))
        weight = _attr(gm, w)
        cuts = [_taps_seen(vi.shape[2 + d], weight.shape[2 + d], stride[d], padding[d]) for d in range(2)]
        kernel = list(weight.shape[2:])
        if all(first == 0 and last == k - 1 for (first, last), k in zip(cuts, kernel)):
            continue
        if any(first != k - 1 - last for (first, last), k in zip(cuts, kernel)):
            continue  # asymmetric: conv2d takes one padding per dim
        b = _Builder(gm, node)
        (h0, h1), (w0, w1) = cuts
        cropped = b.constant(weight.detach()[:, :, h0:h1 + 1, w0:w1 + 1].contiguous(), "cropped_weight",
                             persistent=True)
        args = list(node.args) + [None] * (7 - len(node.args))
        args[1], args[3], args[4] = cropped, stride, [padding[0] - h0, padding[1] - w0]
        args[2] = _arg(node, 2, "bias")
        args[5], args[6] = [1, 1], _arg(node, 6, "groups", 1)
        y = b(aten.conv2d.default, *args)
        if list(_val(y).shape) != list(vo.shape):
            gm.graph.erase_node(y)
            continue
        _replace(gm, node, y)
        changed += 1
    return _finish(gm, changed)


def sink_views(gm) -> int:
    """Move a view below the unary elementwise op that takes it (op(view(x)) -> view(op(x))), merge
    view chains and drop views to the shape they start from: the views between two 4-D ops vanish,
    and with them XNNPACK's layout transposes around each."""
    import torch

    aten = torch.ops.aten
    views = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}
    unary = {aten.relu.default, aten.gelu.default, aten.sigmoid.default, aten.tanh.default, aten.hardtanh.default,
             aten.hardswish.default, aten.clamp.default, aten.leaky_relu.default, aten.elu.default,
             aten.silu.default, aten.abs.default, aten.neg.default, aten.exp.default, aten.relu6.default}
    changed = 0
    for _ in range(64):
        moved = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function":
                continue
            src = node.args[0] if node.args else None
            if node.target in unary and getattr(src, "target", None) in views and len(src.users) == 1 \
                    and all(not isinstance(a, torch.fx.Node) for a in node.args[1:]):
                b = _Builder(gm, node)
                inner = b(node.target, src.args[0], *node.args[1:], **node.kwargs)
                _replace(gm, node, b(aten.view.default, inner, list(_val(node).shape)))
                moved = True
            elif node.target in views and getattr(src, "target", None) in views:
                node.args = (src.args[0], *node.args[1:])  # view(view(x)) -> view(x)
                moved = True
            elif node.target in views and _static(_val(src)) and list(_val(src).shape) == list(_val(node).shape):
                _replace(gm, node, src)
                moved = True
            if moved:
                changed += 1
                gm.graph.eliminate_dead_code()
                break
        if not moved:
            break
    return _finish(gm, changed)


# ---------------------------------------------------------------------------------------------
# Masks: boolean mask arithmetic as 0/1 float arithmetic, -inf attention masks as a finite bias

# the bias a masked score gets instead of -inf: exp() of it, less the row's max, is exactly 0 in float32 while
# masked and kept scores of a row differ by less than MASK_BIAS - 104; it stays finite in float16 (fp16 recipe)
MASK_BIAS = 3.0e4


def _is_float_cast(node) -> bool:
    """A dtype conversion of a bool tensor to a float one, that converts nothing else."""
    import torch

    aten = torch.ops.aten
    if getattr(node, "op", None) != "call_function" or node.target not in (aten._to_copy.default, aten.to.dtype):
        return False
    vi, vo = _val(node.args[0]), _val(node)
    extra = {k for k, v in node.kwargs.items() if v is not None} - {"dtype", "layout", "device", "pin_memory"}
    return (isinstance(vi, torch.Tensor) and vi.dtype == torch.bool and isinstance(vo, torch.Tensor)
            and vo.dtype.is_floating_point and not extra)


class _FloatMask:
    """Boolean nodes as 0/1 float nodes: not -> 1 - m, and -> a * b, or -> maximum, view-like ops
    replayed on the float values; any other boolean node (a comparison, an input) is cast to float
    once, right after it (that cast stays on the runtime's kernels: XNNPACK converts no bool)."""

    def __init__(self, gm, dtype):
        import torch

        aten = torch.ops.aten
        self.gm, self.dtype, self.memo, self.complements = gm, dtype, {}, {}
        self.nots = {aten.logical_not.default, aten.bitwise_not.default}
        self.ands = {aten.logical_and.default, aten.bitwise_and.Tensor}
        self.ors = {aten.logical_or.default, aten.bitwise_or.Tensor}
        self.shape_ops = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.expand.default,
                          aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.permute.default,
                          aten.transpose.int, aten.slice.Tensor, aten.select.int, aten.clone.default,
                          aten.alias.default}

    def __call__(self, node):
        import torch

        aten = torch.ops.aten
        if node in self.memo:
            return self.memo[node]
        if node.op == "call_function" and node.target in self.nots:
            out = self.complement(self(node.args[0]), node)
        elif node.op == "call_function" and node.target in self.ands | self.ors and \
                all(isinstance(a, torch.fx.Node) for a in node.args[:2]):
            x, y = self(node.args[0]), self(node.args[1])
            out = _Builder(self.gm, node)(aten.mul.Tensor if node.target in self.ands else aten.maximum.default, x, y)
        elif node.op == "call_function" and node.target in (aten.any.dim, aten.any.dims) and not node.kwargs:
            dims = node.args[1] if len(node.args) > 1 else None  # any over some dims -> their max
            if dims is None or (not isinstance(dims, int) and len(dims) == 0):
                out = self.cast(node)
            else:
                keep = bool(node.args[2]) if len(node.args) > 2 else False
                out = _Builder(self.gm, node)(aten.amax.default, self(node.args[0]),
                                              [dims] if isinstance(dims, int) else list(dims), keep)
        elif node.op == "call_function" and node.target in self.shape_ops and not node.kwargs:
            out = _Builder(self.gm, node)(node.target, self(node.args[0]), *node.args[1:])
        else:
            out = self.cast(node)
        self.memo[node] = out
        return out

    def complement(self, m, anchor):
        """1 - m, once per float mask m, built before `anchor` (its first use)."""
        import torch

        if m not in self.complements:
            b = _Builder(self.gm, anchor)
            self.complements[m] = b(torch.ops.aten.sub.Tensor, b.constant(torch.ones(1, dtype=self.dtype), "one"), m)
        return self.complements[m]

    def cast(self, node):
        import torch

        for user in node.users:  # one cast per boolean source
            if _is_float_cast(user) and _val(user).dtype == self.dtype and user.kwargs.get("device") is None:
                return user
        anchor = node.next
        while anchor.op == "placeholder":  # a boolean input: cast after the last input
            anchor = anchor.next
        return _Builder(self.gm, anchor)(torch.ops.aten._to_copy.default, node, dtype=self.dtype)


def bool_mask_as_float(gm) -> int:
    """A boolean mask cast to float (`(~pad).unsqueeze(-1).float()`) -> the same arithmetic on the
    0/1 float of the mask's source: not, and, or and view-like ops become sub/mul/maximum/view, which
    XNNPACK takes, and one cast of the source is left (the comparison that made it). Values are
    those of the casts they replace: 0 and 1."""
    import torch

    changed = 0
    floats = {}
    for node in list(gm.graph.nodes):
        if not _is_float_cast(node):
            continue
        src = node.args[0]
        masks = floats.setdefault(_val(node).dtype, _FloatMask(gm, _val(node).dtype))
        rewritable = masks.nots | masks.ands | masks.ors | masks.shape_ops | {torch.ops.aten.any.dim, torch.ops.aten.any.dims}
        if src.op != "call_function" or src.target not in rewritable:
            continue  # already the cast of a source
        new = masks(src)
        if new is node or not isinstance(new, torch.fx.Node):
            continue
        _replace(gm, node, new)
        changed += 1
    if changed:
        _drop_lone_asserts(gm)
    return _finish(gm, changed)


def _drop_lone_asserts(gm) -> None:
    """Erase metadata asserts on nodes nothing else uses (they would keep a dead boolean chain alive)."""
    import torch

    check = torch.ops.aten._assert_tensor_metadata.default
    for node in _calls(gm, check):
        subject = node.args[0]
        if isinstance(subject, torch.fx.Node) and all(u.target == check for u in subject.users):
            gm.graph.erase_node(node)


def _neg_inf_fill(node):
    """(boolean mask, negated) of a node that is -inf where the mask is set (where it is not, if negated)
    and 0 elsewhere: masked_fill(zeros, m, -inf), where(m, -inf, 0), where(keep, 0, -inf) (SDPA's boolean
    attn_mask) in their Tensor/Scalar forms; None otherwise."""
    import torch

    aten = torch.ops.aten
    if getattr(node, "op", None) != "call_function":
        return None
    if node.target == aten.masked_fill.Scalar and _is_zeros(node.args[0]) and _neg_inf(node.args[2]):
        return node.args[1], False
    wheres = (aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar)
    if node.target in wheres and len(node.args) == 3:
        cond, a, b = node.args
        if _neg_inf_const(a) and _is_zeros(b):
            return cond, False
        if _is_zeros(a) and _neg_inf_const(b):
            return cond, True
    return None


def _neg_inf(v) -> bool:
    return isinstance(v, (int, float)) and math.isinf(v) and v < 0


def _neg_inf_const(node) -> bool:
    import torch

    aten = torch.ops.aten
    if _neg_inf(node):
        return True
    if getattr(node, "op", None) != "call_function":
        return False
    if node.target == aten.scalar_tensor.default or node.target == aten.full.default:
        return _neg_inf(node.args[-1] if node.target == aten.full.default else node.args[0])
    return False


def _is_zeros(node) -> bool:
    import torch

    aten = torch.ops.aten
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return node == 0
    if getattr(node, "op", None) != "call_function":
        return False
    if node.target in (aten.zeros_like.default, aten.zeros.default, aten.new_zeros.default):
        return True
    if node.target in (aten.full_like.default, aten.full.default, aten.new_full.default):
        return node.args[1] == 0 if node.target != aten.new_full.default else node.args[2] == 0
    if node.target == aten.scalar_tensor.default:
        return node.args[0] == 0
    return False


def masked_softmax(gm) -> int:
    """_safe_softmax(scores + bias, dim), the bias -inf where a boolean mask is set and 0 elsewhere
    (a padding or attention mask, through views and expands), or _safe_softmax(scores.masked_fill(mask,
    -inf), dim), scores free of -inf ->
    _softmax(scores - MASK_BIAS * m, dim) * min(sum(1 - m, dim, keepdim), 1), m the mask as 0/1 float.

    Exact: a masked score's exp underflows to 0 as -inf's does, and the factor is 0 exactly on the rows
    _safe_softmax sets to 0 (every key masked), 1 elsewhere. XNNPACK takes every op of it but the mask's
    cast; the safe softmax's own masking (eq, logical_not, any, where, full_like) and the bias'
    (zeros_like, masked_fill) are gone."""
    import torch

    aten = torch.ops.aten
    shape_ops = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.expand.default,
                 aten.unsqueeze.default, aten.squeeze.dim, aten.permute.default, aten.transpose.int, aten.clone.default}
    changed = 0
    masks = {}
    for node in _calls(gm, aten._safe_softmax.default):
        x, dim = node.args[0], node.args[1]
        vx = _val(x)
        if _arg(node, 2, "dtype") is not None or not _static(vx) or not vx.is_floating_point():
            continue
        found, negated = None, False
        if getattr(x, "target", None) == aten.masked_fill.Scalar and _neg_inf(x.args[2]) \
                and not _may_hold_neg_inf(gm, x.args[0]):  # scores.masked_fill(mask, -inf): the same, unbroadcast
            found, negated = (x.args[0], x.args[1], []), False
        elif getattr(x, "target", None) != aten.add.Tensor or x.kwargs.get("alpha") not in (None, 1):
            continue
        for scores, bias in ((x.args[0], x.args[1]), (x.args[1], x.args[0])) if found is None else ():
            chain, src = [], bias
            while getattr(src, "op", None) == "call_function" and src.target in shape_ops and not src.kwargs:
                chain.append(src)
                src = src.args[0]
            mask, negated = _neg_inf_fill(src) or (None, False)
            if mask is not None and _static(_val(mask)) and _val(mask).dtype == torch.bool \
                    and list(_val(mask).shape) == list(_val(src).shape) \
                    and isinstance(scores, torch.fx.Node) and not _may_hold_neg_inf(gm, scores):
                found = scores, mask, chain[::-1]
                break
        if found is None:
            continue
        scores, mask, chain = found
        view = _broadcast_view(_val(mask), chain)  # the chain as one view that the add broadcasts, if it is one
        if view is not None and list(torch.broadcast_shapes(tuple(_val(scores).shape), tuple(view))) == list(vx.shape):
            chain = [view]
        floats = masks.setdefault(vx.dtype, _FloatMask(gm, vx.dtype))
        b = _Builder(gm, node)
        m = floats(mask)
        if negated:  # -inf where the mask is not set
            m = b(aten.sub.Tensor, b.constant(torch.ones(1, dtype=vx.dtype), "one"), m)
        for op in chain:  # the bias' views and expands, on the 0/1 mask
            m = b(aten.view.default, m, op) if isinstance(op, list) else b(op.target, m, *op.args[1:])
        bias = b(aten.mul.Tensor, m, b.constant(torch.tensor([MASK_BIAS], dtype=vx.dtype), "mask_bias"))
        soft = b(aten._softmax.default, b(aten.sub.Tensor, scores, bias), dim, False)
        keep = b(aten.sub.Tensor, b.constant(torch.ones(1, dtype=vx.dtype), "one"), m)
        vm = _val(m)
        d = dim % vx.dim() - (vx.dim() - vm.dim())  # the softmax dim in the mask's shape, broadcast from the right
        if d >= 0 and vm.shape[d] != 1:  # the row has a key left: where _safe_softmax keeps it
            # min(count of kept keys, 1): the amax of 0/1 values, as a sum (a linear after the mean pass) and a
            # clamp; XNNPACK ran the amax as a max pool between layout transposes
            keep = b(aten.clamp.default, b(aten.sum.dim_IntList, keep, [d], True), 0.0, 1.0)
        _replace(gm, node, b(aten.mul.Tensor, soft, keep))
        changed += 1
    return _finish(gm, changed)


def _broadcast_view(val, chain):
    """The shape P such that the view/expand `chain` applied to a tensor of `val`'s shape equals
    view(t, P) broadcast to the chain's result; None if no such P (checked on an arange)."""
    import torch

    if not _static(val) or not chain or len(chain) > 16:
        return None
    probe = torch.arange(val.numel()).reshape(tuple(val.shape))
    try:
        out = probe
        for op in chain:
            out = op.target(out, *op.args[1:])
    except (RuntimeError, TypeError, ValueError, IndexError):
        return None
    shape = [n if n > 1 and not (out.narrow(i, 0, 1) == out).all() else 1 for i, n in enumerate(out.shape)]
    if math.prod(shape) != val.numel() or not torch.equal(probe.reshape(shape).expand(out.shape), out):
        return None
    return shape


def expand_into_broadcast(gm) -> int:
    """expand(x) (or expand_as, as F.normalize writes it) whose every user is an elementwise binary op that
    broadcasts x to the same result without it -> x (XNNPACK refuses an expand that adds elements; its binary
    ops broadcast)."""
    import torch

    aten = torch.ops.aten
    binary = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.maximum.default,
              aten.minimum.default}
    changed = 0
    for node in _calls(gm, aten.expand.default, aten.expand_copy.default, aten.expand_as.default):
        src, vo = node.args[0], _val(node)
        vi = _val(src)
        if not (_static(vi) and _static(vo)) or vi.numel() == vo.numel() or not node.users:
            continue
        ok = True
        for user in node.users:
            if user.op != "call_function" or user.target not in binary or user.kwargs.get("alpha") not in (None, 1) \
                    or len(user.args) != 2:
                ok = False
                break
            other = user.args[1] if user.args[0] is node else user.args[0]
            vother = _val(other) if isinstance(other, torch.fx.Node) else torch.empty(())
            if other is node or not _static(vother) or not _static(_val(user)):
                ok = False
                break
            try:
                shape = torch.broadcast_shapes(tuple(vi.shape), tuple(vother.shape))
            except RuntimeError:
                ok = False
                break
            if list(shape) != list(_val(user).shape):
                ok = False
                break
        if not ok:
            continue
        _replace(gm, node, src)
        changed += 1
    return _finish(gm, changed)


def split_to_slices(gm) -> int:
    """chunk / split / split_with_sizes (to_edge: split_with_sizes_copy, which XNNPACK refuses) ->
    one slice (stride 1) per output used."""
    import operator

    import torch

    aten = torch.ops.aten
    splits = [aten.chunk.default, aten.split.Tensor, aten.split_with_sizes.default, aten.split_with_sizes_copy.default,
              aten.unsafe_split.Tensor, aten.split_copy.Tensor]
    changed = 0
    for node in _calls(gm, *splits):
        x, vi, outs = node.args[0], _val(node.args[0]), node.meta.get("val")
        users = list(node.users)
        if not _static(vi) or not isinstance(outs, (list, tuple)) or \
                not all(u.target is operator.getitem for u in users):
            continue
        dim = _arg(node, 2, "dim", 0) % vi.dim()
        starts = [0]
        for o in outs:
            starts.append(starts[-1] + o.shape[dim])
        for user in users:
            i = user.args[1]
            b = _Builder(gm, user)
            _replace(gm, user, b(aten.slice.Tensor, x, dim, starts[i], starts[i + 1]))
        gm.graph.erase_node(node)
        changed += 1
    return _finish(gm, changed)


def repeat_as_expand(gm) -> int:
    """repeat / tile that copies only size-1 dims (a recurrent layer's step mask `tile(m, [1, 1])`, a
    [B, 1] column repeated to [B, H]) -> the input itself where nothing is copied, else expand to the
    same shape (which `expand into broadcast` then drops into the op that reads it). XNNPACK has no
    config for repeat; Keras' masked GRU/LSTM writes one per step and state."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.repeat.default, aten.tile.default):
        x, reps = node.args[0], list(node.args[1])
        vi, vo = _val(x), _val(node)
        if not (_static(vi) and _static(vo)) or not all(isinstance(r, int) for r in reps):
            continue
        shape = list(vi.shape)
        if node.target == aten.tile.default and len(reps) < len(shape):
            reps = [1] * (len(shape) - len(reps)) + reps
        shape = [1] * (len(reps) - len(shape)) + shape
        if any(r != 1 and n != 1 for r, n in zip(reps, shape)):
            continue  # a real copy of data along a dim: no broadcast does that
        if list(vi.shape) == list(vo.shape):
            _replace(gm, node, x)
        else:
            _replace(gm, node, _Builder(gm, node)(aten.expand.default, x, list(vo.shape)))
        changed += 1
    return _finish(gm, changed)


def _may_hold_inf(gm, node) -> bool:
    """Whether `node`'s value may hold an infinity: an inf literal or constant in its ancestry, or a
    second float input (one input and finite parameters are taken as finite)."""
    import torch

    seen, todo, inputs = set(), [node], 0
    while todo:
        n = todo.pop()
        if n in seen or not isinstance(n, torch.fx.Node):
            continue
        seen.add(n)
        if isinstance(_val(n), torch.Tensor) and not _val(n).is_floating_point() and _val(n).dtype != torch.bool:
            continue  # an integer value holds no -inf, whatever made it (an embedding's index fix-up: where(ids < 0, ...))
        if n.op == "placeholder" and isinstance(_val(n), torch.Tensor) and _val(n).is_floating_point():
            inputs += 1
            if inputs > 1:
                return True
        elif n.op == "get_attr":
            t = getattr(gm, n.target, None)
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
                return True
        elif n.op == "call_function":
            for a in _flat(n.args, n.kwargs):
                if isinstance(a, float) and not math.isfinite(a):
                    return True
                if isinstance(a, torch.fx.Node):
                    todo.append(a)
    return False


def where_as_blend(gm) -> int:
    """where(c, a, b) with a boolean condition and float a, b -> a * m + b * (1 - m), m the 0/1 float of
    c (the mask's own slices, views and expands done on that float; one cast at the mask's source).
    Exact where a and b are finite (x * 1 + y * 0 = x): a recurrent layer's masked step (Keras GRU/LSTM
    with mask_zero: two per step), a padding blend. XNNPACK has no config for where or for bool ops.
    Left alone: a condition or value that is not a tensor node, integer values (an embedding's index
    fix-up), values that may hold inf (a -inf attention mask: `masked_softmax` handles those)."""
    import torch

    aten = torch.ops.aten
    changed, masks = 0, {}
    for node in _calls(gm, aten.where.self):
        if len(node.args) != 3 or node.kwargs or not all(isinstance(a, torch.fx.Node) for a in node.args):
            continue
        c, a, b = node.args
        vc, va, vb, vo = _val(c), _val(a), _val(b), _val(node)
        if not all(_static(v) for v in (vc, va, vb, vo)) or vc.dtype != torch.bool or \
                not (va.dtype == vb.dtype == vo.dtype and vo.dtype.is_floating_point):
            continue
        if _may_hold_inf(gm, a) or _may_hold_inf(gm, b):
            continue
        while c.op == "call_function" and c.target in (aten.expand.default, aten.expand_copy.default) and \
                _static(_val(c.args[0])):  # broadcast the 0/1 float in the blend, not the bool before it
            c = c.args[0]
        try:
            if list(torch.broadcast_shapes(tuple(_val(c).shape), tuple(va.shape), tuple(vb.shape))) != list(vo.shape):
                continue
        except RuntimeError:
            continue
        float_mask = masks.setdefault(vo.dtype, _FloatMask(gm, vo.dtype))
        m = float_mask(c)
        b_ = _Builder(gm, node)
        blend = b_(aten.add.Tensor, b_(aten.mul.Tensor, a, m), b_(aten.mul.Tensor, b, float_mask.complement(m, node)))
        _replace(gm, node, blend)
        changed += 1
    if changed:
        _drop_lone_asserts(gm)
    return _finish(gm, changed)


def fills_as_constants(gm) -> int:
    """zeros / ones / full and their _like forms of a static float shape -> a constant tensor (XNNPACK
    has no config for full; as a constant it is data its ops read: a recurrent layer's zero state)."""
    import torch

    aten = torch.ops.aten
    fills = {aten.zeros.default: 0.0, aten.ones.default: 1.0, aten.zeros_like.default: 0.0,
             aten.ones_like.default: 1.0, aten.full.default: None, aten.full_like.default: None}
    changed = 0
    for node in _calls(gm, *fills):
        vo = _val(node)
        if not _static(vo) or not vo.dtype.is_floating_point or vo.numel() > 1 << 16:
            continue
        value = fills[node.target]
        if value is None:
            value = node.args[1]
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
        const = _Builder(gm, node).constant(torch.full(tuple(vo.shape), float(value), dtype=vo.dtype), "fill")
        _replace(gm, node, const)
        changed += 1
    return _finish(gm, changed)


def empty_cat_and_alias_dropped(gm) -> int:
    """cat with empty inputs (a key/value cache that starts empty: GPT-2's `cat([past, k])` with past of
    shape (0,)) -> cat of the rest, or the one input left; alias(x) -> x. XNNPACK refuses a cat with an
    empty input and has no config for alias."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in _calls(gm, aten.cat.default):
        parts = node.args[0]
        if not isinstance(parts, (list, tuple)) or not all(isinstance(a, torch.fx.Node) for a in parts):
            continue
        kept = [a for a in parts if not (_static(_val(a)) and _val(a).numel() == 0)]
        if len(kept) == len(parts) or not kept or not _static(_val(node)):
            continue
        if len(kept) == 1 and list(_val(kept[0]).shape) == list(_val(node).shape):
            _replace(gm, node, kept[0])
        else:
            _replace(gm, node, _Builder(gm, node)(aten.cat.default, kept, *node.args[1:]))
        changed += 1
    for node in _calls(gm, aten.alias.default):
        _replace(gm, node, node.args[0])
        changed += 1
    return _finish(gm, changed)


FOLD_LIMIT = 1 << 20  # elements: a folded constant larger than this stays computed at run time
# random and in-place ops, and quantize/dequantize: a PT2E graph's int8 weight is a constant behind a
# dequantize, which XNNPACK's int8 patterns need to see (folded, the weight would be float)
_NOT_FOLDED = ("rand", "dropout", "bernoulli", "empty", "normal", "uniform", "multinomial", "_assert", "print",
               "copy_", "detach_", "quantize")


def _run_on(node, known: dict):
    """`node`'s op on the real values of its inputs (`known`); None where it cannot run on them here."""
    import torch

    def real(a):
        return known[a] if isinstance(a, torch.fx.Node) else a

    try:
        with torch.no_grad():
            return node.target(*torch.fx.node.map_aggregate(node.args, real),
                               **torch.fx.node.map_aggregate(node.kwargs, real))
    except Exception:  # noqa: BLE001  any op's own error: the value stays computed at run time
        return None


def fold_constants(gm) -> int:
    """Values that depend on no input, computed once now and kept as constants: a mask or position ids
    built from `arange` and comparisons (transformers' attention masks), an embedding of constant ids, a
    weight-norm weight (g * v / |v|), a relative-position bias gathered by a constant index, a detector's grid
    from meshgrid (ops returning several tensors, read by getitem). XNNPACK
    has no config for arange, comparisons, gather or pow; as constants they are data its ops read.
    Random, in-place, quantize and dequantize ops are never folded; results over FOLD_LIMIT elements
    stay computed."""
    import operator

    import torch

    known: dict = {}
    lists: dict = {}  # ops returning several tensors (meshgrid, split), read by getitem
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = gm
            for part in node.target.split("."):  # a submodule's parameter or buffer: 'm.embeddings.position_ids'
                value = getattr(value, part, None)
            if isinstance(value, torch.Tensor):
                known[node] = value
            continue
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in lists:
            value = lists[node.args[0]][node.args[1]]
            if isinstance(value, torch.Tensor):
                known[node] = value
            continue
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload) or \
                any(w in str(node.target) for w in _NOT_FOLDED) or node.kwargs.get("device") == "meta":
            continue
        leaves = [a for a in _flat(node.args, node.kwargs) if isinstance(a, torch.fx.Node)]
        if not all(a in known for a in leaves):
            continue
        value = _run_on(node, known)
        if isinstance(value, torch.Tensor):
            known[node] = value
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
            lists[node] = value
    changed = 0
    for node, value in list(known.items()):
        if node.op != "call_function" or value.numel() > FOLD_LIMIT or \
                all(user in known for user in node.users):  # folded with the node that reads it
            continue
        const = _Builder(gm, node).constant(value.detach().clone().contiguous(), "folded", persistent=True)
        _replace(gm, node, const)
        changed += 1
    return _finish(gm, changed)


def constants_row_major(gm) -> int:
    """Every tensor the graph reads (parameter, buffer, constant) stored with the row-major strides of its
    shape (torch_passes.row_major). ExecuTorch reads a tensor's dim order from its strides, and a tensor
    permuted where only size-1 dims move ((1, 1, C) -> (1, C, 1): strides (C, 1, C)) counts as contiguous to
    torch but reads as dim order (0, 2, 1): the portable add refused it ('input tensors have different dim
    orders') and XNNPACK failed on it ('Propagating input shapes failed'), in every lowering mode. A module's
    own buffer does it (register_buffer of a permuted tensor), and so did the Keras permute pass's constants.
    Runs last: the passes before it register constants too."""
    import torch

    from edgeship.convert.torch_passes import row_major

    changed, seen = 0, set()
    for node in gm.graph.nodes:
        if node.op != "get_attr" or node.target in seen:
            continue
        seen.add(node.target)
        owner_path, _, name = node.target.rpartition(".")
        owner = gm.get_submodule(owner_path) if owner_path else gm
        value = getattr(owner, name, None)
        if not isinstance(value, torch.Tensor) or (fixed := row_major(value.detach())).stride() == value.stride():
            continue
        if isinstance(value, torch.nn.Parameter):
            value.data = fixed
        elif name in owner._buffers:
            owner._buffers[name] = fixed
        else:
            setattr(owner, name, fixed)
        changed += 1  # the re-export after the passes reads the new strides
    return changed


# ---------------------------------------------------------------------------------------------
# Data movement: chains of views, transposes and copies as one permute; packed projections split

def _movement_targets():
    """The ops that only move data, one-to-one: each output element is one input element."""
    import torch

    aten = torch.ops.aten
    return {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.transpose.int,
            aten.permute.default, aten.clone.default, aten.alias.default, aten.squeeze.dim, aten.squeeze.dims,
            aten.squeeze.default, aten.unsqueeze.default, aten.t.default, aten.contiguous.default}


def _slice_targets():
    import torch

    return {torch.ops.aten.slice.Tensor}


def _moves_data(node) -> bool:
    """Whether a transpose or permute node moves elements in memory: it reorders dims of size > 1."""
    import torch

    aten = torch.ops.aten
    if node.target not in (aten.transpose.int, aten.permute.default, aten.t.default):
        return False
    vi = _val(node.args[0])
    if node.target is aten.permute.default:
        order = [d % vi.dim() for d in node.args[1]]
    else:
        order = list(range(vi.dim()))
        if node.target is aten.transpose.int:
            a, c = node.args[1] % vi.dim(), node.args[2] % vi.dim()
        else:
            a, c = 0, vi.dim() - 1
        order[a], order[c] = order[c], order[a]
    kept = [d for d in order if vi.shape[d] != 1]
    return kept != sorted(kept)


def _run_on_indices(node, value):
    """NODE's op (a movement or slice op) applied to a real tensor VALUE in place of its input."""
    import torch

    args = (value, *node.args[1:])
    try:
        return node.target(*args, **node.kwargs)
    except RuntimeError:  # a view of a permuted tensor: reshape copies, which is what the index tensor needs
        if node.target in (torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default):
            return torch.ops.aten.reshape.default(*args)
        raise


def _one_permute(flat):
    """FLAT[i]: the input element (row-major index) that output element i reads, a permutation of
    range(n). As (shape A, order P) such that output = view(permute(view(input, A), P), out shape), with A's
    dims as coarse as the permutation allows; None when no single permute does it."""
    import torch

    n = flat.numel()
    if n < 2 or int(flat[0]) != 0 or not torch.equal(torch.sort(flat).values, torch.arange(n)):
        return None
    dims, cur = [], 1  # (size, input stride), innermost output dim first
    while cur < n:
        total, stride = n // cur, int(flat[cur])
        m = 1
        while m < total and int(flat[cur * m]) == m * stride:
            m += 1
        while total % m:
            m -= 1
        if m < 2:
            return None
        dims.append((m, stride))
        cur *= m
    merged = [dims[0]]
    for size, stride in dims[1:]:
        inner_size, inner_stride = merged[-1]
        if stride == inner_stride * inner_size:
            merged[-1] = (inner_size * size, inner_stride)
        else:
            merged.append((size, stride))
    by_stride = sorted(merged, key=lambda d: d[1])  # the input's layout, innermost first
    expect = 1
    for size, stride in by_stride:
        if stride != expect:
            return None
        expect *= size
    outer_first = merged[::-1]
    shape_a = [size for size, _ in by_stride[::-1]]
    strides_a = [stride for _, stride in by_stride[::-1]]
    order = [strides_a.index(stride) for _, stride in outer_first]
    i = torch.arange(n)
    rebuilt = torch.zeros(n, dtype=flat.dtype)
    step = 1
    for size, stride in dims:
        rebuilt += (i // step) % size * stride
        step *= size
    return (shape_a, order) if torch.equal(rebuilt, flat) else None


def _source_permute(flat, shape: list[int]):
    """(SHAPE, order) when FLAT is a permute of SHAPE's own dims (up to 4 of them): kept in the source's rank,
    so a 4-D tensor's permute stays one that XNNPACK's channels-last handling sees as before; else None."""
    import itertools

    import torch

    if len(shape) > 4:
        return None
    base = torch.arange(flat.numel()).reshape(shape)
    kept = [d for d in range(len(shape)) if shape[d] != 1]
    for order in itertools.permutations(range(len(shape))):
        if [d for d in order if shape[d] != 1] != kept and torch.equal(base.permute(order).reshape(-1), flat):
            return shape, list(order)
    return None


def _as_one_permute(b, source, shape_a, order, out_shape):
    """SOURCE viewed as SHAPE_A, permuted by ORDER, viewed as OUT_SHAPE: only the ops that change something."""
    import torch

    aten = torch.ops.aten
    x = source
    if order != sorted(order):
        if list(_val(x).shape) != list(shape_a):
            x = b(aten.view.default, x, list(shape_a))
        x = b(aten.permute.default, x, list(order))
    if list(_val(x).shape) != list(out_shape):
        x = b(aten.view.default, x, list(out_shape))
    return x


def _cost(nodes) -> tuple:
    """(transposes that move elements, transposes and copies, ops): what a chain of movement ops costs."""
    import torch

    aten = torch.ops.aten
    copies = {aten.transpose.int, aten.permute.default, aten.t.default, aten.clone.default, aten.contiguous.default}
    return sum(map(_moves_data, nodes)), sum(n.target in copies for n in nodes), len(nodes)


def movement_chains_as_one_permute(gm) -> int:
    """A chain of data-movement ops (view, transpose, permute, clone, squeeze, unsqueeze) -> at most a view,
    one permute and a view, where that costs less (_cost: element moves first, then copies, then ops). What
    the chain does is read off by running it on a tensor of element indices. PyTorch's multi-head attention
    writes its heads' outputs through permute, copy, permute, permute, view, its projections through view,
    transpose, view, copy, and its batch_first input and output through transposes of a size-1 dim: XNNPACK
    ran each transpose and copy."""
    import torch

    moves = _movement_targets()
    changed = 0
    for end in list(gm.graph.nodes):
        if end.op != "call_function" or end.target not in moves or end not in gm.graph.nodes:
            continue
        if len(end.users) == 1 and next(iter(end.users)).target in moves:
            continue  # not the chain's last op
        chain, node = [], end
        while getattr(node, "target", None) in moves and (node is end or len(node.users) == 1):
            chain.append(node)
            node = node.args[0]
        chain.reverse()
        source, vs = node, _val(node)
        if not (_static(vs) and all(_static(_val(c)) for c in chain)) or _cost(chain)[1] == 0:
            continue  # views alone: sink_views merges them
        idx = torch.arange(vs.numel()).reshape(list(vs.shape))
        for c in chain:
            idx = _run_on_indices(c, idx)
        found = _source_permute(idx.reshape(-1), list(vs.shape)) or (
            _one_permute(idx.reshape(-1)) if vs.numel() > 1 else ([1], [0]))
        if found is None or len(found[0]) > 6:
            continue
        shape_a, order = found
        moved = order != sorted(order)
        views = int(moved and list(vs.shape) != list(shape_a)) + int(list(_val(end).shape) != (
            [shape_a[d] for d in order] if moved else list(vs.shape)))
        if (int(moved), int(moved), int(moved) + views) >= _cost(chain):
            continue
        b = _Builder(gm, end)
        _replace(gm, end, _as_one_permute(b, source, shape_a, order, list(_val(end).shape)))
        changed += 1
    return _finish(gm, changed)


def _impure(node) -> bool:
    """Whether computing NODE twice may differ from computing it once: side effects, mutation, randomness."""
    schema = getattr(node.target, "_schema", None)
    return node.is_impure() or (schema is not None and schema.is_mutable) or \
        any(word in str(node.target) for word in ("rand", "dropout", "bernoulli", "normal"))


def common_subexpressions_merged(gm, max_constant: int = 4096) -> int:
    """Equal constants that the passes made (up to MAX_CONSTANT elements) read through one node, then ops
    that compute the same thing from the same inputs computed once. A padding mask's bias and its kept-keys
    count, built per layer from one mask, are the same in every layer. Left alone: ops with side effects or
    randomness, and the distinct copies of one value that a cat reads (XNNPACK's cat config counts
    distinct input nodes)."""
    import torch

    changed = 0
    constants: dict[tuple, torch.fx.Node] = {}
    for node in list(gm.graph.nodes):
        if node.op != "get_attr" or not node.target.startswith("_xnnpack_"):
            continue  # the model's own parameters and buffers keep their identity (the partitioner split a
            # stock encoder into 4 partitions where two layers' equal LayerNorm weights became one)
        value = _attr(gm, node)
        if not isinstance(value, torch.Tensor) or value.numel() > max_constant:
            continue
        changed += _merged(gm, node, constants,
                           (value.dtype, tuple(value.shape), value.detach().contiguous().cpu().numpy().tobytes()))
    seen: dict[tuple, torch.fx.Node] = {}
    cat = torch.ops.aten.cat.default
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or _impure(node) or any(u.target is cat for u in node.users):
            continue
        try:
            key = (node.target, repr(torch.fx.node.map_aggregate(node.args, lambda a: ("node", id(a))
                                                                  if isinstance(a, torch.fx.Node) else a)),
                   repr(sorted(node.kwargs.items())))
        except TypeError:
            continue
        changed += _merged(gm, node, seen, key)
    return _finish(gm, changed)


def _merged(gm, node, table: dict, key) -> int:
    """NODE replaced by the node TABLE holds for KEY (1), or held there for the next one (0)."""
    if key not in table:
        table[key] = node
        return 0
    node.replace_all_uses_with(table[key])
    gm.graph.erase_node(node)
    return 1


def _movement_tree(start):
    """The movement and slice nodes fed by START alone, and the tree's leaves (the nodes something else
    reads); None when a node inside is read by anything outside the tree."""
    moves = _movement_targets() | _slice_targets()
    tree, leaves, todo = [], [], [start]
    while todo:
        node = todo.pop()
        users = list(node.users)
        inner = [u for u in users if u.target in moves and len(u.all_input_nodes) == 1]
        if node is not start:
            tree.append(node)
            if len(inner) < len(users):
                if inner:
                    return None
                leaves.append(node)
                continue
        elif len(inner) < len(users):
            return None
        todo.extend(inner)
    return tree, leaves


def _weights(gm, linear):
    """A linear node's weight and bias tensors (bias None), when both are constants of the module."""
    w = linear.args[1]
    bias = linear.args[2] if len(linear.args) > 2 else linear.kwargs.get("bias")
    if getattr(w, "op", None) != "get_attr" or (bias is not None and getattr(bias, "op", None) != "get_attr"):
        return None
    return _attr(gm, w).detach(), (_attr(gm, bias).detach() if bias is not None else None)


def packed_linear_split(gm) -> int:
    """A linear whose output is only ever read in disjoint parts of its features, through views,
    transposes and slices (PyTorch's multi-head attention: one in_proj of 3 x d features, viewed, transposed,
    copied and sliced into q, k and v) -> one linear per part, with its rows of the weight and bias, and at
    most a view, a permute and a view after each. The same multiply-adds; the transpose, the copy of 3 x d
    features and the slices are gone."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for linear in _calls(gm, aten.linear.default):
        vo = _val(linear)
        weights = _weights(gm, linear)
        found = _movement_tree(linear)
        if weights is None or not _static(vo) or found is None or len(found[1]) < 2:
            continue
        tree, leaves = found
        if not all(_static(_val(n)) for n in tree):
            continue
        features = vo.shape[-1]
        rows = vo.numel() // features
        values = {linear: torch.arange(vo.numel()).reshape(list(vo.shape))}
        position = {n: i for i, n in enumerate(gm.graph.nodes)}
        for node in sorted(tree, key=position.__getitem__):
            values[node] = _run_on_indices(node, values[node.args[0]])
        parts, taken = [], set()
        for leaf in leaves:
            idx = values[leaf].reshape(-1)
            cols = torch.unique(idx % features)
            if idx.numel() != rows * cols.numel() or taken & set(cols.tolist()):
                parts = None
                break
            taken |= set(cols.tolist())
            rank = torch.full((features,), -1, dtype=torch.long)
            rank[cols] = torch.arange(cols.numel())
            local = idx // features * cols.numel() + rank[idx % features]
            layout = _one_permute(local) if cols.numel() < features else None
            if layout is None:
                parts = None
                break
            parts.append((leaf, cols, layout))
        if not parts:
            continue
        weight, bias = weights
        for leaf, cols, (shape_a, order) in parts:
            b = _Builder(gm, leaf)
            w = b.constant(weight[cols].contiguous(), "split_weight", persistent=True)
            bb = b.constant(bias[cols].contiguous(), "split_bias", persistent=True) if bias is not None else None
            part = b(aten.linear.default, linear.args[0], w, bb)
            _replace(gm, leaf, _as_one_permute(b, part, shape_a, order, list(_val(leaf).shape)))
        gm.graph.eliminate_dead_code()
        changed += 1
    return _finish(gm, changed)


def scalar_product_into_linear(gm) -> int:
    """mul(y, c) with c one constant number, where y is a linear's output (its only reader) seen through
    views and transposes -> the linear with its weight and bias times c. Attention scales q and k by
    sqrt(1/sqrt(d)) each after their projections: two multiplies per layer that the weights can hold."""
    import torch

    aten = torch.ops.aten
    moves = _movement_targets()
    changed = 0
    for mul in _calls(gm, aten.mul.Tensor):
        y, c = mul.args
        if isinstance(c, torch.fx.Node) and c.op == "get_attr":
            c = _attr(gm, c)
            if not isinstance(c, torch.Tensor) or c.numel() != 1:
                continue
            c = float(c.reshape(()))
        if not isinstance(c, (int, float)) or isinstance(c, bool) or not math.isfinite(c):
            continue
        node = y
        while getattr(node, "target", None) in moves and len(node.users) == 1:
            node = node.args[0]
        if getattr(node, "target", None) is not aten.linear.default or len(node.users) != 1:
            continue
        weights = _weights(gm, node)
        if weights is None or _val(mul).shape != _val(y).shape:
            continue
        weight, bias = weights
        b = _Builder(gm, node)
        w = b.constant(weight * c, "scaled_weight", persistent=True)
        bb = b.constant(bias * c, "scaled_bias", persistent=True) if bias is not None else None
        node.args = (node.args[0], w, bb)
        node.kwargs = {}
        _replace(gm, mul, y)
        changed += 1
    return _finish(gm, changed)


# in order: the layer-norm pass makes means the mean pass rewrites; views are sunk last
PASSES = {
    "conv1d as conv2d": conv1d_as_conv2d,
    "conv kernel cut to the taps that meet the input": conv_kernel_cropped_to_the_input,
    "layer norm decomposed": layer_norm_decompose,
    "activations as XNNPACK ops": activations_as_xnnpack_ops,
    "group norm decomposed": group_norm_decompose,
    "instance norm decomposed": instance_norm_decompose,
    "pooling as 2-D pools": pooling_as_2d_pools,
    "nearest upsampling as repeats": nearest_upsample_as_repeats,
    "RMS norm decomposed": rms_norm_decompose,
    "variance as means": variance_as_means,
    "softmax on the last dim": softmax_on_last_dim,
    "strided slice as a view": strided_slice_as_view,
    "reflect and replicate padding as concatenation": reflect_pad_as_cat,
    "max and min over one dim": reductions_over_one_dim,
    "roll as slices": roll_as_slices,
    "masked safe softmax as softmax with a finite bias": masked_softmax,
    "safe softmax as softmax": safe_softmax_to_softmax,
    "bool mask as 0/1 float": bool_mask_as_float,
    "repeat as expand": repeat_as_expand,
    "repeat as concatenation": repeat_as_cat,
    "expand into broadcast": expand_into_broadcast,
    "split as slices": split_to_slices,
    "batched matmul as bmm": batched_matmul_to_bmm,
    "expand as view": expand_to_view,
    "materialized expand as concatenation": materialized_expand_as_cat,
    "select as slice": select_to_slice,
    "vector norm as sums": vector_norm_as_sums,
    "pow as products": pow_as_muls,
    "scalar op with a tensor": scalar_ops_to_tensor,
    "squeeze as view": squeeze_to_view,
    "where as blend": where_as_blend,
    "fills as constants": fills_as_constants,
    "max as 4-D keepdim": max_to_4d_keepdim,
    "mean for XNNPACK": mean_for_xnnpack,
    "constants folded": fold_constants,
    "empty concatenation and alias dropped": empty_cat_and_alias_dropped,
    "common subexpressions merged": common_subexpressions_merged,
    "packed linear split by the parts read": packed_linear_split,
    "scalar product folded into its linear": scalar_product_into_linear,
    "data movement as one permute": movement_chains_as_one_permute,
    "views sunk and merged": sink_views,
    "constants stored row-major": constants_row_major,
}
