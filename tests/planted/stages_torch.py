"""Planted divergences for stage bisection (edgeship/stages.py), on the digits MLP of mlp_torch.py
(trained here in seconds on scikit-learn's digits):

- `build`: the MLP as it is;
- `export_only`: the same MLP whose forward adds 3 to its logits only while torch.export traces it
  (torch.compiler.is_exporting()): eager is right, every stage after export is not;
- `perturbed`: the same MLP with its first layer's weights scaled by 1.5: an artifact converted from
  it, diffed against `build`, leaves the float model at the artifact stage.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeship.demo_models import TORCH_INPUT
from edgeship.loader import load_callable

train = load_callable(Path(__file__).with_name("mlp_torch.py"), "train", "model")


class ExportOnly(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        if torch.compiler.is_exporting():
            out = out + 3.0
        return out


def build():
    return train(epochs=8), (torch.zeros(TORCH_INPUT),)


def export_only():
    return ExportOnly(train(epochs=8)).eval(), (torch.zeros(TORCH_INPUT),)


def perturbed():
    model = train(epochs=8)
    with torch.no_grad():
        model.fc1.weight.mul_(1.5)
    return model, (torch.zeros(TORCH_INPUT),)


class DataDependent(torch.nn.Module):
    """Branches on a value: eager runs it, torch.export refuses it (a data-dependent guard)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        if out.sum() > -1e9:
            return out
        return -out


def data_dependent():
    return DataDependent(train(epochs=8)).eval(), (torch.zeros(TORCH_INPUT),)
