"""edgeship/loader.py: a user's file.py:fn imports as Python's own `import` would, so the code people
write in model and data files (a @dataclass config, pickling) works, and a failing import is one line."""

from __future__ import annotations

import sys

import pytest

from edgeship.errors import InputError
from edgeship.loader import load_callable

MODEL_FILE = '''
from __future__ import annotations
from dataclasses import dataclass

@dataclass
class Config:
    width: int = 8

def build():
    return Config()
'''


def test_a_file_with_a_dataclass_loads(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE)
    build = load_callable(path, "build", "model")  # before: AttributeError: 'NoneType' object has no attribute '__dict__'
    assert build().width == 8
    assert sys.modules[build.__module__].__file__ == str(path)


def test_a_failing_import_is_one_line_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import not_a_module_anywhere\n")
    with pytest.raises(InputError, match="importing .*broken.py' failed: ModuleNotFoundError"):
        load_callable(path, "build", "model")
    assert "edgeship_model_broken" not in sys.modules


KERAS_FACTORY = '''
import keras

def build():
    keras.utils.set_random_seed(0)
    inp = keras.Input((12,), dtype="int32", batch_size=1)
    x = keras.layers.Embedding(32, 8, mask_zero=True)(inp)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, keras.layers.Dense(4)(x))
'''


def test_a_factory_returning_a_keras_model_loads_as_keras(tmp_path):
    """file.py:build that returns a keras.Model (what a Keras user writes) was refused: 'returned Functional,
    not an nn.Module'. It is saved once into the cache (the .pte route's child reads a file) and named
    after the factory's file."""
    import numpy as np

    from edgeship.sources import load_model

    path = tmp_path / "text_pool.py"
    path.write_text(KERAS_FACTORY)
    model = load_model(f"{path}:build")
    assert (model.framework, model.kind, model.name) == ("keras", "keras", "text_pool")
    assert model.source_path.endswith(".keras") and model.io.inputs[0].shape == (1, 12)
    ids = np.arange(12, dtype=np.int32).reshape(1, 12) % 32
    want = np.asarray(model.obj(ids, training=False))
    assert np.allclose(model.run([ids])[0], want) and np.abs(want).max() > 0
    from pathlib import Path

    assert Path(model.source_path).is_file() and not list(Path(model.source_path).parent.glob("*.partial.keras"))


CUSTOM_LAYER_FACTORY = '''
import keras


class Scale(keras.layers.Layer):  # a custom layer as users write them: no get_config, not registered
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w + keras.ops.arange(0, keras.ops.shape(x)[-1], 1, dtype="float32") * 0.01


def build():
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="x")
    y = keras.layers.Dense(3)(Scale()(keras.layers.Dense(6, activation="relu")(x)))
    model = keras.Model(x, y)
    model.layers[2].w.assign([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    return model
'''


def test_a_keras_factory_with_an_unregistered_custom_layer_exports(tmp_path):
    """Keras saves a custom layer defined in the factory file but cannot load it back without its class: the
    model in memory is used, not the cache file read back, and the .pte route's torch-backend child builds it
    again by the factory and gives it the file's weights. Before: 'cannot load ... could not be deserialized'."""
    import json

    from click.testing import CliRunner

    from edgeship.cli import cli

    path = tmp_path / "scaled.py"
    path.write_text(CUSTOM_LAYER_FACTORY)
    out = tmp_path / "bundle"
    r = CliRunner().invoke(cli, ["export", f"{path}:build", "--to", "tflite,pte", "--quant", "fp32", "--out", str(out)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    rows = {a["format"]: a for a in manifest["artifacts"]}
    assert set(rows) == {"tflite", "pte"} and not manifest.get("failed_artifacts")
    for row in rows.values():
        assert row["smoke"]["status"] == "pass" and row["smoke"]["cosine"] > 0.9999, row["smoke"]
