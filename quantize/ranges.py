"""Activations int8 cannot hold, found on the float model before any conversion, and the layers
kept in float for them (--keep-float-ranges auto, the default for int8).

One int8 scale per tensor spreads 256 codes over the tensor's range [min(lo, 0), max(hi, 0)]. A
tensor whose values span many decades (a power spectrum, a mel energy before its log) keeps its
few large values and sends nearly all the others to code zero; a following log or division turns
that into nonsense, though the tensor's own SNR looks fine. The statistic, per activation, over
the calibration samples:

    zeroed = share of its non-zero values v with |v| < step / 2, step = range / 255

(an infinite or NaN range, a mask of -inf added to attention scores, counts as 1: no value
survives), and the same with one step per channel (channel axis 1 for torch, -1 for Keras). An
activation is flagged when zeroed > THRESHOLD and its per-channel share > CHANNEL_THRESHOLD: its values
span decades inside each channel. One channel far larger than the others (tests/planted/fragile_torch.py:
per tensor 0.94, per channel 0.005) is not flagged: that is what CLE and --max-drop are for. The
outputs of fixed-range ops (softmax, sigmoid, tanh: their int8 kernels fix the output step at 1/256 by
design and their consumers sum them against other values) and integer or boolean tensors are not
measured.

Where, by framework:
  torch  every float output of the exported graph's call_function nodes (torch.export, the graph the
         PT2E and ONNX routes quantize), run by an FX interpreter over the samples; a flagged node
         belongs to the innermost module of its nn_module_stack (a container is not a layer). Nested
         names collapse to the outermost (a front end and its conv: the front end). A node of the
         top-level forward has no module to keep float: it is reported, not kept.
  keras  the output of every layer (an intermediate-output model), nested Functional and Sequential models
         opened recursively: each nested model gets a probe of its own, fed the inputs the outer graph gave
         it (its `layer.output` is its own graph's tensor, not connected to the outer inputs: a top-level
         probe of a base model used as a layer failed, and nothing was measured). A flagged layer is kept
         float when it holds weights (convert/layers.py's Keras layer), else its weighted producer; one
         inside a nested model ('base/block_1_expand') keeps the top-level nested model ('base') float,
         the only layer both Keras routes can find (their layers are top-level layers), and the line says so.

THRESHOLD 0.8, from data: the largest per-tensor zeroed share of any activation (32 calibration samples each)
of the trained models whose int8 holds: digits CNN 0.02, the zoo's onet 0.26, MobileNetV2 (ImageNet weights)
0.28, fer_xception (Keras) 0.29, langid_transformer 0.05 (its finite tensors), MobileNetV3-Small (Keras,
digits) 0.47 (a squeeze-excite multiply); kws_cnn's front end: DFT conv 0.89, mel conv 0.91, power
0.97-0.98, the rest of kws_cnn 0.14 at most. Margin: 0.33 above the highest that holds, 0.09 below the
lowest of the front end (the power, the tensor that matters, 0.17). speaker_lstm's gate pre-activations
(0.72; its int8 fails for other reasons too) stay under it. CHANNEL_THRESHOLD 0.5: kws_cnn's power 0.88-0.91
and mel 0.83 per channel (its DFT 0.48: kept with the front end anyway); the planted fragile channel 0.005,
the zoo CNNs' per-channel shares are below their per-tensor ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edgeship.convert.layers import CONTAINERS, keras_layers, normalize_fqn, type_name

MODES = ("auto", "off")
THRESHOLD = 0.8  # share of non-zero values that round to zero at an int8 step of range/255 (data: module doc)
# ... and of them, at one scale per channel: over it, the values span decades inside each channel, which
# no per-channel rescaling (CLE) fixes; under it, one channel dwarfs the others, which CLE or --max-drop handle
CHANNEL_THRESHOLD = 0.5
SAMPLES = 32  # calibration samples the activations are measured on
KEEP_VALUES = 4096  # values kept per activation per sample (a random subset; min and max are exact)
FIXED_RANGE = ("softmax", "sigmoid", "tanh", "hardsigmoid", "log_softmax")
SHAPE_OPS = ("view", "reshape", "permute", "transpose", "squeeze", "unsqueeze", "flatten", "getitem", "split",
             "chunk", "slice", "select", "expand", "contiguous", "clone", "alias", "detach", "t", "_to_copy",
             "dropout", "cat", "stack", "pad", "max_pool", "adaptive_max_pool", "unbind", "narrow")


@dataclass
class Activation:
    """One measured activation: the graph node (torch) or layer output (Keras)."""

    name: str
    op: str
    layer: str | None  # the innermost layer it is computed in; None: none encloses it
    lo: float
    hi: float
    zeroed: float  # share of non-zero values that round to zero at an int8 step of range/255
    spread: float  # range / median |non-zero value|
    per_channel: float  # share of non-zero values that round to zero at one int8 scale per channel
    # the layers kept float for it: its own; for an infinite range (a mask of -inf), its consumers' (the
    # sum of it and the scores is what a route quantizes: onnxruntime's Add got scale inf)
    keep: tuple[str, ...] = ()
    # the formats where it matters; empty: every one. A -inf mask read only by the fused attention op: .onnx
    # (torch.onnx splits it into MatMul, Add, Softmax and onnxruntime quantizes the Add: scale inf; the PT2E
    # quantizers of .pte and .tflite leave the fused op float: langid_transformer int8 .tflite 0.9999 without)
    targets: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        return self.zeroed > THRESHOLD and self.per_channel > CHANNEL_THRESHOLD

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (round(v, 4) if isinstance(v, float) and np.isfinite(v) else
                    (str(v) if isinstance(v, float) else v)) for k, v in d.items()}


@dataclass
class Finding:
    """What --keep-float-ranges found on one model: the layers to keep float, and why."""

    mode: str
    layers: tuple[str, ...] = ()
    flagged: list[Activation] = field(default_factory=list)
    measured: int = 0
    samples: int = 0
    skipped: str | None = None  # why nothing was measured

    def for_target(self, target: str) -> Finding:
        """The finding as it applies to one format (a mask read by fused attention matters to .onnx only)."""
        flagged = [a for a in self.flagged if not a.targets or target in a.targets]
        if len(flagged) == len(self.flagged):
            return self
        return Finding(self.mode, kept_layers(flagged), flagged, self.measured, self.samples, self.skipped)

    def record(self) -> dict:
        return {
            "mode": self.mode, "threshold": THRESHOLD, "samples": self.samples, "activations": self.measured,
            "kept_float": list(self.layers),
            "why": [a.to_dict() for a in self.flagged][:20],
            **({"skipped": self.skipped} if self.skipped else {}),
        }

    def line(self) -> str | None:
        """The one line export prints, or None when there is nothing to say."""
        if self.skipped or not self.flagged:
            return None
        why = []
        for layer in self.layers:
            inside = [a for a in self.flagged if any(k == layer or k.startswith(layer + ".") for k in a.keep)]
            nested = any(a.name.startswith(layer + "/") for a in inside)  # a Keras layer inside a nested model
            why.append(f"{layer}: {_said(max(inside, key=lambda a: a.zeroed))}" + (
                f" (inside the nested model '{layer}': the Keras routes keep top-level layers, so all of it stays "
                f"float)" if nested else ""))
        alone = [a for a in self.flagged if not a.keep]
        if alone:
            why.append(f"{len(alone)} more in the model's own forward, no layer to keep (e.g. {_said(alone[0])})")
        kept = ", ".join(self.layers) or "nothing"
        return (f"int8 keeps float: {kept}; activations one int8 scale per tensor cannot hold (over "
                f"{_pct(THRESHOLD)} of the non-zero values round to 0): {'; '.join(why)} "
                f"(--keep-float-ranges off quantizes them)")


def _said(a: Activation) -> str:
    if a.spread == float("inf"):
        return f"{a.op} '{a.name}' ranges over [{a.lo:.3g}, {a.hi:.3g}]" + (
            f" ({', '.join('.' + t for t in a.targets)} only: read by fused attention)" if a.targets else "")
    return f"{a.op} '{a.name}' {_pct(a.zeroed)}"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


# ---------------------------------------------------------------------------------------------
# the statistic

class _Stats:
    """Exact min/max (per tensor and per channel) and a random subset of one activation's values with
    their channels, over the samples. AXIS: the channel axis (torch 1, Keras -1)."""

    def __init__(self, rng, axis: int = 1):
        self.rng, self.axis, self.lo, self.hi, self.parts, self.channels = rng, axis, np.inf, -np.inf, [], []
        self.clo = self.chi = None

    def add(self, values: np.ndarray) -> None:
        """Reduced where the values lie, in their own dtype: a conv's output is often channels_last, and
        flattening it (and a float64 copy) cost a copy of the whole activation per sample, most of the
        ranges pass on MobileNetV2 at 224. Only the kept subset becomes float64."""
        a = np.asarray(values)
        a = a if a.dtype.kind == "f" else a.astype(np.float32)
        if a.size == 0:
            return
        if a.ndim < 2:
            a = a.reshape(-1, 1)
        axis = self.axis % a.ndim
        others = tuple(d for d in range(a.ndim) if d != axis)
        lo, hi = a.min(axis=others).astype(np.float64), a.max(axis=others).astype(np.float64)
        self.lo, self.hi = min(self.lo, float(lo.min())), max(self.hi, float(hi.max()))
        if self.clo is None or self.clo.shape != lo.shape:
            self.clo, self.chi = lo, hi
        else:
            self.clo, self.chi = np.minimum(self.clo, lo), np.maximum(self.chi, hi)
        idx = np.arange(a.size) if a.size <= KEEP_VALUES else self.rng.choice(a.size, KEEP_VALUES, replace=False)
        where = np.unravel_index(idx, a.shape)  # indexing in place of a flattened copy
        self.parts.append(a[where].astype(np.float64))
        self.channels.append(where[axis])

    def measure(self) -> tuple[float, float, float]:
        """(zeroed at one scale per tensor, spread, zeroed at one scale per channel)."""
        v = np.concatenate(self.parts) if self.parts else np.zeros(0)
        zeroed, spread = zeroed_share(v, self.lo, self.hi)
        if not v.size or not np.isfinite(spread):
            return zeroed, spread, zeroed
        c = np.concatenate(self.channels)
        step = (np.maximum(self.chi, 0) - np.minimum(self.clo, 0))[c] / 255.0
        nonzero = v != 0
        return zeroed, spread, float(np.mean(np.abs(v[nonzero]) < step[nonzero] / 2)) if nonzero.any() else 0.0


def zeroed_share(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    """(share of the non-zero VALUES whose int8 code at one per-tensor scale over [lo, hi] is zero,
    range / median |non-zero value|). An infinite or NaN range loses everything: (1, inf)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    lo = float(np.min(v)) if lo is None and v.size else (lo or 0.0)
    hi = float(np.max(v)) if hi is None and v.size else (hi or 0.0)
    span = max(hi, 0.0) - min(lo, 0.0)
    if not np.isfinite(span) or np.isnan(v).any():
        return 1.0, float("inf")
    nonzero = np.abs(v[v != 0])
    if nonzero.size == 0 or span == 0:
        return 0.0, 0.0
    step = span / 255.0
    return float(np.mean(nonzero < step / 2)), float(span / np.median(nonzero))


