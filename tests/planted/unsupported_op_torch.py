"""A real converter failure in one format only: logcumsumexp (a running log-sum-exp, as in CTC and
streaming attention) over a Linear layer trained a few seconds on scikit-learn's digits. litert-torch
has no lowering for aten.logcumsumexp and ExecuTorch's edge dialect refuses it (not core ATen), while
torch.onnx exports it: `--to tflite,onnx` ships the .onnx and records the .tflite's failure."""

from __future__ import annotations

import torch

from edgeship.demo_models import TORCH_INPUT, fit_on_digits


class RunningLogSumExp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        return torch.logcumsumexp(self.fc(x.flatten(1)), dim=-1)


def build():
    torch.manual_seed(0)
    return fit_on_digits(RunningLogSumExp(), 3, 0), (torch.zeros(TORCH_INPUT),)
