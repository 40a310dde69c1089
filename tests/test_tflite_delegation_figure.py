"""One delegation figure for a .tflite with control flow (issue 21, bench/FAMILIES.md finding 3).

The same langid_keras.fp32.tflite was "46/62 ops (74%)" in export's warning (inspect's count: the main
graph's ops inside XNNPACK's partitions) and "44 of 62 ops delegated" in validate's record (the native
LiteRT runner's: the operator events of a profiled run). 46 was right: the profiler numbers a WHILE's
condition and body ops from 0 in their own subgraphs, and the runner took their events for main-graph
ops that XNNPACK had taken. Here the pattern in small: a Keras Dense -> Masking -> GRU -> Dense trained on the
digits, a Dense first (the mask is NOT_EQUAL/REDUCE_ANY/SELECT_V2 outside XNNPACK, the GRU a WHILE loop), exported by
edgeship, then counted by inspect, the manifest, the native runner and the Python runner: one figure.
Before the runner counted subgraph 0's events only, it said 1 of 10 where the others say 3 of 10 (the
loop condition's LESS is node 0 of its subgraph, and the main graph's node 0, the first Dense, is XNNPACK's).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.bundle import read_bundle
from edgeship.cli import cli
from edgeship.runtime.local import LocalDevice
from edgeship.runtime.standalone import tflite as standalone_tflite


def train_masked_gru(path, epochs: int = 2) -> float:
    """A digit's 8 rows as 8 time steps behind a Masking layer, a GRU and a Dense head; test top-1 (%)."""
    import keras

    from edgeship.demo_models import digits_split

    keras.utils.set_random_seed(0)
    xtr, ytr, xte, yte = digits_split()
    model = keras.Sequential([keras.Input((8, 8), name="rows"), keras.layers.Dense(16, activation="relu", name="embed"),
                              keras.layers.Masking(0.0, name="mask"), keras.layers.GRU(16, name="gru"),
                              keras.layers.Dense(10, name="logits")], name="masked_gru")
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xtr, ytr, epochs=epochs, batch_size=64, verbose=0)
    model.save(path)
    return float((np.asarray(model.predict(xte, verbose=0)).argmax(1) == yte).mean() * 100)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("masked-gru")
    assert train_masked_gru(tmp / "masked_gru.keras") > 40
    out = tmp / "b"
    r = CliRunner().invoke(cli, ["-q", "export", str(tmp / "masked_gru.keras"), "--to", "tflite", "--quant", "fp32",
                                 "--eval", "digits:test", "--golden-samples", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return read_bundle(out)


def test_inspect_manifest_and_both_runners_count_the_same_ops(bundle):
    record = next(a for a in bundle.artifacts if a["format"] == "tflite")
    path = bundle.artifact_path(record)
    details = standalone_tflite.inspect_artifact(str(path))
    ops = {o["op"] for o in details["ops"]}
    assert {"WHILE", "NOT_EQUAL"} <= ops, ops  # the pattern: a loop and a mask, outside XNNPACK
    delegated, total = details["delegated_ops"], details["total_ops"]
    assert 0 < delegated < total, details["ops"]

    manifest = record["delegation"]  # what export counted and warned with
    assert (manifest["delegated_ops"], manifest["total_ops"]) == (delegated, total)
    assert manifest["left_out"]["WHILE"] == 1

    inputs = [x[:2] for x in bundle.golden().inputs]
    native = LocalDevice().run_artifact(path, inputs, record["io"], warmup=0, runs=1)
    python_device = LocalDevice()
    python_device.tflite_runtime = "python"
    python = python_device.run_artifact(path, inputs, record["io"], warmup=0, runs=1)
    assert native.ok and python.ok, (native.error, python.error)
    assert native.result["runtime"].startswith("litert-native")
    assert python.result["runtime"].startswith("ai-edge-litert")
    for run in (native, python):  # validate's record, from either runtime
        d = run.result["delegate"]
        assert (d["delegated_ops"], d["total_ops"]) == (delegated, total), d
    assert f"{delegated} of {total} ops delegated" in native.result["delegate"]["detail"]


def test_validate_shows_the_manifest_figure(bundle, tmp_path):
    out = tmp_path / "v.json"
    r = CliRunner().invoke(cli, ["validate", str(bundle.root), "--runs", "2", "--json", str(out)])
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(out.read_text())["artifacts"]
    assert rec["delegate"]["delegated_ops"] == rec["delegation"]["delegated_ops"], rec
    assert rec["delegate"]["total_ops"] == rec["delegation"]["total_ops"], rec


def test_a_while_loop_is_not_counted_delegated_through_an_absent_bias(tmp_path):
    """A WHILE lists an output slot -1 (unused), and a FULLY_CONNECTED without bias reads input -1 (absent):
    walking back from an XNNPACK partition through tensor -1 reached the WHILE, and inspect and the manifest
    counted the recurrence, which runs on TFLite's own kernels, as delegated (a Keras GRU -> TimeDistributed
    Dense model: 55/106, the native runner 54). Optional tensors (-1) are no tensor now."""
    import keras

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((10, 4), name="seq"), keras.layers.GRU(8, return_sequences=True),
                            keras.layers.Dense(3, use_bias=False)], name="gru_nobias")
    net.save(tmp_path / "gru_nobias.keras")
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["-q", "export", str(tmp_path / "gru_nobias.keras"), "--to", "tflite", "--quant",
                                 "fp32", "--golden-samples", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    b = read_bundle(out)
    record = next(a for a in b.artifacts if a["format"] == "tflite")
    details = standalone_tflite.inspect_artifact(str(b.artifact_path(record)))
    assert "WHILE" in {o["op"] for o in details["ops"]}
    assert record["delegation"]["left_out"].get("WHILE") == 1, record["delegation"]
    inputs = [x[:1] for x in b.golden().inputs]
    native = LocalDevice().run_artifact(b.artifact_path(record), inputs, record["io"], warmup=0, runs=1)
    assert native.ok, native.error
    d = native.result["delegate"]
    assert (d["delegated_ops"], d["total_ops"]) == (details["delegated_ops"], details["total_ops"]), (d, details)
