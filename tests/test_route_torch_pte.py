"""torch -> .pte: every recipe on a CNN trained on digits, run with the ExecuTorch runner on the
held-out split; delegation fallback, a model ExecuTorch cannot run, int8 I/O, corrupt files."""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import numpy as np
import pytest

from edgeship.errors import ConversionError, UnsupportedError
from edgeship.model import IOSpec, Model, TensorSpec
from edgeship.quantize.recipes import RECIPES
from edgeship.runtime.standalone.executorch import Runner, inspect_artifact

from roundtrip import convert_into, row_cosines, run_all, top1

convert = partial(convert_into, "torch", "pte")

FP32_MAX_ABS = 1e-4


@pytest.fixture(scope="module")
def artifacts(torch_digits, tmp_path_factory):
    """Each (recipe, int8_io) converted once, on first use."""
    out = tmp_path_factory.mktemp("torch_pte")
    cache = {}

    def get(recipe: str, int8_io: bool = False):
        if (recipe, int8_io) not in cache:
            calib = torch_digits.train.take(200) if RECIPES[recipe].needs_calibration else None
            cache[(recipe, int8_io)] = convert(torch_digits.model, recipe, out, calib, int8_io)
        return cache[(recipe, int8_io)]

    return get


@pytest.fixture(scope="module")
def reference(torch_digits):
    return torch_digits.model.run(torch_digits.test.batch(0, len(torch_digits.test)))[0]


@pytest.mark.parametrize("recipe", ["fp32", "fp16", "dynamic-int8", "int8"])
def test_recipe_matches_the_float_model(recipe, artifacts, reference, torch_digits):
    path, result = artifacts(recipe)
    runner = Runner(path)
    logits = run_all(runner, torch_digits.test)
    floor = RECIPES[recipe]
    assert logits.shape == reference.shape and logits.dtype == np.float32
    assert row_cosines(logits, reference).min() > floor.min_cosine
    assert torch_digits.float_accuracy - top1(logits, torch_digits.test.labels) <= floor.max_top1_drop
    if recipe == "fp32":
        assert np.abs(logits - reference).max() < FP32_MAX_ABS
    else:  # quantized or half: close, but not bit-identical
        assert 0 < np.abs(logits - reference).max() < (0.1 if recipe == "fp16" else 5.0)
    # float I/O whatever the recipe, and XNNPACK took the whole model
    assert [t["dtype"] for t in runner.inputs + runner.outputs] == ["float32", "float32"]
    assert runner.delegate["active"] and result.delegation["lowering_error"] is None
    assert result.delegation["backend"] == "XnnpackBackend" and result.delegation["partitions"] == 1
    assert set(result.tools) == {"torch", "executorch", "torchao"}
    assert result.route.startswith("torch.export") and result.route.endswith(".pte")


def test_delegation_coverage_per_recipe(artifacts):
    assert artifacts("fp32")[1].delegation["coverage"] == 1.0
    assert artifacts("int8")[1].delegation["coverage"] == 1.0
    fp16 = artifacts("fp16")[1].delegation
    # the float32 <-> float16 casts at the boundary stay with ExecuTorch's portable kernels
    assert fp16["total_ops"] - fp16["delegated_ops"] == 2 and fp16["coverage"] < 1.0
    assert fp16["fallback"] == "2 ops on ExecuTorch's portable kernels: dim_order_ops::_to_dim_order_copy.out x2"


def test_quantized_artifacts_are_smaller(artifacts):
    size = {r: artifacts(r)[0].stat().st_size for r in ("fp32", "fp16", "dynamic-int8", "int8")}
    assert size["fp16"] < 0.65 * size["fp32"]
    assert size["int8"] < 0.35 * size["fp32"] and size["dynamic-int8"] < 0.45 * size["fp32"]


