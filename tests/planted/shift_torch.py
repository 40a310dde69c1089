"""A small depthwise conv net on the digits images that needs bias correction: each channel of the
5x5 depthwise conv has one large weight (1.0, the centre) and 24 small positive ones, 0.3-0.49 of
the int8 step that the large one sets (max|w| / 127). Symmetric per-channel int8 rounds all 24 to
zero, so every channel loses the same fraction of its input (about 7%), always in one direction:
the output mean shifts, and the shift goes on through the pointwise conv into the logits. The
float function is an ordinary one; only its quantization is biased."""

from __future__ import annotations

import torch
import torch.nn as nn


class ShiftNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.act1 = nn.ReLU()
        self.dw = nn.Conv2d(16, 16, 5, padding=2, groups=16, bias=False)
        self.act2 = nn.ReLU()
        self.pw = nn.Conv2d(16, 10, 1)

    def forward(self, x):
        x = self.pw(self.act2(self.dw(self.act1(self.conv1(x)))))
        return x.mean((2, 3))


def build():
    torch.manual_seed(0)
    model = ShiftNet().eval()
    with torch.no_grad():
        model.conv1.bias.add_(0.5)  # positive activations: a rounding loss that is one-sided
        small = torch.empty(16, 1, 5, 5).uniform_(0.30, 0.49) / 127.0
        small[:, :, 2, 2] = 1.0
        model.dw.weight.copy_(small)
    return model, (torch.zeros(1, 1, 8, 8),)