# ---------------------------------------------------------------------------------------------
# torch

def _op_name(node) -> str:
    target = getattr(node.target, "__name__", str(node.target))
    return target.split(".")[0].lstrip("_") if target.startswith("_") else target.split(".")[0]


def _innermost(node) -> str | None:
    """The innermost non-container module a graph node runs in (None: the model's own forward)."""
    stack = node.meta.get("nn_module_stack") or {}
    found = None
    for fqn, kind in stack.values():
        name = normalize_fqn(fqn)
        if name and type_name(kind) not in CONTAINERS:
            found = name
    return found


def measurable(op: str) -> bool:
    return not any(op == s or op.startswith(s + "_") for s in FIXED_RANGE + SHAPE_OPS)


def torch_activations(program, samples: list[list[np.ndarray]]) -> list[Activation]:
    """Every float activation of an ExportedProgram's graph over SAMPLES (each a list of batch-1
    arrays, one per input), measured."""
    import torch

    gm = program.module()
    rng = np.random.default_rng(0)
    stats: dict[str, _Stats] = {}
    nodes = {n.name: n for n in gm.graph.nodes if n.op == "call_function"}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in nodes and isinstance(out, torch.Tensor) and out.is_floating_point() \
                    and measurable(_op_name(n)):
                stats.setdefault(n.name, _Stats(rng)).add(out.detach().float().cpu().numpy())
            return out

    with torch.no_grad():
        for sample in samples:
            Recorder(gm).run(*[torch.from_numpy(np.array(a, copy=True)) for a in sample])
    out = []
    for name, s in stats.items():
        node = nodes[name]
        zeroed, spread, per_channel = s.measure()
        layer = _innermost(node)
        keep, targets = (layer,), ()
        if not np.isfinite(s.hi - s.lo):
            readers = _readers(node)
            keep = tuple(dict.fromkeys(_innermost(r) for r in readers))
            if readers and all(_op_name(r) == "scaled_dot_product_attention" for r in readers):
                targets = ("onnx",)
        out.append(Activation(name, _op_name(node), layer, s.lo, s.hi, zeroed, spread, per_channel,
                              tuple(k for k in keep if k), targets))
    return out


