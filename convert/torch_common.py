"""What every torch-based route shares: seeding, example tensors, tool versions, and one quiet
`torch.export` (the routes, the accuracy-aware search and `diff` all export through it).

torch is imported inside each function: importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import warnings as pywarnings

import numpy as np

from edgeship.errors import ConversionError, error_line

SEED = 0
EXPORT_HINT = "torch.export needs a traceable forward(); see https://pytorch.org/docs/stable/export.html"


@contextlib.contextmanager
def quiet():
    """torch.export and the PT2E quantizers warn at every step; the warnings say nothing to our users."""
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def shared_provenance():
    """Let torch.fx's provenance records be shared, not deep-copied, while a route converts.

    Every fx pass gives each node a `NodeSource` of the node it came from, and `NodeSource(node)`
    deep-copies that node's whole `from_node` chain, which every earlier pass lengthened: the cost of
    a pass grows with the number of passes before it, over every node. An unrolled LSTM's .pte
    lowering spent a fifth of its time there (py-spy, bench/EXPORT_TIME.md). A NodeSource is never
    changed after it is built (torch appends to a node's own `meta["from_node"]` list, which is
    still copied), so sharing the records gives the same graph and the same bytes. The class gets a
    `__deepcopy__` returning the record itself for the duration, and loses it after; nesting is a no-op.
    """
    from torch.fx.traceback import NodeSource

    if "__deepcopy__" in vars(NodeSource):  # an outer conversion already shares them
        yield
        return
    NodeSource.__deepcopy__ = _shared_copy
    try:
        yield
    finally:
        del NodeSource.__deepcopy__


def _shared_copy(self, memo):
    return self


def exportable(module):
    """MODULE, or a wrapper holding it as `model` when one of its own children, parameters or buffers is
    named as torch.fx.GraphModule names something of its own (meta, graph, code, ...): the GraphModule an
    ExportedProgram becomes (`.module()`, which PT2E, ExecuTorch and torch.onnx all call) loses that
    attribute ('Node meta_0_weight target meta.0.weight references nonexistent attribute 0 of meta').
    Wrapped, its layers are named 'model.<name>' everywhere (the ranking, the kept-float filter)."""
    import torch

    if isinstance(module, torch.fx.GraphModule) or not _GRAPH_MODULE_NAMES.intersection(
            name for name, _ in [*module.named_children(), *module.named_parameters(recurse=False),
                                 *module.named_buffers(recurse=False)]):
        return module

    class Namespaced(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, *args, **kwargs):
            return self.model(*args, **kwargs)

    return Namespaced(module).train(module.training)


# what torch.fx.GraphModule holds beside nn.Module's own attributes (torch 2.11); a model attribute of one of
# these names does not survive ExportedProgram.module()
_GRAPH_MODULE_NAMES = frozenset({"meta", "graph", "code", "shape_env", "recompile", "print_readable", "to_folder",
                                 "add_submodule", "delete_submodule", "delete_all_unused_submodules"})


def exported_program(module, examples, what: str = "", hint: str | None = EXPORT_HINT):
    """torch.export.export(module, examples), quietly (see `exportable`); a failure is a ConversionError
    with the exporter's own last words."""
    import torch

    try:
        with quiet():
            return torch.export.export(exportable(module), tuple(examples))
    except Exception as e:
        label = f"torch.export ({what})" if what else "torch.export"
        raise ConversionError(f"{label} failed: {error_line(e)}", hint=hint) from None


def example_tensors(model) -> list:
    if model.example_inputs is not None:
        return to_tensors(model.example_inputs)
    return to_tensors([np.zeros(s.shape, s.dtype) for s in model.io.inputs])


def to_tensors(arrays) -> list:
    """numpy -> torch, always copied: numpy gives size-1 axes of views a stride of 0, and
    ExecuTorch rejects zero strides."""
    import torch

    return [torch.from_numpy(np.array(a, order="C", copy=True)) for a in arrays]


def seed_everything(seed: int = SEED) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tool_versions(names=("torch", "executorch", "torchao")) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def program_of(model):
    """(ExportedProgram, example tensors) of a loaded torch Model (edgeship.model.Model): the .pt2's
    own program, else the module exported quietly."""
    examples = example_tensors(model)
    if model.kind == "torch-exported":
        return model.obj, examples
    return exported_program(model.obj.eval(), examples), examples


@contextlib.contextmanager
def constants_observed_once(prepared):
    """Inside: each PT2E observer that watches a constant (a weight read by get_attr) observes its first
    call only, and passes the tensor through after it. The constant is the same tensor at every
    calibration sample, so its statistics (per-channel min/max) are the same; re-observing every weight
    on every sample was about an eighth of a MobileNetV2's calibration time. Restored on the way out,
    before convert_pt2e reads the observers."""
    from torchao.quantization.pt2e.observer import ObserverBase

    inputs: dict[int, tuple] = {}  # observer -> (observer, every call of it reads a constant)
    for node in prepared.graph.nodes:
        # get_submodule, not named_modules(): that lists a shared observer under one of its names only
        module = prepared.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, ObserverBase):
            constant = bool(node.args) and getattr(node.args[0], "op", None) == "get_attr"
            inputs[id(module)] = (module, inputs.get(id(module), (module, True))[1] and constant)
    # an observer shared by a constant and activations (a SharedQuantizationSpec: cat's inputs and output,
    # a learned token concatenated to the patches) must see every sample: frozen after the constant's
    # call, it would set the whole group's range from the constant alone and clip the activations
    watched = [module for module, constant in inputs.values() if constant]

    def once(module):
        original = module.forward

        def first(x):
            out = original(x)
            module.forward = _passthrough  # an instance attribute: nn.Module.__call__ finds it first
            return out

        return first

    for module in watched:
        module.forward = once(module)
    try:
        yield len(watched)
    finally:
        for module in watched:
            module.__dict__.pop("forward", None)


def _passthrough(x):
    return x
