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


def exported_program(module, examples, what: str = "", hint: str | None = EXPORT_HINT):
    """torch.export.export(module, examples), quietly; a failure is a ConversionError with the
    exporter's own last words."""
    import torch

    try:
        with quiet():
            return torch.export.export(module, tuple(examples))
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
