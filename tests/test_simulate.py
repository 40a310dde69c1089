"""The int8 simulation behind CLE auto and bias correction (quantize/simulate.py) runs a 2-D conv net
in channels_last, the layout PyTorch's CPU convolutions are fastest in (MobileNetV2 at 224x224: 1.37
against 2.25 s of CPU per 16 samples): the figures it decides on stay those of the default layout,
and a model that cannot take that layout (a .view of a conv's output) runs as it is."""

from __future__ import annotations

import copy

import pytest
import torch

from edgeship.quantize import simulate
from edgeship.quantize.bias_correction import correct
from edgeship.quantize.simulate import simulated_snr_db


@pytest.fixture(scope="module")
def digits(torch_digits):
    inputs = [torch_digits.test.arrays[0][:64]]
    with torch.no_grad():
        reference = [torch_digits.model.obj(torch.from_numpy(inputs[0])).numpy()]
    return torch_digits.model.obj, inputs, reference


def _both_layouts(monkeypatch, fn):
    monkeypatch.setattr(simulate, "CHANNELS_LAST", False)
    plain = fn()
    monkeypatch.setattr(simulate, "CHANNELS_LAST", True)
    return plain, fn()


def test_channels_last_gives_the_default_layouts_figures(digits, monkeypatch):
    net, inputs, reference = digits
    plain, fast = _both_layouts(monkeypatch, lambda: simulated_snr_db(net, inputs, reference))
    assert abs(plain - fast) < 0.01, (plain, fast)
    (m0, r0), (m1, r1) = _both_layouts(monkeypatch, lambda: correct(net, inputs))
    assert r0["layers"] == r1["layers"] == 4
    for (name, a), b in zip(m0.named_parameters(), m1.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name
    assert all(p.is_contiguous() for p in m1.parameters())  # the corrected model keeps its layout


def test_a_model_that_cannot_take_channels_last_runs_as_it_is(digits, monkeypatch):
    seq, inputs, reference = digits

    class Viewed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features, self.head = seq[:5], seq[6:]

        def forward(self, x):
            y = self.features(x)
            return self.head(y.view(y.shape[0], -1))  # a view: refused on channels_last strides

    net = Viewed().eval()
    with pytest.raises(RuntimeError):
        simulate.channels_last(copy.deepcopy(net), [])[0](
            torch.from_numpy(inputs[0]).contiguous(memory_format=torch.channels_last))
    plain, fast = _both_layouts(monkeypatch, lambda: simulated_snr_db(net, inputs, reference))
    assert plain == fast
