"""A conv whose kernel is wider than what its padding lets reach the input (a 'same' 5x5 depthwise conv on
a 1x1 or 2x2 feature map, late in MobileNetV3 or EfficientNet at a small input) is cut to the taps that meet
the input: the same values with a ninth to a twenty-fifth of the work (xnnpack_decompose
.conv_kernel_cropped_to_the_input)."""

from __future__ import annotations

import numpy as np
import torch

from edgeship.convert import xnnpack_decompose
from edgeship.convert.torch_pte import lower_with_fallback
from edgeship.convert.xnnpack_passes import prepare_for_xnnpack
from edgeship.inspect import inspect_file

aten = torch.ops.aten


class LateStage(torch.nn.Module):
    """A 4x4 map down to 2x2 and 1x1, with 'same' 5x5 depthwise convs at each size and a full 3x3 at 1x1."""

    def __init__(self, c=16):
        super().__init__()
        torch.manual_seed(0)
        self.down = torch.nn.Conv2d(3, c, 3, stride=2, padding=1)  # 4x4 -> 2x2
        self.dw2 = torch.nn.Conv2d(c, c, 5, padding=2, groups=c)  # on 2x2: rows 1..3 of the kernel meet it
        self.pool = torch.nn.AvgPool2d(2)  # 2x2 -> 1x1
        self.dw1 = torch.nn.Conv2d(c, c, 5, padding=2, groups=c)  # on 1x1: only the centre tap
        self.full = torch.nn.Conv2d(c, 8, 3, padding=1)  # on 1x1: the centre tap of each input channel
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        y = self.pool(torch.relu(self.dw2(self.down(x))))
        return self.head(self.full(torch.relu(self.dw1(y))).flatten(1))


def _kernels(gm):
    convs = [n for n in gm.graph.nodes if n.op == "call_function" and n.target == aten.conv2d.default]
    return [(tuple(n.args[1].meta["val"].shape[2:]), list(n.args[4]) if len(n.args) > 4 else [0, 0]) for n in convs]


def test_kernels_are_cut_to_the_taps_that_meet_the_input():
    net, x = LateStage().eval(), torch.randn(1, 3, 4, 4)
    gm = torch.export.export(net, (x,)).module()
    assert xnnpack_decompose.conv_kernel_cropped_to_the_input(gm) == 3
    assert _kernels(gm) == [((3, 3), [1, 1]), ((3, 3), [1, 1]), ((1, 1), [0, 0]), ((1, 1), [0, 0])]
    with torch.no_grad():
        torch.testing.assert_close(gm(x), net(x), rtol=1e-5, atol=1e-6)
    assert xnnpack_decompose.conv_kernel_cropped_to_the_input(gm) == 0  # a fixed point


def test_a_kernel_every_tap_of_which_meets_the_input_is_left_alone():
    """Stride 2 over a 4x4 map with padding 2: output 0 reads rows -2..3, output 1 rows 0..5, so each of the
    six taps sees data at one of them."""
    conv = torch.nn.Conv2d(4, 4, 6, stride=2, padding=2, groups=4)
    gm = torch.export.export(conv.eval(), (torch.randn(1, 4, 4, 4),)).module()
    assert xnnpack_decompose.conv_kernel_cropped_to_the_input(gm) == 0


def test_the_cut_model_lowers_whole_and_matches_eager(tmp_path):
    net = LateStage().eval()
    rng = np.random.default_rng(0)
    examples = [torch.from_numpy(rng.standard_normal((1, 3, 4, 4)).astype(np.float32))]
    program, done = prepare_for_xnnpack(torch.export.export(net, tuple(examples)), examples)
    assert done.get("conv kernel cut to the taps that meet the input") == 3
    buffer, delegation = lower_with_fallback(program, examples)
    assert delegation["mode"] == "xnnpack" and delegation["delegated_ops"] == delegation["total_ops"]
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(buffer).load_method("forward")
    (got,) = method.execute(examples)
    with torch.no_grad():
        torch.testing.assert_close(got, net(*examples), rtol=1e-4, atol=1e-5)
    (tmp_path / "late.pte").write_bytes(buffer)
    ops = {o["op"]: o["count"] for o in inspect_file(tmp_path / "late.pte")["ops"]}
    assert ops.get("XNNDepthwiseConv2d") == 2, ops
