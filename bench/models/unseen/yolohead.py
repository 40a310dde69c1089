import torch
from torch import nn

NA, NC = 3, 4                                      # anchors per cell, classes

def cbs(cin, cout, s):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

class Yolo(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(cbs(3, 16, 2), cbs(16, 32, 2), cbs(32, 32, 1), cbs(32, 64, 2), cbs(64, 64, 1))
        self.pred = nn.Conv2d(64, NA * (5 + NC), 1)
        self.stride = 8.0
        self.register_buffer("anchors", torch.tensor([[10., 13.], [16., 30.], [33., 23.]]).view(1, NA, 1, 1, 2))
    def forward(self, img):
        p = self.pred(self.backbone(img))                   # (B, NA*(5+NC), ny, nx)
        b, _, ny, nx = p.shape
        p = p.view(b, NA, 5 + NC, ny, nx).permute(0, 1, 3, 4, 2)
        yv, xv = torch.meshgrid(torch.arange(ny, dtype=torch.float32), torch.arange(nx, dtype=torch.float32),
                                indexing="ij")
        grid = torch.stack((xv, yv), -1).view(1, 1, ny, nx, 2)
        xy = (p[..., 0:2].sigmoid() + grid) * self.stride
        wh = torch.exp(p[..., 2:4].clamp(max=4.0)) * self.anchors
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], -1).view(b, -1, 4)
        scores = (p[..., 4:5].sigmoid() * p[..., 5:].sigmoid()).reshape(b, -1, NC)
        return boxes, scores

def build():
    torch.manual_seed(0)
    m = Yolo().eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 2)
    return m, (torch.randn(1, 3, 64, 64),)