def _readers(node) -> list:
    """The ops that read NODE's values, through shape-only ops."""
    found, todo, seen = [], list(node.users), set()
    while todo:
        user = todo.pop(0)
        if user.name in seen or user.op != "call_function":
            continue
        seen.add(user.name)
        if measurable(_op_name(user)) or _op_name(user) in FIXED_RANGE:
            found.append(user)
        else:
            todo.extend(user.users)
    return found


# ---------------------------------------------------------------------------------------------
# keras

def keras_activations(model, samples: list[list[np.ndarray]]) -> list[Activation]:
    """The output of every layer of a Keras model over SAMPLES, measured, nested Functional and
    Sequential models opened (recursively): a nested model's layers are measured by a probe of their
    own, fed the nested model's inputs as the outer graph computed them. Each belongs to itself when
    it holds weights, else to the nearest weighted layer that feeds it; one inside a nested model
    belongs to the top-level layer that holds it (the Keras routes keep top-level layers float)."""
    weighted = {n for n, _ in keras_layers(model)}
    top = {ly.name: ly for ly in model.layers}
    out = []
    for path, ly, s, graph in _keras_probe(model, samples, (), np.random.default_rng(0)):
        op = type(ly).__name__
        activation = getattr(getattr(ly, "activation", None), "__name__", "")
        if not s.parts or not measurable(op.lower()) or activation in FIXED_RANGE or op in ("Softmax",):
            continue
        zeroed, spread, per_channel = s.measure()
        name = "/".join(path)
        outer = path[0].split("#", 1)[0]  # a shared nested model's later calls: 'name#2'
        if len(path) == 1 or outer not in top:
            layer = ly.name if ly.name in weighted else _weighted_producer(ly, weighted)
            keep = layer
        else:  # inside a nested model: its own name (or its weighted producer's) for the record, the
            # nested model (or what feeds it) for the routes
            inner = ly.name if ly.weights else _weighted_producer(ly, {g.name for g in graph.layers if g.weights})
            keep = outer if outer in weighted else _weighted_producer(top[outer], weighted)
            layer = "/".join(path[:-1] + (inner,)) if inner else keep
        out.append(Activation(name, op, layer, s.lo, s.hi, zeroed, spread, per_channel, (keep,) if keep else ()))
    return out


