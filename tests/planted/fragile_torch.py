"""A digits CNN with one planted fragile layer: `fragile` computes expand -> ReLU -> project, and
one channel between the two is scaled up 1000x (project scales it back), so the float function
is unchanged but that activation has a huge outlier. Per-tensor int8 gives the outlier all of the
range and rounds the other channels to zero: accuracy collapses unless `fragile` stays float.

`build` trains it (seeded, a few seconds) and plants the outlier; used as a file.py:factory source.
"""

from __future__ import annotations

import torch
import torch.nn as nn

OUTLIER = 1000.0


class Fragile(nn.Module):
    def __init__(self, channels: int = 16):
        super().__init__()
        self.expand = nn.Conv2d(channels, channels, 3, padding=1)
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return self.project(torch.relu(self.expand(x)))


class FragileCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.fragile = Fragile(16)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.fragile(x))
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(torch.relu(self.fc1(x)))


def plant_outlier(model: FragileCNN, x: torch.Tensor, factor: float = OUTLIER) -> int:
    """Scale the busiest channel between expand and project by `factor` (and back): same function."""
    with torch.no_grad():
        hidden = torch.relu(model.fragile.expand(torch.relu(model.conv1(x))))
        channel = int(hidden.mean((0, 2, 3)).argmax())
        model.fragile.expand.weight[channel] *= factor
        model.fragile.expand.bias[channel] *= factor
        model.fragile.project.weight[:, channel] /= factor
    return channel


def build(epochs: int = 30, seed: int = 0):
    from edgeship.demo_models import digits_split, fit_on_digits

    torch.manual_seed(seed)
    xtr = digits_split()[0]
    x = torch.from_numpy(xtr[:, None])
    model = fit_on_digits(FragileCNN(), epochs, seed)
    plant_outlier(model, x)
    return model, (torch.zeros(1, 1, 8, 8),)
