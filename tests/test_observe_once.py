"""PT2E calibration observes each constant (weight) once: the same statistics, fewer observer calls.
convert/torch_common.py:constants_observed_once, used by the torch -> .tflite and torch -> .pte routes."""

from __future__ import annotations

import pytest

from edgeship.convert.torch_common import constants_observed_once

torch = pytest.importorskip("torch")


def _prepared():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                        get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3)).eval()
    example = (torch.randn(1, 1, 8, 8),)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    return prepare_pt2e(torch.export.export(model, example).module(), quantizer), model


def _observers(prepared):
    from torchao.quantization.pt2e.observer import ObserverBase

    modules = dict(prepared.named_modules())
    weights, activations = {}, {}
    for node in prepared.graph.nodes:
        m = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(m, ObserverBase):
            (weights if node.args[0].op == "get_attr" else activations)[node.target] = m
    return weights, activations


def test_weight_observers_run_once_and_keep_the_same_statistics():
    samples = [torch.randn(1, 1, 8, 8) * (i + 1) for i in range(4)]
    every, model = _prepared()
    once, _ = _prepared()
    with torch.no_grad():
        for x in samples:
            every(x)
        w_once, a_once = _observers(once)
        calls = {name: 0 for name in w_once}
        for name, m in w_once.items():  # count the observer's own forward (a hook fires on every call)
            def counted(x, name=name, real=m.forward):
                calls[name] += 1
                return real(x)
            m.forward = counted
        with constants_observed_once(once) as n:
            for x in samples:
                once(x)
    assert n == 2  # the two convs' weights
    assert set(calls.values()) == {1}  # each weight observed at its first call only
    w_every, a_every = _observers(every)
    for name in w_every:  # per-channel min/max of a constant: identical
        assert torch.equal(w_every[name].min_val, w_once[name].min_val)
        assert torch.equal(w_every[name].max_val, w_once[name].max_val)
        assert "forward" not in w_once[name].__dict__  # restored for convert_pt2e
    weight = model[0].weight.detach()
    first = next(m for name, m in w_once.items() if m.min_val.numel() == 4)
    assert torch.allclose(first.max_val, weight.amax(dim=(1, 2, 3)))
    for name in a_every:  # activations still see every sample: the scaled-up last one sets the range
        assert torch.equal(a_every[name].max_val, a_once[name].max_val)
    assert a_once["activation_post_process_0"].max_val == pytest.approx(float(max(x.max() for x in samples)))