def _nested(layer):
    """LAYER as a graph model (Functional, Sequential) whose layers a probe can reach, else None."""
    import keras

    if not isinstance(layer, keras.Model):
        return None
    try:
        return layer if layer.inputs and layer.outputs else None
    except (AttributeError, ValueError):  # a subclassed model: one layer, measured whole
        return None


def _graph_nodes(model) -> list:
    """[(operation, node)] of MODEL's graph, inputs first: the calls that compute model.outputs from
    model.inputs, found from the outputs' Keras history (a nested model's call is one node, its
    input and output tensors in this graph, where `layer.output` is its own graph's)."""
    inputs = {id(t) for t in model.inputs}
    order, done, open_ = [], set(), set()
    todo = [(t, False) for t in reversed(model.outputs)]
    while todo:
        t, finished = todo.pop()
        if id(t) in inputs:
            continue
        op, index, _ = t._keras_history
        node = op._inbound_nodes[index]
        if finished:
            if id(node) not in done:
                done.add(id(node))
                order.append((op, node))
            continue
        if id(node) in done or id(node) in open_:
            continue
        open_.add(id(node))
        todo.append((t, True))
        todo.extend((p, False) for p in reversed(node.input_tensors))
    return order


def _keras_probe(model, samples, path: tuple, rng) -> list:
    """[(path of layer names, layer, _Stats, the model whose graph holds it)] for every layer output of
    MODEL's graph over SAMPLES (each a list of arrays, one per model input), in graph order; a nested graph
    model's entries in its place, from a probe of its own fed the inputs this graph gave it (kept per sample:
    one nested model's inputs, not every activation). A shared layer's later calls are 'name#2', ...; a
    layer with several outputs 'name:0', 'name:1'."""
    import keras

    nodes = [(op, node) for op, node in _graph_nodes(model)
             if isinstance(op, keras.layers.Layer) and not isinstance(op, keras.layers.InputLayer)]
    inputs = {id(t): i for i, t in enumerate(model.inputs)}
    fetch, where = [], {}  # tensors the probe returns; id -> ('in', input position) or ('out', probe position)
    for t in model.inputs:
        where[id(t)] = ("in", inputs[id(t)])
    wanted = []  # per node: (the nested model or None, layer, name, its tensors: a nested model's inputs, else outputs)
    calls: dict[int, int] = {}
    for op, node in nodes:
        nested = _nested(op)
        tensors = list(node.input_tensors if nested is not None else node.output_tensors)
        for t in tensors:
            if id(t) not in where:
                where[id(t)] = ("out", len(fetch))
                fetch.append(t)
        calls[id(op)] = calls.get(id(op), 0) + 1
        name = op.name if calls[id(op)] == 1 else f"{op.name}#{calls[id(op)]}"  # a shared layer's later calls
        wanted.append((nested, op, name, tensors))
    probe = keras.Model(model.inputs, fetch) if fetch else None
    stats = [[_Stats(rng, -1) for _ in ts] if nested is None else None for nested, _, _, ts in wanted]
    captured = [[] if nested is not None else None for nested, _, _, _ in wanted]
    for sample in samples:
        outs = probe(list(sample), training=False) if probe else []  # built on a list: a bare tensor made Keras warn
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for (nested, _, _, tensors), st, cap in zip(wanted, stats, captured):
            values = [np.asarray(sample[i] if kind == "in" else outs[i])
                      for kind, i in (where[id(t)] for t in tensors)]
            if nested is not None:
                cap.append(values)
                continue
            for s, v in zip(st, values):
                if v.dtype.kind == "f":
                    s.add(v)
    found = []
    for (nested, op, name, tensors), st, cap in zip(wanted, stats, captured):
        if nested is not None:
            found.extend(_keras_probe(nested, cap, path + (name,), rng))
            continue
        for i, s in enumerate(st):
            found.append((path + (name if len(st) == 1 else f"{name}:{i}",), op, s, model))
    return found