def test_int8_io(artifacts, torch_digits):
    path, result = artifacts("int8", int8_io=True)
    q_in, q_out = result.io_quantization["inputs"][0], result.io_quantization["outputs"][0]
    assert q_in["scale"] > 0 and -128 <= q_in["zero_point"] <= 127 and q_out["scale"] > 0
    assert inspect_artifact(path)["inputs"][0]["dtype"] == "int8"
    runner = Runner(path)  # the artifact carries its own scales (constant methods)
    assert [t["dtype"] for t in runner.inputs + runner.outputs] == ["int8", "int8"]
    assert runner.inputs[0]["quantization"] == {"scale": q_in["scale"], "zero_point": q_in["zero_point"]}
    logits = run_all(runner, torch_digits.test)
    assert torch_digits.float_accuracy - top1(logits, torch_digits.test.labels) <= 1.0
    # same numbers as the float-I/O int8 artifact, up to one output quantization step
    float_io = run_all(Runner(artifacts("int8")[0]), torch_digits.test)
    assert np.abs(logits - float_io).max() <= 1.01 * q_out["scale"]


def test_int8_io_is_ignored_with_a_warning_for_other_recipes(torch_digits, tmp_path):
    path, result = convert(torch_digits.model, "fp32", tmp_path, int8_io=True)
    assert result.io_quantization is None and any("int8 I/O" in w for w in result.warnings)
    assert Runner(path).inputs[0]["dtype"] == "float32"


def test_exported_program_source(torch_digits_pt2, tmp_path):
    assert torch_digits_pt2.model.kind == "torch-exported"
    path, result = convert(torch_digits_pt2.model, "fp32", tmp_path)
    ref = torch_digits_pt2.model.run(torch_digits_pt2.test.batch(0, 50))[0]
    logits = run_all(Runner(path), torch_digits_pt2.test.take(50))
    assert np.abs(logits - ref).max() < FP32_MAX_ABS and result.delegation["coverage"] == 1.0


def test_inspect_artifact(artifacts):
    path, result = artifacts("int8")
    d = inspect_artifact(path)
    assert d["format"] == "pte" and d["size_bytes"] == path.stat().st_size
    assert sum(d["parts"].values()) == d["size_bytes"] and d["parts"]["delegate_blobs"] > 0
    assert [x["backend"] for x in d["delegates"]] == ["XnnpackBackend"]
    assert d["delegated_ops"] == d["total_ops"] > 0  # everything inside XNNPACK
    assert {"XNNConv2d", "XNNFullyConnected"} <= {o["op"] for o in d["ops"] if o["delegated"]}
    assert d["inputs"] == [{"shape": [1, 1, 8, 8], "dtype": "float32"}]
    fp16 = inspect_artifact(artifacts("fp16")[0])
    assert [o["op"] for o in fp16["ops"] if not o["delegated"]] == ["dim_order_ops::_to_dim_order_copy.out"]


def test_runner_threads(artifacts, torch_digits):
    path = artifacts("fp32")[0]
    x = torch_digits.test.sample(0)
    two = Runner(path, threads=2)
    assert two.threads == 2 and "2 threads" in two.delegate["detail"]
    out2 = two.run(x)[0]
    one = Runner(path, threads=1)
    assert one.threads == 1 and np.allclose(one.run(x)[0], out2, atol=1e-5)


def test_runner_checks_feeds(artifacts):
    runner = Runner(artifacts("fp32")[0])
    with pytest.raises(ValueError, match="takes 1 inputs"):
        runner.run([])
    with pytest.raises(ValueError, match=r"shape \[1, 1, 8, 8\]"):
        runner.run([np.zeros((1, 8, 8, 1), np.float32)])


def test_runner_imports_neither_the_exporter_nor_executorch_runtime(artifacts):
    code = (
        "import sys, numpy as np\nfrom edgeship.runtime.standalone.executorch import Runner\n"
        f"r = Runner({str(artifacts('fp32')[0])!r})\nr.run([np.zeros((1, 1, 8, 8), np.float32)])\n"
        "print('heavy', sorted(m for m in ('executorch.exir', 'executorch.runtime', 'edgeship.convert') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "heavy []" in out, out


# ---------------------------------------------------------------------------------------------
# Corrupt files: a ValueError that says what is wrong, never a crash


@pytest.mark.parametrize("case", ["empty", "not_pte", "truncated", "random_body"])
def test_corrupt_file_raises_value_error(case, artifacts, tmp_path):
    data = artifacts("int8")[0].read_bytes()
    bad = {
        "empty": b"",
        "not_pte": b"PK\x03\x04" + data[4:],
        "truncated": data[: len(data) // 2],
        "random_body": data[:8] + np.random.default_rng(0).bytes(len(data) - 8),
    }[case]
    path = tmp_path / "bad.pte"
    path.write_bytes(bad)
    with pytest.raises(ValueError, match="not an ExecuTorch program|truncated|cannot load"):
        Runner(path)


@pytest.mark.parametrize("region", ["program", "delegate"])
def test_corrupted_bytes_inside_raise_value_error(region, artifacts, tmp_path):
    """Flipped bytes in the program flatbuffer or the XNNPACK blob. Run in a child process: a
    runtime that crashed would take only the child down, and the test would say so."""
    data = bytearray(artifacts("int8")[0].read_bytes())
    program_size = int.from_bytes(data[16:24], "little")
    segment_base = int.from_bytes(data[24:32], "little")
    start = 48 if region == "program" else segment_base + 64
    for i in range(start, start + 400, 40):
        data[i] ^= 0xFF
    assert region == "delegate" or start + 400 < program_size
    path = tmp_path / f"flipped_{region}.pte"
    path.write_bytes(bytes(data))
    code = (
        "import sys, numpy as np\nfrom edgeship.runtime.standalone.executorch import Runner\n"
        f"try:\n    Runner({str(path)!r}).run([np.zeros((1, 1, 8, 8), np.float32)])\n    print('ran')\n"
        "except ValueError as e:\n    print('ValueError:', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ValueError: cannot load" in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------------------------
# Models XNNPACK cannot take whole


def keras_style_cnn():
    """The graph Keras' torch backend produces, in plain PyTorch: NHWC activations, HWIO kernels
    permuted inside forward, bias added after the convolution, max pool behind a permute."""
    import torch
    import torch.nn.functional as F

    class NHWCNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.k1, self.b1 = torch.randn(3, 3, 1, 16, generator=g) * 0.3, torch.randn(16, generator=g) * 0.1
            self.k2, self.b2 = torch.randn(3, 3, 16, 32, generator=g) * 0.1, torch.randn(32, generator=g) * 0.1

        def conv(self, x, k, b):
            x = x.permute(0, 3, 1, 2).contiguous()
            y = F.conv2d(x, k.permute(3, 2, 0, 1).contiguous(), padding=1).permute(0, 2, 3, 1)
            return torch.relu(y + b.reshape(1, 1, 1, -1))

        def forward(self, x):
            y = self.conv(self.conv(x, self.k1, self.b1), self.k2, self.b2)
            return F.max_pool2d(y.permute(0, 3, 1, 2).contiguous(), 2).permute(0, 2, 3, 1).reshape(1, -1)

    return NHWCNet().eval()


def torch_model(module, example: np.ndarray, name: str) -> Model:
    import torch

    def run(inputs):
        with torch.no_grad():
            return [module(torch.from_numpy(np.ascontiguousarray(inputs[0]))).numpy()]

    out = run([example])[0]
    io = IOSpec([TensorSpec("x", example.shape)], [TensorSpec("y", out.shape)])
    return Model(name, "torch", "torch-module", name, name, module, io, run, [example])


def _no_folding(monkeypatch):
    """The graphs below fail in ExecuTorch because of weights computed at run time (a layout permute of a
    parameter); the constant-folding pass computes those once now, and they lower. To keep testing what
    happens when a program fails, these tests run without it, and without the data-movement pass, which
    makes the permute and its channels-last copy one contiguous permute."""
    from edgeship.convert import xnnpack_passes

    monkeypatch.delitem(xnnpack_passes.XNNPACK_PASSES, "constants folded")
    monkeypatch.delitem(xnnpack_passes.XNNPACK_PASSES, "data movement as one permute")


def test_fallback_when_the_xnnpack_program_fails(tmp_path, monkeypatch):
    """Dynamic int8 of this graph lowers to XNNPACK, but the program fails at run time
    ('Propagating input shapes failed'); one op per delegate works."""
    _no_folding(monkeypatch)
    x = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)
    model = torch_model(keras_style_cnn(), x, "nhwc")
    path, result = convert(model, "dynamic-int8", tmp_path)
    d = result.delegation
    assert d["mode"] == "xnnpack-per-op" and d["lowering_error"].startswith("trial run:")
    assert "xnn_status" in d["lowering_error"]  # the runtime's own log line
    assert d["fallback"].startswith("XNNPACK delegation failed (trial run:")  # validate's warning line
    assert 0.5 < d["coverage"] < 1.0 and d["partitions"] > 1
    assert any("fell back" in w and "per delegate" in w for w in result.warnings)
    assert "per-op" in result.route
    y = Runner(path).run([x])[0]
    assert row_cosines(y, model.run([x])[0]).min() > 0.99


def channels_last_weight():
    import torch
    import torch.nn.functional as F

    class ChannelsLastWeight(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0)))

        def forward(self, x):
            return F.conv2d(x, self.k.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last), padding=1)

    return ChannelsLastWeight().eval()


def test_model_executorch_cannot_run_is_one_line_conversion_error(tmp_path, monkeypatch):
    """A channels_last weight (what Keras emits) breaks ExecuTorch's kernels, delegated or not."""
    _no_folding(monkeypatch)
    model = torch_model(channels_last_weight(), np.ones((1, 4, 8, 8), np.float32), "cl")
    with pytest.raises(ConversionError) as err:
        convert(model, "fp32", tmp_path)
    message = str(err.value)
    assert message.startswith("ExecuTorch lowering failed: trial run:") and "dim order" in message
    assert "\n" not in message and "Traceback" not in message and len(message) < 600


@pytest.mark.parametrize("case", ["channels_last_weight", "keras_style_cnn_dynamic_int8"])
def test_weights_computed_from_parameters_are_folded_and_lower_whole(case, tmp_path):
    """The two graphs above, with constant folding: the permuted weight is computed once, and the whole
    graph lowers to XNNPACK and runs with the eager outputs (red before: a failed trial run)."""
    if case == "channels_last_weight":
        x = np.random.default_rng(0).random((1, 4, 8, 8), dtype=np.float32)
        model, recipe = torch_model(channels_last_weight(), x, "cl"), "fp32"
    else:
        x = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)
        model, recipe = torch_model(keras_style_cnn(), x, "nhwc"), "dynamic-int8"
    path, result = convert(model, recipe, tmp_path)
    d = result.delegation
    assert d["mode"] == "xnnpack" and not d["lowering_error"] and d["coverage"] == 1.0, d
    assert "constants folded" in result.route
    y = Runner(path).run([x])[0]
    assert row_cosines(y, model.run([x])[0]).min() > 0.99


def test_wrong_model_kind_is_unsupported(tmp_path):
    model = Model("m", "keras", "keras", "m.keras", "m.keras", None, IOSpec([TensorSpec("x", (1, 4))]), lambda x: x)
    with pytest.raises(UnsupportedError, match="torch -> pte"):
        convert(model, "fp32", tmp_path)


