"""The .tflite runner and inspector (runtime/tflite.py): standalone, fast to start, float in and out
whatever the artifact's I/O types, honest about XNNPACK, and clear about broken files."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.convert import ConvertOptions
from edgeship.quantize import get_recipe
from edgeship.runtime.emulated import AGENT_MODULES, OPTIONAL_AGENT_MODULES
from edgeship.runtime.standalone import tensors, tflite
from edgeship.runtime.standalone.tflite import Runner, inspect_artifact

from conftest import REPO, top1


@pytest.fixture(scope="module")
def models(keras_digits, tmp_path_factory):
    """fp32, int8 (float I/O) and int8 with int8 I/O artifacts of the Keras digits CNN."""
    from edgeship.convert.keras_tflite import convert

    d = tmp_path_factory.mktemp("runner")
    out = {}
    for name, recipe, int8_io in (("fp32", "fp32", False), ("int8", "int8", False), ("int8-io", "int8", True)):
        out[name] = d / f"digits.{name}.tflite"
        convert(keras_digits.model, get_recipe(recipe), keras_digits.train.take(200), out[name],
                ConvertOptions(int8_io=int8_io))
    return out


def run_all(runner, ds) -> np.ndarray:
    return np.concatenate([runner.run(s)[0] for s in ds.samples()])


def test_runner_module_is_standalone():
    """Pushed to devices on its own: standard library, numpy and a TFLite runtime only."""
    tree = ast.parse(Path(tflite.__file__).read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    # siblings in runtime/standalone/ travel with it in the agent package (runtime/emulated.py)
    siblings = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert siblings <= set(AGENT_MODULES + OPTIONAL_AGENT_MODULES), siblings
    assert roots <= {"__future__", "os", "numpy", "ai_edge_litert", "tflite_runtime", "tensorflow"}, roots


def test_import_and_load_pull_in_no_framework(models):
    """What keeps start-up fast: no framework is imported. The seconds are measured in bench/timings.py."""
    code = (
        "import sys, json\n"
        "from edgeship.runtime.standalone.tflite import Runner\n"
        f"r = Runner({str(models['int8'])!r})\n"
        "print(json.dumps({'runtime': r.runtime,\n"
        "    'heavy': sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["runtime"].startswith("ai-edge-litert "), got


def test_falls_back_to_tf_lite_without_ai_edge_litert(models, keras_digits):
    code = (
        "import sys, json\n"
        "sys.modules['ai_edge_litert'] = None; sys.modules['tflite_runtime'] = None  # not installed\n"
        "import numpy as np\n"
        "from edgeship.runtime.standalone.tflite import Runner, inspect_artifact\n"
        f"r = Runner({str(models['int8'])!r})\n"
        f"x = np.load({str(models['int8'].with_suffix('.npy'))!r})\n"
        f"d = inspect_artifact({str(models['int8'])!r})\n"
        "print(json.dumps({'runtime': r.runtime, 'active': r.delegate['active'], 'ops': d['total_ops'],\n"
        "    'y': r.run([x])[0].tolist()}))\n"
    )
    x = keras_digits.test.sample(7)[0]
    np.save(models["int8"].with_suffix(".npy"), x)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["runtime"].startswith("tensorflow ") and got["active"] is True
    assert got["ops"] == inspect_artifact(str(models["int8"]))["total_ops"]
    assert np.array_equal(np.array(got["y"], np.float32), Runner(str(models["int8"])).run([x])[0])


def test_fp32_runner_describes_itself(models, keras_digits):
    r = Runner(str(models["fp32"]), threads=2)
    assert r.inputs == [{"name": "serving_default_image:0", "shape": [1, 8, 8, 1], "dtype": "float32",
                         "quantization": None}]
    assert r.outputs[0]["shape"] == [1, 10] and r.outputs[0]["dtype"] == "float32"
    assert r.delegate["name"] == "XNNPACK" and r.delegate["active"] is True
    assert r.delegate["delegated_ops"] == r.delegate["total_ops"] == 6
    logits = run_all(r, keras_digits.test)
    assert logits.dtype == np.float32 and logits.shape == (len(keras_digits.test), 10)
    assert abs(top1(logits, keras_digits.test.labels) - keras_digits.float_accuracy) < 1e-9


def test_threads_do_not_change_results(models, keras_digits):
    x = keras_digits.test.take(20)
    assert np.allclose(run_all(Runner(str(models["fp32"]), threads=1), x),
                       run_all(Runner(str(models["fp32"]), threads=2), x), atol=1e-5)


def test_integer_io_is_quantized_with_the_artifacts_own_parameters(models, keras_digits):
    r = Runner(str(models["int8-io"]))
    q_in, q_out = r.inputs[0]["quantization"], r.outputs[0]["quantization"]
    x = keras_digits.test.sample(0)
    got = r.run(x)[0]
    # by hand, with the raw interpreter: quantize, invoke, dequantize
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(models["int8-io"]))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(i["index"], np.clip(np.round(x[0] / q_in["scale"]) + q_in["zero_point"], -128, 127).astype(np.int8))
    it.invoke()
    want = (it.get_tensor(o["index"]).astype(np.float32) - q_out["zero_point"]) * q_out["scale"]
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_the_artifacts_own_quantization_wins_and_the_signature_is_the_fallback(models, keras_digits):
    own = Runner(str(models["int8-io"]))
    wrong = {"scale": 1.0, "zero_point": 0}
    with_sig = Runner(str(models["int8-io"]), signature={
        "inputs": [{"name": "image", "quantization": wrong}], "outputs": [{"name": "dense_1", "quantization": wrong}]})
    assert with_sig.inputs == own.inputs and with_sig.outputs == own.outputs
    x = keras_digits.test.take(10)
    assert np.array_equal(run_all(with_sig, x), run_all(own, x))
    # integer I/O without parameters in the file (e.g. stripped by a tool): the manifest's are used,
    # per-tensor values written as lists or as scalars
    entries = [{"quantization": {"scale": [0.5], "zero_point": [3]}}, {"quantization": {"scale": 0.25}}, {}]
    assert tflite._sig_quant(entries, 0) == {"scale": 0.5, "zero_point": 3}
    assert tflite._sig_quant(entries, 1) == {"scale": 0.25, "zero_point": 0}
    assert tflite._sig_quant(entries, 2) is None and tflite._sig_quant(None, 0) is None
    q = tflite._sig_quant(entries, 0)
    ints = tensors.to_tensor(np.array([[-70.0, 0.0, 1.0, 70.0]], np.float32), np.dtype(np.int8), q)
    assert ints.tolist() == [[-128, 3, 5, 127]]  # rounded, offset, clipped to int8
    assert tensors.from_tensor(ints, q).tolist() == [[-65.5, 0.0, 1.0, 62.0]]


def test_inputs_are_mapped_by_the_signatures_names(tmp_path):
    """A manifest that lists the inputs in another order than the file gets them in its order."""
    import keras

    from edgeship.convert.keras_tflite import convert
    from edgeship.model import IOSpec, Model, TensorSpec

    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="zeta"), keras.Input((3,), name="alpha")
    km = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    io = IOSpec([TensorSpec("zeta", (1, 4)), TensorSpec("alpha", (1, 3))], [TensorSpec("out", (1, 2))])
    path = tmp_path / "two.tflite"
    convert(Model("two", "keras", "keras", "two", "two", km, io, None), get_recipe("fp32"), None, path,
            ConvertOptions())
    x = [np.arange(4, dtype=np.float32)[None], np.arange(3, dtype=np.float32)[None] - 5]
    want = np.asarray(km(x))
    in_file_order = Runner(str(path))
    assert np.allclose(in_file_order.run(x)[0], want, atol=1e-5)
    assert [t["name"] for t in in_file_order.inputs] == ["serving_default_zeta:0", "serving_default_alpha:0"]
    # names as the manifest writes them: the model's name and the artifact's tensor name
    entries = [{"name": "zeta", "artifact_name": "serving_default_zeta:0"},
               {"name": "alpha", "artifact_name": "serving_default_alpha:0"}]
    reversed_sig = Runner(str(path), signature={"inputs": entries[::-1], "outputs": [{"name": "out"}]})
    assert [t["shape"] for t in reversed_sig.inputs] == [[1, 3], [1, 4]]
    assert np.allclose(reversed_sig.run(x[::-1])[0], want, atol=1e-5)
    by_key_only = Runner(str(path), signature={"inputs": [{"name": "alpha"}, {"name": "zeta"}]})
    assert np.allclose(by_key_only.run(x[::-1])[0], want, atol=1e-5)


def test_wrong_feeds_are_value_errors(models):
    r = Runner(str(models["fp32"]))
    with pytest.raises(ValueError, match="takes 1 inputs, got 2"):
        r.run([np.zeros((1, 8, 8, 1), np.float32)] * 2)
    with pytest.raises(ValueError, match=r"takes shape \[1, 8, 8, 1\], got \[1, 1, 8, 8\]"):
        r.run([np.zeros((1, 1, 8, 8), np.float32)])


def test_xnnpack_detection_tells_delegated_from_not(tmp_path):
    """With the default delegates off, the same model reports no delegation; with a CUMSUM op,
    which XNNPACK lacks, the report says which op stayed on TFLite's kernels."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgeship.convert.keras_tflite import convert
    from edgeship.model import IOSpec, Model, TensorSpec

    class CumSum(keras.layers.Layer):
        def call(self, x):
            return tf.math.cumsum(x, axis=-1)

    inp = keras.Input((8,), name="x")
    km = keras.Model(inp, keras.layers.Dense(4)(CumSum()(inp)))
    io = IOSpec([TensorSpec("x", (1, 8))], [TensorSpec("o", (1, 4))])
    model = Model("cumsum", "keras", "keras", "c", "c", km, io, None)
    result = convert(model, get_recipe("fp32"), None, tmp_path / "cumsum.tflite", ConvertOptions())
    data = (tmp_path / "cumsum.tflite").read_bytes()

    no_default_delegates = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    off = Interpreter(model_content=data, experimental_op_resolver_type=no_default_delegates)
    off.allocate_tensors()
    assert tflite._delegate_status(off)["active"] is False

    info = tflite.inspect_bytes(data)
    by_op = {op["op"]: op["delegated"] for op in info["ops"]}
    assert by_op["CUMSUM"] is False and by_op["FULLY_CONNECTED"] is True
    assert info["delegate"]["active"] is True and 0 < info["delegated_ops"] < info["total_ops"]
    assert result.delegation["coverage"] < 1.0 and "CUMSUM" in result.delegation["fallback"]


