import torch
from torch import nn

V, T, D = 100, 32, 64

class Blk(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D); self.attn = nn.MultiheadAttention(D, 4, batch_first=True)
        self.ln2 = nn.LayerNorm(D); self.ff = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))
        self.register_buffer("mask", torch.triu(torch.full((T, T), float("-inf")), 1))
    def forward(self, x):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, attn_mask=self.mask, need_weights=False)
        x = x + a
        return x + self.ff(self.ln2(x))

class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(V, D); self.pos = nn.Parameter(torch.randn(1, T, D) * 0.02)
        self.blocks = nn.Sequential(Blk(), Blk()); self.ln = nn.LayerNorm(D); self.head = nn.Linear(D, V)
    def forward(self, ids):
        return self.head(self.ln(self.blocks(self.tok(ids) + self.pos)))

def build():
    torch.manual_seed(0)
    return GPT().eval(), (torch.randint(0, V, (1, T)),)
