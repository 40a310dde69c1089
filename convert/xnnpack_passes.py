"""Graph passes and a guarded partitioner that let XNNPACK take real graphs whole.

XNNPACK's `ChannelsLastTaggedReshapePass` runs PReLU in NHWC and refuses any PReLU whose input is
not 4-D ("Attempting to convert non-NHWC compatible node to NHWC"): the PReLU behind a Linear in
MTCNN-style nets. `prelu_to_4d` feeds such a PReLU a (N, C, 1, 1) view of its input, which
changes no value (PReLU's weight is per channel, dim 1).

When a node still fails to lower, `lower_guarded` finds the node the XNNPACK backend choked on
(from the failing pass' own frame), keeps that node out of the partition and tries again, so that
one bad node costs one op of delegation rather than the whole graph.
"""

from __future__ import annotations

from edgeship.convert import xnnpack_decompose

MAX_EXCLUDED = 12  # nodes kept out of XNNPACK before giving up on a graph


def prelu_to_4d(gm) -> int:
    """prelu(x) on a 2-D or 3-D x  ->  view(prelu(view(x, (*x.shape, 1, ...))), x.shape).

    Returns the number of PReLUs rewritten."""
    import torch

    _aten = torch.ops.aten
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != _aten.prelu.default:
            continue
        x = node.args[0]
        val = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
        if not isinstance(val, torch.Tensor) or val.dim() not in (2, 3):
            continue
        shape = list(val.shape)
        shape4 = shape + [1] * (4 - len(shape))
        graph = gm.graph
        with graph.inserting_before(node):
            x4 = graph.call_function(_aten.view.default, (x, shape4))
            x4.meta["val"] = val.reshape(shape4)
            prelu = graph.call_function(_aten.prelu.default, (x4, *node.args[1:]))
            prelu.meta = {**node.meta, "val": x4.meta["val"]}
            back = graph.call_function(_aten.view.default, (prelu, shape))
            back.meta = dict(node.meta)
        node.replace_all_uses_with(back)
        graph.erase_node(node)
        changed += 1
    if changed:
        gm.recompile()
    return changed


def spatial_mean_keepdim(gm) -> int:
    """mean(x, [2, 3]) of a 4-D x without keepdim (global average pooling as Keras writes it)
    -> view(mean(x, [2, 3], keepdim=True), (N, C)): XNNPACK takes a spatial mean only with
    keepdim. Returns the number of means rewritten."""
    import torch

    _aten = torch.ops.aten
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != _aten.mean.dim or node.kwargs.get("dtype") is not None:
            continue
        x = node.args[0]
        val = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if not isinstance(val, torch.Tensor) or val.dim() != 4 or keep or len(node.args) < 2:
            continue
        if sorted(d % 4 for d in node.args[1]) != [2, 3]:
            continue
        graph = gm.graph
        with graph.inserting_before(node):
            mean = graph.call_function(_aten.mean.dim, (x, [2, 3], True))
            mean.meta["val"] = val.mean(dim=(2, 3), keepdim=True)
            flat = graph.call_function(_aten.view.default, (mean, list(val.shape[:2])))
            flat.meta = dict(node.meta)
        node.replace_all_uses_with(flat)
        graph.erase_node(node)
        changed += 1
    if changed:
        gm.recompile()
    return changed


def aliases_renamed(gm) -> int:
    """torch.multiply/subtract/divide as mul/sub/div, which XNNPACK's quantizer annotates (torch_passes)."""
    from edgeship.convert.torch_passes import aliases_to_canonical_ops  # imports torch: loaded where used

    return aliases_to_canonical_ops(gm)


XNNPACK_PASSES = {"alias ops renamed": aliases_renamed, "PReLU fed a 4-D view": prelu_to_4d,
                  "spatial mean with keepdim": spatial_mean_keepdim, **xnnpack_decompose.PASSES}


def prepare_for_xnnpack(program, examples, quantized: bool = False):
    """Decompose fused attention and recurrent layers (xnnpack_decompose.decompose_fused), then apply
    XNNPACK_PASSES to a float ExportedProgram, for float and quantized recipes alike; re-export only if one
    changed something. Returns (program, {pass description: nodes changed}) with the unchanged ones left out.

    `quantized` (the program will go through PT2E next): recurrent layers stay whole here, so the quantizer
    leaves them float, as it always has (an nn.LSTM of 2 layers whose gates and state went int8 fell from
    cosine 0.99999 to 0.963); `after_quantization` decomposes them afterwards, so they still lower to XNNPACK.

    Quantized recipes once got only the PReLU and spatial-mean passes: with all of them a digits ViT's int8
    .pte fell from 88.5% to 59% top-1. The cause was not in these passes: `expand as view` + `views sunk and
    merged` hand the CLS parameter straight to `cat`, whose inputs and output share one PT2E observer, and the
    calibration shortcut that observes constants once (torch_common.constants_observed_once) froze that shared
    observer after the parameter's call, so the patch tokens were clipped to the CLS token's range."""
    kinds = [k for k in xnnpack_decompose.FUSED_OPS if not (quantized and k in AFTER_QUANTIZATION)]
    return _decompose_and_rewrite(program, examples, kinds)


