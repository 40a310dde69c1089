"""Delegation as a mechanism and as one figure: a refused op costs only itself, the .pte's figure is
the one `edgeship inspect` reads from the file, partial delegation warns naming the ops left out,
and `check`'s delegation gate judges that figure.

The model: a text CNN on token ids (Embedding -> dilated Conv1d -> torch.max(x, 3) over time -> Linear),
trained briefly on scikit-learn's digits read as 64 tokens of 17 grey levels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeship.config import parse_project
from edgeship.convert import torch_pte
from edgeship.convert.base import ConvertOptions
from edgeship.errors import InputError
from edgeship.gates.delegation import delegation_gates
from edgeship.inspect import inspect_file
from edgeship.quantize.recipes import get_recipe


class TextCNN(nn.Module):
    def __init__(self, vocab=17, d=16, classes=10):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.convs = nn.ModuleList([nn.Conv1d(d, d, 3, dilation=r, padding=r) for r in (1, 2)])
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        x = self.emb(ids).transpose(1, 2)
        for conv in self.convs:
            x = torch.relu(conv(x))
        # over time as torch.max(x, 3) on (N, C, 1, T), values only, no keepdim: XNNPACK's lowering refuses it
        return self.head(torch.max(x.unsqueeze(2), 3)[0].flatten(1))


@pytest.fixture(scope="module")
def text_cnn():
    from sklearn.datasets import load_digits

    digits = load_digits()
    ids = torch.from_numpy(digits.data.astype(np.int64))
    labels = torch.from_numpy(digits.target)
    torch.manual_seed(0)
    model = TextCNN()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(3):
        for i in range(0, len(ids), 128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(ids[i:i + 128]), labels[i:i + 128]).backward()
            opt.step()
    return model.eval(), ids[:1].clone()


def _run_pte(buffer, x):
    from executorch.extension.pybindings import _C

    from edgeship.runtime.standalone.executorch import load_kernel_libraries

    load_kernel_libraries(_C)
    return _C._load_program_from_buffer(buffer).load_method("forward").call([x])[0]


def test_a_refused_op_costs_only_itself(text_cnn):
    """Without the graph passes, XNNPACK's preprocessing fails on the max (renamed amax there):
    that node stays out, the rest is still delegated (it used to drop the whole graph to portable
    kernels, 0% delegated), and the outputs are eager's."""
    model, x = text_cnn
    program = torch.export.export(model, (x,))
    buffer, d = torch_pte.lower_with_fallback(program, [x])
    assert d["mode"] == "xnnpack" and d["lowering_error"] is None, d
    assert d["kept_out_of_xnnpack"] and d["coverage"] >= 0.6 and d["partitions"] == 2, d
    assert "aten::embedding.out" in d["left_out"], d
    with torch.no_grad():
        torch.testing.assert_close(_run_pte(buffer, x), model(x), rtol=1e-4, atol=1e-5)


def test_one_figure_and_a_warning_naming_the_ops_left_out(text_cnn, tmp_path):
    """With the passes the max is delegated, the embedding gather is not: the manifest's figure is
    the one inspect reads from the file, and the export warns naming the embedding."""
    model, x = text_cnn
    out = tmp_path / "text.pte"
    result = torch_pte.export_pte(torch.export.export(model, (x,)), get_recipe("fp32"), [x], None, out,
                                  ConvertOptions(), source="torch.export")
    d = result.delegation
    assert "max as 4-D keepdim: 1" in result.route
    assert d["left_out"] == {"aten::embedding.out": 1} and d["partitions"] == 1, d
    details = inspect_file(out, isolated=False)
    assert (details["delegated_ops"], details["total_ops"]) == (d["delegated_ops"], d["total_ops"])
    assert d["coverage"] == round(details["delegated_ops"] / details["total_ops"], 4) < 1.0
    warning = [w for w in result.warnings if "delegated to XNNPACK" in w]
    assert warning == [(f"{d['delegated_ops']}/{d['total_ops']} ops ({d['coverage'] * 100:.0f}%) delegated to "
                        "XNNPACK; 1 ops on ExecuTorch's portable kernels: aten::embedding.out")], result.warnings
    assert d["fallback"] == "1 ops on ExecuTorch's portable kernels: aten::embedding.out"  # validate's warning
    with torch.no_grad():
        torch.testing.assert_close(_run_pte(out.read_bytes(), x), model(x), rtol=1e-4, atol=1e-5)


def _project(minimum):
    data = {"model": {"source": "m.py:build"},
            "targets": [{"format": f, "recipe": "fp32"} for f in ("pte", "tflite", "onnx")]}
    if minimum is not None:
        data["gates"] = {"delegation": {"min": minimum}}
    return parse_project(data, Path("/tmp/edgeship.toml")).project


def _record(fmt, coverage, **extra):
    delegation = None if coverage is None else {
        "coverage": coverage, "delegated_ops": round(coverage * 100), "total_ops": 100,
        "fallback": None if coverage == 1 else f"{100 - round(coverage * 100)} ops on ExecuTorch's portable "
                                                 "kernels: aten::native_layer_norm.out x9"}
    return {"artifact": f"m.fp32.{fmt}", "format": fmt, "recipe": "fp32", "target": f"{fmt}:fp32",
            "device": "local", "delegation": delegation, **extra}


def test_delegation_gate_judges_the_recorded_figure():
    project = _project(0.95)
    gates = delegation_gates(project, [_record("pte", 0.68), _record("tflite", 1.0), _record("onnx", None),
                                       _record("pte", None, status="error", error="not converted: boom")])
    assert [(g["gate"], g["status"]) for g in gates] == [
        ("delegation", "fail"), ("delegation", "pass"), ("delegation", "skipped"), ("delegation", "not_measured")]
    fail = gates[0]
    assert fail["value"] == pytest.approx(68.0) and fail["limit"] == pytest.approx(95.0) and fail["op"] == ">="
    assert "aten::native_layer_norm.out x9" in fail["detail"] and "68/100" in fail["detail"]
    assert gates[3]["detail"] == "not converted: boom"
    assert delegation_gates(_project(None), [_record("pte", 0.5)]) == []  # no [gates.delegation]: no gate


def test_delegation_gate_config_is_a_share():
    with pytest.raises(InputError) as info:
        _project(95)
    assert "gates.delegation.min" in info.value.message
