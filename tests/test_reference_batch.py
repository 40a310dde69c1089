"""The float reference of a model whose forward fixes batch 1 (a `view(1, -1)`, common in detectors and
in models written for one frame) runs one sample a call instead of failing the export with a
traceback; a model that fails on the data at all is one line (exit 2 from the CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeship.data import Dataset
from edgeship.errors import InputError
from edgeship.reference import run
from edgeship.sources import model_from_torch


class BatchOne(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x).view(1, 4) * 2.0  # fixes batch 1: a batch of 10 cannot be viewed as (1, 4)


class Broken(torch.nn.Module):
    def forward(self, x):
        return x.view(3, 7)  # wrong for every input


def _data(model, n=10):
    rng = np.random.default_rng(0)
    return Dataset("random", [rng.standard_normal((n, 8)).astype(np.float32)], model.io.inputs)


def test_a_batch_one_forward_runs_one_sample_a_call():
    torch.manual_seed(0)
    module = BatchOne().eval()
    model = model_from_torch(module, (torch.zeros(1, 8),), "batch_one", "batch_one", None)
    ds = _data(model)
    outputs, record = run(model, ds)  # before: RuntimeError: shape '[1, 4]' is invalid for input of size 40
    assert outputs[0].shape == (10, 4) and record["batch"] == 1
    with torch.no_grad():
        expected = np.concatenate([module(torch.from_numpy(ds.arrays[0][i : i + 1])).numpy() for i in range(10)])
    np.testing.assert_allclose(outputs[0], expected, rtol=1e-6)


def test_a_forward_that_fails_on_the_data_is_one_line():
    model = model_from_torch(Broken().eval(), (torch.zeros(3, 7),), "broken", "broken", None)
    with pytest.raises(InputError, match="the float model 'broken' failed on the data: .*shape"):
        run(model, Dataset("random", [np.zeros((4, 8), np.float32)], model.io.inputs))
