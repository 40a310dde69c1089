"""A Linear-heavy net for the int4-weight recipe: an MLP (64 -> 256 -> 256 -> 10) trained for a few
seconds on scikit-learn's digits (8x8 images, NCHW, flattened inside). Every weight matrix has an
input width that groups of 32 divide."""

from __future__ import annotations

import torch
import torch.nn as nn

from edgeship.demo_models import TORCH_INPUT, fit_on_digits

HIDDEN = 256


class DigitsMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.fc3 = nn.Linear(HIDDEN, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def train(epochs: int = 20, seed: int = 0):
    torch.manual_seed(seed)
    return fit_on_digits(DigitsMLP(), epochs, seed)


def build():
    return train(), (torch.zeros(TORCH_INPUT),)