def _weighted_producer(layer, weighted: set[str]) -> str | None:
    seen, todo = set(), [layer]
    while todo:
        ly = todo.pop()
        for node in getattr(ly, "_inbound_nodes", []):
            for parent in getattr(node, "parent_nodes", []) or []:
                p = parent.operation
                if p.name in weighted:
                    return p.name
                if p.name not in seen:
                    seen.add(p.name)
                    todo.append(p)
    return None


# ---------------------------------------------------------------------------------------------
# the decision

def kept_layers(flagged: list[Activation]) -> tuple[str, ...]:
    """The layers of the flagged activations, nested names collapsed to the outermost, in order."""
    names = list(dict.fromkeys(k for a in flagged for k in a.keep))
    return tuple(n for n in names if not any(n != o and n.startswith(o + ".") for o in names))


def find(model, inputs: list[np.ndarray], mode: str = "auto") -> Finding:
    """Measure MODEL (edgeship.model.Model) on the first SAMPLES rows of INPUTS (arrays, batch first)."""
    if mode == "off":
        return Finding(mode, skipped="--keep-float-ranges off")
    n = min(SAMPLES, len(inputs[0])) if inputs else 0
    samples = [[a[i : i + 1] for a in inputs] for i in range(n)]
    if model.framework != "torch" and model.kind != "keras":
        return Finding(mode, skipped=f"a {model.kind} model has no layers edgeship can keep float")
    try:
        if model.framework == "torch":
            from edgeship.convert.torch_common import program_of

            acts = torch_activations(program_of(model)[0], samples)
        else:
            acts = keras_activations(model.obj, samples)
    except Exception as e:  # noqa: BLE001 - a model the probe cannot run: int8 as before, the record says why
        from edgeship.convert.base import converter_message

        return Finding(mode, samples=n, skipped=f"could not measure the activations: {converter_message(e)}")
    flagged = [a for a in acts if a.flagged]
    return Finding(mode, kept_layers(flagged), flagged, len(acts), n)


