"""Fixed-range outputs to int8: LiteRT's LOGISTIC and SOFTMAX kernels require an output step of
1/256 (zero point -128), TANH 1/128 (0). A streaming voice-activity model's probability (conv1d
frames, an LSTMCell, a 1x1 conv, sigmoid, then the mean over its one frame) did not convert:
annotate_remaining observed the mean on its own, and litert-torch, folding the mean away, found
the sigmoid's 1/256 unequal to the observer's 1/255 ("type of return operand 0 ... doesn't match
function result type"). tflite_int8_annotations.keep_fixed_ranges gives every tensor that carries a
fixed-range op's value that op's quantization."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.data import fit_to_spec
from edgeship.runtime.standalone.tflite import inspect_artifact

from roundtrip import convert_into, run_all

CHUNK, HIDDEN, STEPS = 256, 16, 15


def tone_chunks(n: int, rng):
    """Chunks of noise, half of them with a sine tone (random pitch and phase): label 1 for a tone."""
    t = np.arange(CHUNK)
    labels = rng.integers(0, 2, n)
    freq, phase = rng.uniform(0.05, 0.25, (n, 1)), rng.uniform(0, 2 * np.pi, (n, 1))
    x = 0.3 * rng.standard_normal((n, CHUNK)) + labels[:, None] * np.sin(2 * np.pi * freq * t + phase)
    return x.astype(np.float32), labels


def streaming_model(head: str):
    """A small streaming detector (inputs: a chunk (1, 256) and a state (2, 1, 16)), trained for a
    few seconds: sigmoid head -> tone probability, tanh head -> +-1."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Streaming(nn.Module):
        def __init__(self):
            super().__init__()
            self.frames = nn.Conv1d(1, 16, 32, stride=16)
            self.enc = nn.Sequential(nn.Conv1d(16, HIDDEN, 3, stride=2, padding=1), nn.ReLU())
            self.cell = nn.LSTMCell(HIDDEN, HIDDEN)
            self.dec = nn.Sequential(nn.ReLU(), nn.Conv1d(HIDDEN, 1, 1), nn.Sigmoid() if head == "sigmoid" else nn.Tanh())

        def forward(self, chunk, state):
            z = self.enc(torch.relu(self.frames(chunk.unsqueeze(1)))).mean(-1)
            h, c = self.cell(z, (state[0], state[1]))
            out = self.dec(h.unsqueeze(-1)).squeeze(1).mean(1, keepdim=True)  # (B, 1): the mean over one frame
            return out, torch.stack([h, c])

    net, rng = Streaming(), np.random.default_rng(0)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(STEPS):
        x, y = tone_chunks(32, rng)
        out, _ = net(torch.from_numpy(x), torch.zeros(2, 32, HIDDEN))
        target = torch.from_numpy(y).float()[:, None]
        loss = (nn.functional.binary_cross_entropy(out, target) if head == "sigmoid"
                else nn.functional.mse_loss(out, 2 * target - 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def streamed(net, n: int, seed: int):
    """(chunks, the state each met) from running NET over n chunks in sequences of 4 from a zero state."""
    import torch

    xs, _ = tone_chunks(n, np.random.default_rng(seed))
    states, state = [], torch.zeros(2, 1, HIDDEN)
    with torch.no_grad():
        for i, x in enumerate(xs):
            state = torch.zeros(2, 1, HIDDEN) if i % 4 == 0 else state
            states.append(state.numpy())
            _, state = net(torch.from_numpy(x[None]), state)
    return xs, np.stack(states)


@pytest.fixture(scope="module", params=["sigmoid", "tanh"])
def detector(request):
    import torch

    from edgeship.sources import model_from_torch

    net = streaming_model(request.param)
    model = model_from_torch(net, (torch.zeros(1, CHUNK), torch.zeros(2, 1, HIDDEN)), f"stream_{request.param}",
                             "in memory", None)
    calib = fit_to_spec(list(streamed(net, 64, 1)), None, model.io, "tones:calib")
    test = fit_to_spec(list(streamed(net, 64, 2)), None, model.io, "tones:test")
    reference = np.concatenate([model.run(s)[0] for s in test.samples()])
    return request.param, model, calib, test, reference


def test_int8_tflite_gives_the_fixed_range_output_its_kernel_quantization(detector, tmp_path):
    head, model, calib, test, reference = detector
    path, _ = convert_into("torch", "tflite", model, "int8", tmp_path, calib)  # sigmoid, before: did not convert
    out = run_all(path, test)
    assert np.abs(out - reference).max() < (0.02 if head == "sigmoid" else 0.04)
    scale, zero_point = (1 / 256, -128) if head == "sigmoid" else (1 / 128, 0)
    int8_out = [t["quantization"] for t in inspect_artifact(str(path))["tensors"]
                if t["name"].startswith("serving_default_output_0") and t["dtype"] == "int8"]
    for q in int8_out:  # the probability as int8, before the float output's DEQUANTIZE
        assert (q["scale"], q["zero_point"]) == pytest.approx((scale, zero_point))


def test_int8_pte_converts_and_runs(detector, tmp_path):
    head, model, calib, test, reference = detector
    if head != "sigmoid":
        pytest.skip("one fixed-range head is enough for XNNPACK, which keeps sigmoid and tanh float")
    path, _ = convert_into("torch", "pte", model, "int8", tmp_path, calib)
    assert np.abs(run_all(path, test) - reference).max() < 0.02