# fused ops decomposed only after PT2E quantization: the quantizer leaves them float while they are whole
AFTER_QUANTIZATION = ("recurrent layers",)


def after_quantization(program, examples):
    """A quantized ExportedProgram's recurrent layers, left whole (and float) by `prepare_for_xnnpack`,
    decomposed and rewritten for XNNPACK like the rest. Returns (program, {pass: nodes changed})."""
    return _decompose_and_rewrite(program, examples, AFTER_QUANTIZATION, only_if_decomposed=True)


def _decompose_and_rewrite(program, examples, kinds, only_if_decomposed: bool = False):
    import torch

    decomposed, kinds = xnnpack_decompose.decompose_fused(program, kinds)
    if only_if_decomposed and not kinds:
        return program, {}
    graph = decomposed.module()
    done = {what: n for what, fn in XNNPACK_PASSES.items() if (n := fn(graph))}
    if not done and not kinds:
        return program, {}
    done = {**{f"{kind} decomposed": 1 for kind in kinds}, **done}
    return torch.export.export(graph, tuple(examples)), done


# ---------------------------------------------------------------------------------------------
# Partitioning around nodes XNNPACK cannot lower


def guarded_partitioner(excluded: frozenset = frozenset(), per_op_mode: bool = False):
    """An XnnpackPartitioner that keeps the nodes named in `excluded` (edge-graph node names)
    out of every partition; the rest partitions as usual."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class GuardedXnnpackPartitioner(XnnpackPartitioner):
        def ops_to_not_decompose(self, ep):
            ops, keep = super().ops_to_not_decompose(ep)
            if not excluded:
                return ops, keep
            # an excluded op is decomposed as usual: ExecuTorch insists that ops kept whole for a
            # partitioner end up inside its partitions
            return ops, lambda node: keep(node) and not ({edge_name(node)} | node_names(node)) & excluded

        def get_matched_nodes_from_configs(self, ep):
            groups = super().get_matched_nodes_from_configs(ep)
            if not excluded:
                return groups
            # a group is one op with its q/dq and constants: drop the whole group of an excluded op
            return [g for g in groups if not any(node_names(n) & excluded for n in g)]

    return GuardedXnnpackPartitioner(per_op_mode=per_op_mode)


def edge_name(node) -> str:
    """The name a node of an ATen graph gets in the edge graph ('prelu_3' -> 'aten_prelu_default_3'),
    which is also its name inside XNNPACK's preprocessing."""
    op, overload = getattr(node.target, "_opname", None), getattr(node.target, "_overloadname", None)
    if node.name.startswith("aten_") or not op or not node.name.startswith(op):
        return node.name
    return f"aten_{op}_{overload}{node.name[len(op):]}"


def node_names(node) -> set[str]:
    """A node's name and the names of the nodes it was made from (meta 'from_node', transitively):
    XNNPACK's preprocessing rewrites some nodes (max.dim -> amax) under new names."""
    names = {node.name}
    todo = list(node.meta.get("from_node") or [])
    while todo and len(names) < 64:
        source = todo.pop()
        names.add(source.name)
        todo.extend(getattr(source, "from_node", None) or [])
    return names


def failing_node_name(exc: BaseException) -> str | None:
    """The name of the graph node XNNPACK's preprocessing was handling when it raised."""
    node = failing_node(exc)
    return None if node is None else node.name


def failing_node(exc: BaseException):
    """The graph node XNNPACK's preprocessing was handling when it raised: the innermost traceback
    frame of executorch's XNNPACK backend holding an fx.Node in `target_node` or `node`."""
    import torch.fx

    found = None
    for e in _chain(exc):
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if "backends/xnnpack" in frame.f_code.co_filename.replace("\\", "/"):
                for key in ("target_node", "node"):
                    value = frame.f_locals.get(key)
                    if isinstance(value, torch.fx.Node) and value.op == "call_function":
                        found = value
                        break
            tb = tb.tb_next
    return found


def lower_guarded(program, lower, max_excluded: int = MAX_EXCLUDED):
    """`lower(program, excluded)` until it succeeds, each failure adding the node it failed on to
    `excluded`. `program` is deep-copied for each try. A node that fails again under the same
    name was renamed by XNNPACK's preprocessing: the names it was made from are excluded then.
    Returns (lowered, excluded names); raises the last error when the failing node cannot be
    named or too many nodes fail."""
    import copy

    excluded: set[str] = set()
    tries = 0
    while True:
        try:
            return lower(copy.deepcopy(program), frozenset(excluded)), sorted(excluded)
        except Exception as e:
            node = failing_node(e)
            tries += 1
            if node is None or tries > max_excluded:
                raise
            more = {node.name} if node.name not in excluded else node_names(node) - excluded
            if not more:
                raise
            excluded |= more


def _chain(exc: BaseException):
    seen = []
    while exc is not None and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen
