"""A small conv net on the digits images that needs cross-layer equalization: the first conv's
output channels are scaled by factors spread over 100x (1 .. 100) and the depthwise conv after it
divides each back, so the float function is that of the unscaled net, but one per-tensor int8
range must cover channels 100x apart: the small ones round to a few levels."""

from __future__ import annotations

import torch
import torch.nn as nn

SPREAD = 100.0


class RangesNet(nn.Module):
    def __init__(self, act=nn.ReLU6):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.act1 = act()
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.act2 = act()
        self.pw = nn.Conv2d(16, 10, 1)

    def forward(self, x):
        x = self.pw(self.act2(self.dw(self.act1(self.conv1(x)))))
        return x.mean((2, 3))


def build(act=nn.ReLU6):
    torch.manual_seed(0)
    model = RangesNet(act).eval()
    with torch.no_grad():
        for m in (model.conv1, model.dw, model.pw):
            m.weight.mul_(2.0)
        model.dw.bias.zero_()
        scale = SPREAD ** torch.linspace(0, 1, 16)
        if act is nn.ReLU6:  # keep ReLU6's cap out of play for the scaled channels: the same function
            scale = scale / scale.max() * 1.0
        model.conv1.weight.mul_(scale.reshape(-1, 1, 1, 1))
        model.conv1.bias.mul_(scale)
        model.dw.weight.div_(scale.reshape(-1, 1, 1, 1))
    return model, (torch.zeros(1, 1, 8, 8),)


def build_relu():
    return build(nn.ReLU)
