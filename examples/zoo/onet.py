"""MTCNN's ONet (face landmarks), trained weights from the facenet-pytorch wheel.

PReLU after every conv, `x.permute(0, 3, 2, 1).contiguous().view(n, -1)` before its first
Linear, three outputs (box offsets, five landmarks, face probability). The architecture is
facenet-pytorch's `ONet`, written out here so the package (which pulls torchvision) is never
installed. Input: a 48x48 RGB face crop, NCHW, scaled as MTCNN does ((x - 127.5) / 128).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wheels  # noqa: E402


def _onet():
    import torch
    from torch import nn

    class ONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.softmax6_1 = nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, image):
            x = self.pool1(self.prelu1(self.conv1(image)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = x.permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    net = ONet()
    net.load_state_dict(wheels.torch_state_dict("facenet-pytorch", "facenet_pytorch/data/onet.pt"))
    return net.eval(), torch


def build():
    net, torch = _onet()
    import zoo_data

    example = torch.from_numpy(zoo_data.face_crops(1, 48)[:1])
    return net, (example,)
