import torch
from torch import nn

C, H, W, WS, HEADS, SHIFT = 32, 8, 8, 4, 2, 2    # 32x32 image, 4x4 patches -> 8x8 tokens, 4x4 windows

def windows(x):                                   # (B, H, W, C) -> (B*nW, WS*WS, C)
    b, h, w, c = x.shape
    x = x.view(b, h // WS, WS, w // WS, WS, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, WS * WS, c)

def unwindows(x, b):                              # inverse of windows
    x = x.view(b, H // WS, W // WS, WS, WS, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, H, W, C)

class WindowAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C); self.proj = nn.Linear(C, C)
        self.scale = (C // HEADS) ** -0.5
        self.table = nn.Parameter(torch.randn((2 * WS - 1) ** 2, HEADS) * 0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(WS), torch.arange(WS), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (WS - 1)
        self.register_buffer("index", (rel[..., 0] * (2 * WS - 1) + rel[..., 1]).long())   # (WS*WS, WS*WS)
        # the shifted-window mask: tokens from different regions of the rolled map do not attend to each other
        img = torch.zeros(1, H, W, 1)
        cnt = 0
        for hs in (slice(0, -WS), slice(-WS, -SHIFT), slice(-SHIFT, None)):
            for ws in (slice(0, -WS), slice(-WS, -SHIFT), slice(-SHIFT, None)):
                img[:, hs, ws, :] = cnt; cnt += 1
        mw = windows(img).squeeze(-1)
        mask = mw[:, None, :] - mw[:, :, None]
        self.register_buffer("mask", mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0))
    def forward(self, x):                         # (B*nW, N, C)
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)                     # (B*nW, heads, N, N)
        bias = self.table[self.index.view(-1)].view(n, n, HEADS).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        nw = self.mask.shape[0]
        attn = attn.view(bw // nw, nw, HEADS, n, n) + self.mask[None, :, None]
        attn = attn.view(-1, HEADS, n, n).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(y)

class Swin(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, C, 4, 4); self.ln0 = nn.LayerNorm(C)
        self.ln1 = nn.LayerNorm(C); self.attn = WindowAttention()
        self.ln2 = nn.LayerNorm(C); self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))
        self.head = nn.Linear(C, 10)
    def forward(self, img):
        x = self.ln0(self.patch(img).permute(0, 2, 3, 1))                # (B, H, W, C)
        b = x.shape[0]
        h = torch.roll(self.ln1(x), shifts=(-SHIFT, -SHIFT), dims=(1, 2))
        h = unwindows(self.attn(windows(h)), b)
        x = x + torch.roll(h, shifts=(SHIFT, SHIFT), dims=(1, 2))
        x = x + self.mlp(self.ln2(x))
        return self.head(x.mean(dim=(1, 2)))

def build():
    torch.manual_seed(0)
    return Swin().eval(), (torch.randn(1, 3, 32, 32),)
