"""Data sources and the checks that run before any conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeship.data import ImageOptions, check_calibration, load_data
from edgeship.errors import InputError
from edgeship.model import IOSpec, TensorSpec

NCHW = IOSpec([TensorSpec("image", (1, 1, 8, 8), "float32", "NCHW")])
NHWC = IOSpec([TensorSpec("image", (1, 8, 8, 1), "float32", "NHWC")])


def test_digits_splits_are_disjoint_and_labelled():
    train, test = load_data("digits:train", NCHW), load_data("digits:test", NCHW)
    assert len(train) + len(test) == 1797
    assert train.arrays[0].shape[1:] == (1, 8, 8) and test.labels.shape == (len(test),)
    assert 0.0 <= train.arrays[0].min() and train.arrays[0].max() <= 1.0
    assert load_data("digits:test", NHWC).arrays[0].shape[1:] == (8, 8, 1)


def test_digits_rejects_other_shapes():
    with pytest.raises(InputError, match="digits are 8x8 images"):
        load_data("digits", IOSpec([TensorSpec("x", (1, 3, 32, 32))]))


def test_npz_by_name_with_labels(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, image=np.ones((20, 1, 8, 8), np.float32), labels=np.arange(20))
    ds = load_data(str(f), NCHW)
    assert len(ds) == 20 and ds.labels[-1] == 19


def test_npz_with_batch_dimension_per_sample_is_accepted(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, image=np.ones((5, 1, 1, 8, 8), np.float32))
    assert load_data(str(f), NCHW).arrays[0].shape == (5, 1, 8, 8)


def test_wrong_shape_names_both_shapes_and_suggests_layout(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, image=np.ones((5, 8, 8, 1), np.float32))
    with pytest.raises(InputError) as e:
        load_data(str(f), NCHW)
    assert "8x8x1" in e.value.message and "1x8x8" in e.value.message
    assert "layout" in e.value.hint


def test_nan_is_refused(tmp_path):
    x = np.ones((10, 1, 8, 8), np.float32)
    x[3, 0, 0, 0] = np.nan
    np.savez(tmp_path / "d.npz", image=x)
    with pytest.raises(InputError, match="NaN or Inf values in 1 of 10 samples"):
        load_data(str(tmp_path / "d.npz"), NCHW)


def test_wrong_array_names(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.ones((3, 1, 8, 8)), b=np.ones((3, 1, 8, 8)))
    with pytest.raises(InputError, match="holds arrays"):
        load_data(str(tmp_path / "d.npz"), NCHW)


def test_folder_of_npy_samples(tmp_path):
    for i in range(4):
        np.save(tmp_path / f"s{i}.npy", np.full((1, 8, 8), i, np.float32))
    ds = load_data(str(tmp_path), NCHW)
    assert len(ds) == 4 and ds.arrays[0][2].max() == 2


def test_image_folder_with_preprocessing(tmp_path):
    for label, value in (("zero", 0), ("one", 255)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((16, 16), value, np.uint8)).save(tmp_path / label / f"{i}.png")
    ds = load_data(str(tmp_path), NHWC, ImageOptions(mean=(0.5,), std=(0.5,)))
    assert ds.arrays[0].shape == (6, 8, 8, 1)
    # classes sorted by folder name: "one" (255 -> +1.0) is label 0, "zero" (0 -> -1.0) label 1
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.allclose(ds.arrays[0][0], 1.0) and np.allclose(ds.arrays[0][-1], -1.0)


def test_module_function_source(tmp_path):
    mod = tmp_path / "gen.py"
    mod.write_text(
        "import numpy as np\n"
        "def samples():\n"
        "    for i in range(7):\n"
        "        yield np.full((1, 1, 8, 8), i, np.float32), i\n"
    )
    ds = load_data(f"{mod}:samples", NCHW)
    assert len(ds) == 7 and ds.labels.tolist() == list(range(7))


def test_missing_data_path():
    with pytest.raises(InputError, match="data not found"):
        load_data("/nonexistent/calib.npz", NCHW)


def test_too_few_calibration_samples():
    ds = load_data("digits:test", NCHW).take(5)
    with pytest.raises(InputError, match="has 5 samples; int8 calibration needs at least 16"):
        check_calibration(ds, 16)


def test_hash_changes_with_content():
    a = load_data("digits:test", NCHW)
    b = a.take(len(a) - 1)
    assert a.sha256 != b.sha256 and a.sha256 == load_data("digits:test", NCHW).sha256
