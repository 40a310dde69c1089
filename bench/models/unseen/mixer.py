import torch
from torch import nn

P, D, N, L = 8, 64, 64, 2          # 8x8 patches of a 64x64 image: 64 tokens of width 64

class MixerBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.tok1 = nn.Parameter(torch.randn(N, 2 * N) * N ** -0.5); self.tb1 = nn.Parameter(torch.zeros(2 * N))
        self.tok2 = nn.Parameter(torch.randn(2 * N, N) * (2 * N) ** -0.5); self.tb2 = nn.Parameter(torch.zeros(N))
        self.act = nn.GELU(approximate="tanh")
        self.ln2 = nn.LayerNorm(D)
        self.ch = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(approximate="tanh"), nn.Linear(4 * D, D))
    def forward(self, x):                       # x: (B, N, D)
        h = self.ln1(x)
        h = torch.einsum("bnd,nm->bmd", h, self.tok1) + self.tb1[None, :, None]
        h = self.act(h)
        h = torch.einsum("bmd,mn->bnd", h, self.tok2) + self.tb2[None, :, None]
        x = x + h
        return x + self.ch(self.ln2(x))

class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, P, P)
        self.blocks = nn.Sequential(*[MixerBlock() for _ in range(L)])
        self.ln = nn.LayerNorm(D); self.head = nn.Linear(D, 10)
    def forward(self, img):
        x = self.patch(img).flatten(2).transpose(1, 2)
        x = self.ln(self.blocks(x))
        return self.head(x.mean(dim=1))

def build():
    torch.manual_seed(0)
    return Mixer().eval(), (torch.randn(1, 3, 64, 64),)