# ---------------------------------------------------------------------------------------------
# into export

SUPPORTED = {("torch", "pte"), ("torch", "tflite"), ("torch", "onnx"), ("keras", "tflite"), ("keras", "pte")}


def plan(mode: str, model, calib, recipes, routes, log=print) -> Finding | None:
    """The finding of one export, or None where no int8 is made on a route that can keep layers
    float. Prints its one line when it keeps (or would keep) something."""
    if not any(r.name == "int8" or r.name == "auto" for r in recipes):
        return None
    if not any(_supports(route, model) for route in routes):
        return None
    if calib is None:
        return None
    finding = find(model, list(calib.arrays), mode)
    line = finding.line()
    if line:
        log(line)
    return finding


def _supports(route, model) -> bool:
    return (route.source, route.target) in SUPPORTED and model.kind != "savedmodel"


def wrap(finding: Finding | None, convert, route, model):
    """ROUTE's convert function with the finding's layers kept float in every int8 conversion (the
    modes' own float layers added to them). A route that cannot find a layer converts without it,
    and its result says so in a warning."""
    if finding is None or not _supports(route, model):
        return convert
    finding = finding.for_target(route.target)
    if not finding.layers:
        return convert
    from dataclasses import replace

    from edgeship.errors import InputError

    def converted(model, recipe, calib, out_path, options):
        if recipe.name != "int8":
            return convert(model, recipe, calib, out_path, options)
        keep = tuple(dict.fromkeys(finding.layers + tuple(options.float_layers)))
        try:
            return convert(model, recipe, calib, out_path, replace(options, float_layers=keep))
        except InputError as e:  # the route found no op of a kept layer: int8 as before, said
            result = convert(model, recipe, calib, out_path, options)
            result.warnings.append(f"--keep-float-ranges: could not keep {', '.join(finding.layers)} float "
                                   f"({e.message}); int8 throughout")
            return result

    return converted


def keeps(finding: Finding | None, route, model, recipe) -> bool:
    """Whether RECIPE's artifact on ROUTE keeps layers float for the finding (int8, or --quant auto's
    search, whose int8 candidates do)."""
    return bool(finding and _supports(route, model) and finding.for_target(route.target).layers
                and recipe.name in ("int8", "auto"))


def record_for(finding: Finding | None, route, model, recipe, skipped: bool = False) -> dict:
    """The manifest field of one artifact: {'float_ranges': record} for int8 on a route that keeps
    layers float; {} otherwise. SKIPPED: the export's float-model rewrites were not applied to it."""
    if finding is None or recipe.name != "int8" or not _supports(route, model):
        return {}
    record = finding.for_target(route.target).record()
    if skipped and keeps(finding, route, model, recipe):
        record["rewrites"] = ("not applied (CLE, weight rounding, bias correction): their int8 simulation quantizes "
                              "the layers kept float, and their traced model loses the modules those are named by")
    return {"float_ranges": record}
