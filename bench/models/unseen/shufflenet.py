import torch
from torch import nn

def shuffle(x, groups=2):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).flatten(1, 2)

class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Conv2d(c, c // 4, 1), nn.ReLU(), nn.Conv2d(c // 4, c, 1), nn.Hardsigmoid())
    def forward(self, x):
        return x * self.fc(self.pool(x))

class Unit(nn.Module):                          # stride-1 unit: split, branch, concat, shuffle
    def __init__(self, c):
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish(),
                                    nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
                                    nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish(), SE(h))
    def forward(self, x):
        a, b = torch.chunk(x, 2, dim=1)
        return shuffle(torch.cat([a, self.branch(b)], 1))

class Down(nn.Module):                          # stride-2 unit: two branches on the whole input
    def __init__(self, cin, cout):
        super().__init__()
        h = cout // 2
        self.left = nn.Sequential(nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                  nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish())
        self.right = nn.Sequential(nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish(),
                                   nn.Conv2d(h, h, 3, 2, 1, groups=h, bias=False), nn.BatchNorm2d(h),
                                   nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish())
    def forward(self, x):
        return shuffle(torch.cat([self.left(x), self.right(x)], 1))

class ShuffleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.Hardswish())
        self.body = nn.Sequential(Down(24, 48), Unit(48), Unit(48), Down(48, 96), Unit(96))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 10))
    def forward(self, x):
        return self.head(self.body(self.stem(x)))

def build():
    torch.manual_seed(0)
    m = ShuffleNet().eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 2)
    return m, (torch.randn(1, 3, 64, 64),)
