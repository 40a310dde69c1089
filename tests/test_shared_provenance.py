"""torch.fx provenance records shared while a route converts (convert/torch_common.shared_provenance).

Every fx pass deep-copied each node's whole `from_node` chain, which every earlier pass had made
longer: an unrolled LSTM's .pte lowering spent a fifth of its time there. Sharing the records must
change nothing in what is written, and must not outlive the conversion.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.fx.traceback import NodeSource

from edgeship.convert import torch_pte
from edgeship.convert.base import ConvertOptions
from edgeship.convert.torch_common import shared_provenance
from edgeship.errors import ConversionError
from edgeship.quantize.recipes import get_recipe


def _node_source():
    graph = torch.fx.Graph()
    node = graph.placeholder("x")
    node.meta["from_node"] = [NodeSource(None, "earlier pass")]
    return NodeSource(node, "this pass")


def test_records_are_shared_inside_and_copied_outside_and_nesting_keeps_the_outer_scope():
    source = _node_source()
    assert copy.deepcopy(source) is not source
    with shared_provenance():
        assert copy.deepcopy(source) is source
        with shared_provenance():
            assert copy.deepcopy(source) is source
        assert copy.deepcopy(source) is source  # the inner exit leaves the outer's sharing in place
    assert copy.deepcopy(source) is not source
    assert "__deepcopy__" not in vars(NodeSource)


def test_a_failing_conversion_does_not_leave_the_records_shared():
    with pytest.raises(RuntimeError), shared_provenance():
        raise RuntimeError("the converter failed")
    assert "__deepcopy__" not in vars(NodeSource)


class DigitRows(torch.nn.Module):
    """An LSTM reading a digit image row by row (8 steps of 8 pixels): the recurrent pattern whose
    unrolled graph made the provenance chains long."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 24, batch_first=True)
        self.head = torch.nn.Linear(24, 10)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


@pytest.fixture(scope="module")
def trained_rows():
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32))
    y = torch.from_numpy(digits.target.astype(np.int64))
    model = DigitRows()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[:1400]), y[:1400]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[1400:]).argmax(1) == y[1400:]).float().mean().item()
    assert accuracy > 0.7, f"held-out accuracy {accuracy:.3f}"  # real weights, not noise
    return model, x[1400:1401]


def _pte(model, x, out):
    program = torch.export.export(model, (x,))
    torch_pte.export_pte(program, get_recipe("fp32"), [x], None, out, ConvertOptions(), source="torch.export")
    return out.read_bytes()


def test_an_lstm_pte_is_byte_identical_with_the_records_shared(trained_rows, tmp_path, monkeypatch):
    model, x = trained_rows
    shared = _pte(model, x, tmp_path / "shared.pte")
    assert "__deepcopy__" not in vars(NodeSource)  # the route gave the class back as it found it
    monkeypatch.setattr(torch_pte, "shared_provenance", contextlib.nullcontext)  # torch's own deep copies
    copied = _pte(model, x, tmp_path / "copied.pte")
    assert shared == copied


def test_a_route_that_raises_gives_the_records_back(monkeypatch, tmp_path, trained_rows):
    model, x = trained_rows

    def fail(*args, **kwargs):
        assert "__deepcopy__" in vars(NodeSource)  # the lowering runs with the records shared
        raise ConversionError("lowering failed here")

    monkeypatch.setattr(torch_pte, "lower_with_fallback", fail)
    with pytest.raises(ConversionError):
        _pte(model, x, tmp_path / "failed.pte")
    assert "__deepcopy__" not in vars(NodeSource)