def test_inspect_reports_parts_ops_and_quantization(models):
    path = models["int8"]
    d = inspect_artifact(str(path))
    assert d["format"] == "tflite" and d["size_bytes"] == path.stat().st_size
    assert d["parts"]["weights"] + d["parts"]["graph"] == d["size_bytes"]
    assert d["parts"]["weights"] > 0.5 * d["size_bytes"]  # a conv net is mostly weights
    assert sum(op["count"] for op in d["ops"]) == d["total_ops"] and d["delegated_ops"] == d["total_ops"]
    assert [t["dtype"] for t in d["inputs"] + d["outputs"]] == ["float32", "float32"]
    assert d["inputs"][0]["signature_name"] == "image"
    kernels = [t for t in d["tensors"] if t["dtype"] == "int8" and t["quantization"]
               and isinstance(t["quantization"]["scale"], list)]
    assert kernels and all(t["quantization"]["axis"] == 0 for t in kernels)
    json.dumps(d)  # the agent sends it as JSON


BROKEN = {
    "empty": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 3],
    "header only": lambda b: b[:64],
    "not tflite": lambda b: b"PK\x03\x04" + b[4:],
    "zeroed identifier": lambda b: b[:4] + b"\0\0\0\0" + b[8:],
    "scrambled tables": lambda b: b[:8] + bytes(reversed(b[8:2000])) + b[2000:],
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_files_are_clear_value_errors(models, tmp_path, kind):
    path = tmp_path / "broken.tflite"
    path.write_bytes(BROKEN[kind](models["fp32"].read_bytes()))
    for load in (Runner, inspect_artifact):
        with pytest.raises(ValueError) as e:
            load(str(path))
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg
        assert any(w in msg for w in ("empty", "not a TFLite model", "corrupt or truncated")), msg


def test_agent_reports_a_broken_file_as_json(models, tmp_path):
    path = tmp_path / "broken.tflite"
    path.write_bytes(models["fp32"].read_bytes()[:5000])
    np.savez(tmp_path / "in.npz", input_0=np.zeros((1, 1, 8, 8, 1), np.float32)[:, 0])
    proc = subprocess.run([sys.executable, "-m", "edgeship.runtime.standalone.agent", "run", str(path), "--inputs",
                           str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 1 and result["ok"] is False and result["stage"] == "load"
    assert result["error"].startswith("ValueError: ") and "corrupt or truncated" in result["error"]
