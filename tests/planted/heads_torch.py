"""An MTCNN-shaped net for weight rounding, trained for a few seconds on scikit-learn's digits:
conv -> PReLU -> conv -> PReLU -> Linear -> PReLU, then three heads like ONet's: a small
regression (4 values: the ink's centroid and spread, offsets of a few hundredths, like ONet's box),
the class logits, and a softmax. The regression head's outputs are small differences of large
terms (each weight times its input sums to several times the output), so the rounding errors of
its input layers' weights, which round-to-nearest leaves independent, show up there first."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from edgeship.demo_models import TORCH_INPUT, digits_split


class HeadsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.prelu1 = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.dense = nn.Linear(16 * 6 * 6, 32)
        self.prelu3 = nn.PReLU(32)
        self.box = nn.Linear(32, 4)
        self.logits = nn.Linear(32, 10)

    def forward(self, x):
        x = self.prelu2(self.conv2(self.prelu1(self.conv1(x))))
        x = self.prelu3(self.dense(x.flatten(1)))
        logits = self.logits(x)
        return self.box(x), logits, torch.softmax(logits, dim=1)


def box_targets(images: np.ndarray) -> np.ndarray:
    """Per 8x8 image: the ink's centroid (x, y) and spread (x, y), centred and scaled to ~0.1."""
    grid = (np.arange(8, dtype=np.float32) - 3.5) / 3.5
    ink = images / np.maximum(images.sum((1, 2), keepdims=True), 1e-6)
    cx, cy = (ink * grid[None, None, :]).sum((1, 2)), (ink * grid[None, :, None]).sum((1, 2))
    sx = np.sqrt((ink * (grid[None, None, :] - cx[:, None, None]) ** 2).sum((1, 2)))
    sy = np.sqrt((ink * (grid[None, :, None] - cy[:, None, None]) ** 2).sum((1, 2)))
    out = np.stack([cx, cy, sx - 0.55, sy - 0.6], 1) * 0.3
    return out.astype(np.float32)


def train(epochs: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    model = HeadsNet()
    xtr, ytr, _, _ = digits_split()
    x, y, b = torch.from_numpy(xtr[:, None]), torch.from_numpy(ytr), torch.from_numpy(box_targets(xtr))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            box, logits, _ = model(x[idx])
            loss = nn.functional.cross_entropy(logits, y[idx]) + 100 * nn.functional.mse_loss(box, b[idx])
            loss.backward()
            opt.step()
    return model.eval()


def build():
    return train(), (torch.zeros(TORCH_INPUT),)
