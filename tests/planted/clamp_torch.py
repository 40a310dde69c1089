"""A small MobileNet-style block trained on the digits images (conv -> BN -> ReLU6 -> depthwise
conv -> BN -> ReLU6 -> pointwise conv -> mean), plus two planted channels on the first conv: one
dead (pre-activation about -100, ReLU6 gives 0) and one saturated (about +100, ReLU6 gives 6).
The pointwise conv gives both zero weight, so the float function is the trained net's.

What it plants is what EfficientNet-Lite0 has (issue 13): a conv whose raw output spans far more
than the [0, 6] its ReLU6 lets through. An int8 quantizer that observes the conv's output before
the clamp (ExecuTorch's stock XNNPACKQuantizer, which fuses only ReLU) gives the clamped tensor
that raw range, about 200 / 255 per step: the live channels, all inside [0, 6], keep a handful of
levels. Observed after the clamp (the pattern convert/xnnpack_quant_patterns.py annotates), the
step is 6 / 255."""

from __future__ import annotations

import torch
from torch import nn

from edgeship.demo_models import fit_on_digits

LIVE, PLANTED = 16, 2
FAR = 100.0


class ClampNet(nn.Module):
    def __init__(self, channels: int = LIVE):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.pw = nn.Conv2d(channels, 10, 1)
        self.act = nn.ReLU6()

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.dw(x)))
        return self.pw(x).mean((2, 3))


def build():
    torch.manual_seed(0)
    trained = fit_on_digits(ClampNet(), epochs=30)
    model = ClampNet(LIVE + PLANTED).eval()
    with torch.no_grad():
        for name, new in model.state_dict().items():
            old = trained.state_dict()[name]
            if new.dim() == 0:
                new.copy_(old)
            elif name.startswith("pw.weight"):
                new.zero_()
                new[:, :LIVE] = old
            elif name.startswith("pw."):
                new.copy_(old)
            else:  # per-channel tensors of conv1, bn1, dw, bn2: the live channels first
                new[:LIVE] = old
        model.conv1.weight[LIVE:] = 0.0
        model.dw.weight[LIVE:] = 0.0
        model.dw.weight[LIVE:, 0, 1, 1] = 1.0
        for bn, sign in ((model.bn1, (-1.0, 1.0)), (model.bn2, (-1.0, 1.0))):
            bn.running_mean[LIVE:] = 0.0
            bn.running_var[LIVE:] = 1.0
            bn.weight[LIVE:] = 1.0
            bn.bias[LIVE:] = torch.tensor(sign) * FAR  # channel 16 dead (0), 17 saturated (6)
    return model, (torch.zeros(1, 1, 8, 8),)