def masked_mean():
    """Token embeddings averaged over the non-padding positions: an all-zeros input is all padding, 0/0."""
    import torch

    class MaskedMean(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb, self.head = torch.nn.Embedding(32, 16), torch.nn.Linear(16, 4)

        def forward(self, ids):
            m = (ids != 0).unsqueeze(-1).float()
            return self.head((self.emb(ids) * m).sum(1) / m.sum(1))

    return MaskedMean().eval()


def test_int8_ranges_come_from_the_calibration_data_not_the_example_input(tmp_path):
    """The example input only traces the graph. Observed as a calibration sample, an all-padding zeros
    example made a NaN range ('torch.histc: range of [-nan, -nan]', red before), and a factory's example
    far from the data widened the input's int8 step."""
    from edgeship.data import Dataset

    rng = np.random.default_rng(0)
    ids = rng.integers(1, 32, size=(64, 12)).astype(np.int64)
    module = masked_mean()
    model = torch_model(module, np.zeros((1, 12), np.int64), "masked_mean")
    path, _ = convert(model, "int8", tmp_path, Dataset("ids", [ids], model.io.inputs))
    got = np.concatenate([Runner(path).run([ids[i : i + 1]])[0] for i in range(8)])
    assert row_cosines(got, model.run([ids[:8]])[0]).min() > 0.99

    x = rng.random((64, 16), dtype=np.float32)  # the data: [0, 1); the example: 100
    linear = torch_model(__import__("torch").nn.Linear(16, 4).eval(), np.full((1, 16), 100, np.float32), "linear")
    _, result = convert(linear, "int8", tmp_path, Dataset("x", [x], linear.io.inputs), int8_io=True)
    assert result.io_quantization["inputs"][0]["scale"] < 1.5 / 255


def test_a_child_named_like_a_graph_module_attribute_exports(tmp_path):
    """A submodule called `meta` (a two-input model's metadata branch) was lost when torch.export's program
    became a GraphModule, whose own `meta` dict shadows it: .pte and .onnx failed ('Node meta_0_weight
    target meta.0.weight references nonexistent attribute 0 of meta'). Now exported inside a wrapper."""
    import torch

    from edgeship.data import Dataset

    class TwoBranches(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.meta = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU())
            self.graph = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.graph(self.meta(x))

    x = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32)
    model = torch_model(TwoBranches().eval(), x[:1], "two_branches")
    want = model.run([x[:4]])[0]
    for target, recipe in (("pte", "fp32"), ("pte", "int8"), ("onnx", "fp32")):
        calib = Dataset("x", [x], model.io.inputs) if recipe == "int8" else None
        path, _ = convert_into("torch", target, model, recipe, tmp_path, calib)
        got = np.concatenate([run_all(path, Dataset("x", [x[i : i + 1]], model.io.inputs)) for i in range(4)])
        assert row_cosines(got, want).min() > (0.99 if recipe == "int8" else 0.99999), (target, recipe)


def test_int8_group_norm_over_large_groups_keeps_its_accuracy(tmp_path):
    """GroupNorm's statistics over 16,384 values per group (4 groups of 16 channels at 64x64): their means
    were written as a linear with a constant 1/K row, which XNNPACK's int8 kernels got wrong (cosine 0.989
    here, 0.57 on a small U-Net, against 0.9997 simulated); now a 4-D mean (global average pooling)."""
    import torch

    from edgeship.data import Dataset

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.GroupNorm(4, 16),
                                 torch.nn.Conv2d(16, 4, 1)).eval()
    rng = np.random.default_rng(0)
    x = rng.random((24, 3, 64, 64), dtype=np.float32)
    model = torch_model(module, x[:1], "group_norm")
    path, result = convert(model, "int8", tmp_path, Dataset("x", [x[:16]], model.io.inputs))
    assert "group norm decomposed" in result.route and result.delegation["coverage"] == 1.0
    got = np.concatenate([Runner(path).run([x[i : i + 1]])[0] for i in range(16, 24)])
    assert row_cosines(got, model.run([x[16:]])[0]).min() > 0.998
