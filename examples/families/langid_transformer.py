"""A PyTorch text transformer: language identification of short UI strings from token ids.

Input: `ids` 1x48 int64, the UTF-8 bytes of a string + 1, zero-padded. Model: byte Embedding +
learned positions, a padding mask computed from the ids (ids == 0) passed as
`src_key_padding_mask`, stock `nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128,
activation="gelu", batch_first=True, norm_first=True), 2)`, masked mean pooling, LayerNorm, Linear
-> 8 languages (family_data.LANGS). Data: the gettext catalogs' translations in /usr/share/locale
(family_data.langid), split by program. Trained here on the CPU (about a minute) and cached in
~/.cache/edgeship/families/. CLI: `edgeship export examples/families/langid_transformer.py:build
--calib examples/families/family_data.py:langid_torch ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import family_data

EPOCHS = 4
CLASSES = len(family_data.LANGS)


def make():
    import torch
    from torch import nn

    class LangIdTransformer(nn.Module):
        def __init__(self, vocab=family_data.VOCAB, seq=family_data.SEQ, d=64, heads=4, layers=2,
                     classes=CLASSES):
            super().__init__()
            self.emb = nn.Embedding(vocab, d, padding_idx=0)
            self.pos = nn.Parameter(torch.randn(1, seq, d) * 0.02)
            layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.1, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

        def forward(self, ids):
            pad = ids == 0
            x = self.encoder(self.emb(ids) + self.pos, src_key_padding_mask=pad)
            keep = (~pad).unsqueeze(-1).to(x.dtype)
            pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)
            return self.head(self.norm(pooled))

    return LangIdTransformer()


def train(epochs: int = EPOCHS, per_lang: int | None = None, seed: int = 0, lr: float = 2e-3,
          test_limit: int | None = None):
    """(model in eval mode, held-out top-1 %). per_lang: fewer training strings, test_limit: fewer
    held-out strings scored (quick tests)."""
    import torch
    from torch import nn

    data = family_data.langid()
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    if per_lang:
        x, y = x[: per_lang * len(family_data.LANGS)], y[: per_lang * len(family_data.LANGS)]
    torch.manual_seed(seed)
    model = make()
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=0.01)
    steps = epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
            sched.step()
    model.eval()
    return model, accuracy(model, data, test_limit)


def accuracy(model, data=None, limit: int | None = None) -> float:
    import torch

    data = data or family_data.langid()
    x, y = data["x_test"][:limit], data["y_test"][:limit]
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean() * 100)


def trained():
    """The trained model, from the cache or trained now (and cached)."""
    return family_data.cached_torch_model("langid_transformer", EPOCHS, family_data.langid(), make, train)


def build():
    import torch

    data = family_data.langid()
    return trained(), (torch.from_numpy(data["x_test"][:1]),)
