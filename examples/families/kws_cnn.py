"""An audio model with its front end inside: keyword spotting on 1 s of 16 kHz speech.

Input: `wav` 1x16000 float32. Front end (fixed weights, part of the graph): a 400-sample Hann
window every 10 ms as a Conv1d whose kernels are the DFT's cos and sin rows (201 bins each), power
(re^2 + im^2), a 40-band mel filterbank as a 1x1 Conv1d, log(mel + 1e-6). Back end (trained): a
DS-CNN (conv 3x3 + BatchNorm + ReLU, three depthwise-separable blocks, global average pool, Linear)
-> 8 words (family_data.WORDS). Data: espeak-ng speech, 84 synthetic speakers, held out by
speaker (family_data.keywords). Trained here on the CPU (the front end is run once, the back end
trained on its output) and cached in ~/.cache/edgeship/families/. CLI:
`edgeship export examples/families/kws_cnn.py:build --calib examples/families/family_data.py:keywords_torch ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import family_data

WIN, HOP, MELS = 400, 160, 40
CLASSES = len(family_data.WORDS)
EPOCHS = 12


def _frontend_weights():
    """(dft 402x1x400: cos rows then sin rows, Hann-windowed; mel 40x201x1)."""
    n = np.arange(WIN)
    k = np.arange(WIN // 2 + 1)[:, None]
    window = np.hanning(WIN + 1)[:-1]
    cos = np.cos(2 * np.pi * k * n / WIN) * window
    sin = -np.sin(2 * np.pi * k * n / WIN) * window
    dft = np.concatenate([cos, sin])[:, None, :].astype(np.float32)
    mel = family_data.mel_filters(family_data.RATE, WIN, MELS)[:, :, None]
    return dft, mel


def make():
    import torch
    from torch import nn

    class FrontEnd(nn.Module):
        def __init__(self):
            super().__init__()
            dft, mel = _frontend_weights()
            self.dft = nn.Conv1d(1, dft.shape[0], WIN, HOP, bias=False)
            self.mel = nn.Conv1d(dft.shape[0] // 2, MELS, 1, bias=False)
            with torch.no_grad():
                self.dft.weight.copy_(torch.from_numpy(dft))
                self.mel.weight.copy_(torch.from_numpy(mel))
            for p in self.parameters():
                p.requires_grad_(False)

        def forward(self, wav):  # (b, 16000) -> (b, 1, 40, 98)
            spec = self.dft(wav.unsqueeze(1))
            re, im = spec.chunk(2, dim=1)
            return torch.log(self.mel(re * re + im * im) + 1e-6).unsqueeze(1)

    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                             nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class KeywordSpotter(nn.Module):
        def __init__(self, classes=CLASSES):
            super().__init__()
            self.frontend = FrontEnd()
            self.norm = nn.BatchNorm2d(1)  # learns the log-mel's offset and scale
            self.backend = nn.Sequential(
                nn.Conv2d(1, 32, 3, (2, 2), 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                block(32, 48, 2), block(48, 64, 2), block(64, 64, 1),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, classes))

        def forward(self, wav):
            return self.backend(self.norm(self.frontend(wav)))

        def from_features(self, feats):
            return self.backend(self.norm(feats))

    return KeywordSpotter()


def _features(model, wavs: np.ndarray):
    import torch

    with torch.no_grad():
        return torch.cat([model.frontend(torch.from_numpy(wavs[i : i + 128])) for i in range(0, len(wavs), 128)])


def train(epochs: int = EPOCHS, limit: int | None = None, seed: int = 0, data: dict | None = None,
          lr: float = 3e-3):
    """(model in eval mode, held-out top-1 %). limit: fewer training clips, data: a smaller
    family_data.keywords(speakers=N) set (quick tests)."""
    import torch
    from torch import nn

    data = data or family_data.keywords()
    torch.manual_seed(seed)
    model = make()
    xw, y = data["x_train"], torch.from_numpy(data["y_train"])
    if limit:
        xw, y = xw[:limit], y[:limit]
    feats = _features(model, xw)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * ((len(y) + 31) // 32))
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 32):
            b = perm[i : i + 32]
            f = feats[b]
            shift = int(torch.randint(-8, 9, ()))  # time-shift augmentation on the frames
            f = torch.roll(f, shift, dims=3)
            opt.zero_grad()
            nn.functional.cross_entropy(model.from_features(f), y[b]).backward()
            opt.step()
            sched.step()
    model.eval()
    return model, accuracy(model, data)


def accuracy(model, data=None) -> float:
    import torch

    data = data or family_data.keywords()
    with torch.no_grad():
        pred = model(torch.from_numpy(data["x_test"])).argmax(1).numpy()
    return float((pred == data["y_test"]).mean() * 100)


def trained():
    """The trained model, from the cache or trained now (and cached)."""
    return family_data.cached_torch_model("kws_cnn", EPOCHS, family_data.keywords(), make, train)


def build():
    import torch

    data = family_data.keywords()
    return trained(), (torch.from_numpy(data["x_test"][:1]),)
