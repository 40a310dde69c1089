"""Trust boundaries: no arbitrary unpickling from model files unless the user says so."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

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


def malicious_pt2(tmp_path, marker):
    """A real .pt2 (torch.export.save of the digits CNN) whose sample inputs are a pickle that writes
    MARKER when unpickled and then gives the genuine inputs back, so the program still loads. torch
    reads sample inputs with weights_only=True and, when that fails, falls back to weights_only=False:
    a plain torch.export.load runs the payload."""
    import zipfile

    import torch

    from edgeship.demo_models import build_torch_cnn, save_torch_pt2

    clean = save_torch_pt2(build_torch_cnn().eval(), tmp_path / "clean.pt2")
    with zipfile.ZipFile(clean) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    (name,) = [i.filename for i, _ in entries if i.filename.endswith("/data/sample_inputs/model.pt")]
    genuine = tmp_path / "genuine_inputs.pt"
    genuine.write_bytes(dict((i.filename, b) for i, b in entries)[name])

    class WritesMarker:
        def __reduce__(self):
            return (eval, (f"(__import__('pathlib').Path({str(marker)!r}).write_text('code ran'), "
                           f"__import__('torch').load({str(genuine)!r}, weights_only=True))[1]",))

    payload = io.BytesIO()
    torch.save(WritesMarker(), payload)
    bad = tmp_path / "digits_cnn.pt2"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as z:
        for info, data in entries:
            z.writestr(info, payload.getvalue() if info.filename == name else data)
    return bad


def test_a_pt2_carrying_a_pickle_is_refused_unless_trusted(tmp_path):
    """`edgeship export` of a .pt2 with pickled code: refused in one line, the code never runs;
    with --trust-source the user's word lets torch.export.load unpickle it (and the code runs)."""
    from click.testing import CliRunner

    from edgeship.cli import cli

    marker = tmp_path / "payload-ran"
    bad = malicious_pt2(tmp_path, marker)
    args = ["export", str(bad), "--to", "onnx", "--quant", "fp32", "--golden-samples", "4"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "refused")])
    assert r.exit_code == 2, r.output
    said = " ".join(r.output.split())
    assert "holds pickled Python objects" in said and "--trust-source" in said and "Traceback" not in said
    assert not marker.exists()  # the payload did not run
    assert not (tmp_path / "refused").exists()

    # as the user runs it (in-process, pytest's log capture raises on torch's own malformed warning
    # "Fallback to weights_only=False succeeded ... %s ... %s" that this load logs)
    p = subprocess.run([sys.executable, "-m", "edgeship", *args, "--trust-source", "--out", str(tmp_path / "trusted")],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert marker.read_text() == "code ran"  # the file really was malicious: trusting it ran its code
    assert list((tmp_path / "trusted").glob("*.fp32.onnx"))
