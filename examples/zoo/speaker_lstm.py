"""Resemblyzer's speaker encoder (3-layer LSTM, 40 mel channels -> 256-d voice embedding), trained
weights from the resemblyzer wheel, as a streaming model with its LSTM state as inputs and outputs.

Inputs: `mels` 1x16x40 (16 frames = 160 ms of 16 kHz speech), `h` and `c` 1x3x256 (the state of
each of the 3 LSTM layers, laid batch-first). Outputs: the L2-normalised embedding after this
chunk, and the new `h` and `c` to feed into the next chunk. The LSTM is written out as its cell
equations with resemblyzer's own weights (nn.LSTM would not lower to the mobile runtimes), so the
graph is Linear, sigmoid, tanh, mul and add. The calibration data (zoo_data.speech_chunks) are
mel chunks of espeak-ng speech with the states a float run reached before each chunk.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wheels  # noqa: E402

FRAMES, MELS, HIDDEN, LAYERS = 16, 40, 256, 3


def speaker_lstm():
    import torch
    from torch import nn

    sd = wheels.torch_state_dict("resemblyzer", "resemblyzer/pretrained.pt")

    class StreamingSpeakerEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.ih = nn.ModuleList(nn.Linear(MELS if i == 0 else HIDDEN, 4 * HIDDEN) for i in range(LAYERS))
            self.hh = nn.ModuleList(nn.Linear(HIDDEN, 4 * HIDDEN, bias=False) for _ in range(LAYERS))
            self.linear = nn.Linear(HIDDEN, 256)
            with torch.no_grad():
                for i in range(LAYERS):
                    self.ih[i].weight.copy_(sd[f"lstm.weight_ih_l{i}"])
                    self.ih[i].bias.copy_(sd[f"lstm.bias_ih_l{i}"] + sd[f"lstm.bias_hh_l{i}"])
                    self.hh[i].weight.copy_(sd[f"lstm.weight_hh_l{i}"])
                self.linear.weight.copy_(sd["linear.weight"])
                self.linear.bias.copy_(sd["linear.bias"])

        def forward(self, mels, h, c):
            seq = mels  # (batch, frames, mels): the reference runs a batch of samples at once
            hs, cs = [], []
            for layer in range(LAYERS):
                hl, cl = h[:, layer], c[:, layer]  # (batch, hidden)
                xs = self.ih[layer](seq)  # every frame's input projection at once
                outs = []
                for t in range(FRAMES):
                    gates = xs[:, t] + self.hh[layer](hl)
                    i, f, g, o = gates.chunk(4, dim=1)
                    cl = torch.sigmoid(f) * cl + torch.sigmoid(i) * torch.tanh(g)
                    hl = torch.sigmoid(o) * torch.tanh(cl)
                    outs.append(hl)
                seq = torch.stack(outs, 1)
                hs.append(hl)
                cs.append(cl)
            embed = torch.relu(self.linear(hs[-1]))
            embed = embed / torch.sqrt((embed * embed).sum(1, keepdim=True) + 1e-12)
            return embed, torch.stack(hs, 1), torch.stack(cs, 1)

    return StreamingSpeakerEncoder().eval()


def build():
    import torch

    import zoo_data

    net = speaker_lstm()
    mels, h, c = zoo_data.speech_chunks_with_state(net, 1)
    return net, (torch.from_numpy(mels[0]), torch.from_numpy(h[0]), torch.from_numpy(c[0]))
