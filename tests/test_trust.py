"""Trust boundaries: no arbitrary unpickling from model files unless the user says so."""

from __future__ import annotations

import io
import pickle

import pytest

from edgeship.errors import InputError
from edgeship.sources import _no_arbitrary_unpickling, load_model

CANARY = []


class Payload:
    """Unpickling this object calls CANARY.append: what a malicious file would do with os.system."""

    def __reduce__(self):
        return (CANARY.append, ("code ran",))


def test_guard_blocks_pickled_code_in_torch_load_and_pickle():
    import torch

    buf = io.BytesIO()
    torch.save(Payload(), buf)
    with _no_arbitrary_unpickling():
        with pytest.raises(pickle.UnpicklingError):
            torch.load(io.BytesIO(buf.getvalue()), weights_only=False)  # what torch.export.load asks for
        with pytest.raises(pickle.UnpicklingError):
            pickle.loads(pickle.dumps(Payload()))
    assert CANARY == []
    # outside the guard everything is as it was
    assert pickle.loads(pickle.dumps([1, 2])) == [1, 2]


def test_plain_pt2_loads_under_the_guard(tmp_path):
    from edgeship.demo_models import build_torch_cnn, save_torch_pt2

    path = save_torch_pt2(build_torch_cnn().eval(), tmp_path / "m.pt2")
    m = load_model(str(path))
    assert m.kind == "torch-exported" and m.io.inputs[0].shape == (1, 1, 8, 8)


def test_pickled_checkpoints_are_refused(tmp_path):
    (tmp_path / "w.pth").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(InputError, match="does not unpickle"):
        load_model(str(tmp_path / "w.pth"))
    assert CANARY == []
