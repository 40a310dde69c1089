"""The bundle writer: staged, atomic, locked, never overwrites without --force."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeship.bundle import MANIFEST, SCHEMA, BundleWriter, Golden, read_bundle
from edgeship.errors import ArtifactError, InputError


def _write(dest, force=False, payload=b"x"):
    with BundleWriter(dest, force) as w:
        w.path("m.fp32.tflite").write_bytes(payload)
        w.commit({"schema": SCHEMA, "artifacts": [{"path": "m.fp32.tflite"}]})


def test_commit_moves_complete_bundle_into_place(tmp_path):
    dest = tmp_path / "b"
    _write(dest)
    assert {p.name for p in dest.iterdir()} == {MANIFEST, "m.fp32.tflite"}
    assert read_bundle(dest).artifacts == [{"path": "m.fp32.tflite"}]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no staging or lock left behind


def test_error_inside_leaves_nothing(tmp_path):
    dest = tmp_path / "b"
    with pytest.raises(RuntimeError):
        with BundleWriter(dest) as w:
            w.path("half.tflite").write_bytes(b"half")
            raise RuntimeError("converter died")
    assert list(tmp_path.iterdir()) == []


def test_existing_bundle_needs_force(tmp_path):
    dest = tmp_path / "b"
    _write(dest, payload=b"old")
    with pytest.raises(InputError, match="already exists"):
        _write(dest, payload=b"new")
    assert (dest / "m.fp32.tflite").read_bytes() == b"old"
    _write(dest, force=True, payload=b"new")
    assert (dest / "m.fp32.tflite").read_bytes() == b"new"


def test_force_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not an edgeship bundle"):
        _write(dest, force=True)
    assert (dest / "thesis.tex").read_text() == "precious"


def test_second_writer_gets_a_clear_error(tmp_path):
    dest = tmp_path / "b"
    with BundleWriter(dest):
        with pytest.raises(InputError, match="another edgeship export is writing"):
            BundleWriter(dest).__enter__()


def test_corrupt_manifest(tmp_path):
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_bundle(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ArtifactError, match="not an edgeship manifest"):
        read_bundle(tmp_path)


def test_golden_round_trip(tmp_path):
    g = Golden([np.ones((3, 2), np.float32)], [np.zeros((3, 10), np.float32)], np.array([1, 2, 3]))
    g.save(tmp_path / "g.npz")
    back = Golden.load(tmp_path / "g.npz")
    assert len(back) == 3 and back.labels.tolist() == [1, 2, 3] and back.outputs[0].shape == (3, 10)


def test_staging_left_by_a_killed_export_is_cleaned_up(tmp_path):
    dest = tmp_path / "b"
    stale = tmp_path / ".b.partial-999999"
    stale.mkdir()
    (stale / "half.tflite").write_bytes(b"half")
    _write(dest)
    assert not stale.exists() and (dest / "m.fp32.tflite").exists()
