"""Quiet by default: what converters print while export converts (C++ output on fds 1 and 2,
Python warnings, logging records) goes to export.log in the staging folder; edgeship's own lines
still reach the terminal; on failure the log is kept beside the destination and named."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

from edgeship import quiet
from edgeship.errors import ConversionError

NOISY = ("C-level noise", "python print noise", "a framework warning", "a logging record")


def _noise() -> None:
    os.write(2, b"C-level noise\n")
    print("python print noise")
    warnings.warn("a framework warning")
    logging.getLogger("some.framework").warning("a logging record")


def test_converter_noise_goes_to_the_log_and_edgeship_lines_to_the_terminal(tmp_path):
    script = f"""
import sys; sys.path.insert(0, {str(tmp_path)!r})
from pathlib import Path
from edgeship import quiet
from edgeship.console import warn
import test_quiet_noise as t
with quiet.converter_output_to_log(Path({str(tmp_path)!r}), Path({str(tmp_path / 'out')!r})):
    t._noise()
    warn("edgeship's own line")
"""
    (tmp_path / "test_quiet_noise.py").write_text(
        "import logging, os, warnings\n" + "\n".join(_src_of_noise().splitlines()) + "\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    terminal = proc.stdout + proc.stderr
    assert "edgeship's own line" in terminal
    assert not any(n in terminal for n in NOISY), terminal
    log = (tmp_path / quiet.LOG_NAME).read_text()
    assert all(n in log for n in NOISY), log


def _src_of_noise() -> str:
    import inspect

    return inspect.getsource(_noise)


def test_a_failed_export_keeps_its_log_beside_the_destination_and_names_it(tmp_path):
    staging, dest = tmp_path / ".out.partial-1", tmp_path / "out"
    staging.mkdir()
    with pytest.raises(ConversionError) as e:
        with quiet.converter_output_to_log(staging, dest):
            os.write(2, b"the converter's last words\n")
            raise ConversionError("route failed", hint="run with --verbose")
    kept = quiet.kept_log_path(dest)
    assert "the converter's last words" in kept.read_text()
    assert str(kept) in e.value.hint and "--verbose" in e.value.hint


def test_verbose_redirects_nothing(tmp_path):
    with quiet.converter_output_to_log(tmp_path, tmp_path / "out", verbose=True) as log:
        assert log is None
    assert not (tmp_path / quiet.LOG_NAME).exists()


def test_an_interrupt_keeps_no_log(tmp_path):
    staging, dest = tmp_path / ".out.partial-1", tmp_path / "out"
    staging.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with quiet.converter_output_to_log(staging, dest):
            raise KeyboardInterrupt
    assert not quiet.kept_log_path(dest).exists()


JAX_FORK = """
import subprocess, sys
import jax.numpy as jnp
jnp.ones(3) + 1  # JAX's backend is up: from now on it warns at every fork
if sys.argv[1] == "edgeship":
    from edgeship.children import die_with_parent
    subprocess.run(["true"], preexec_fn=die_with_parent(), check=True)
else:
    subprocess.run(["true"], preexec_fn=lambda: None, check=True)
"""


def test_jax_fork_warning_stays_out_of_the_terminal():
    """The demo's validate printed JAX's "os.fork() was called ... deadlock" warning and the
    subprocess source line under it. edgeship's children exec right after the fork, so the warning
    is silenced where they are started; a plain fork in the same process still shows it."""
    def stderr(mode: str) -> str:
        return subprocess.run([sys.executable, "-W", "default", "-c", JAX_FORK, mode], capture_output=True,
                              text=True, timeout=300, check=True).stderr

    assert "os.fork() was called" in stderr("plain")  # the noise is real here: JAX is multithreaded
    assert "os.fork() was called" not in stderr("edgeship")


# A load-time line that is certain to be printed, as a framework's C++ code prints it: a C-level
# write(2) on fd 2 (TensorFlow's own absl/oneDNN lines come and go with its version and the CPU).
LOAD_NOISE = "noisy-loader: a C library's line on fd 2 while the model loads"
NOISY_LOADER = f"""
import ctypes


def noise():
    line = {(LOAD_NOISE + chr(10)).encode()!r}
    ctypes.CDLL(None).write(2, line, len(line))
"""
TF_NOISE = ("oneDNN", "absl::InitializeLog", "All log messages before absl")


def test_tensorflows_load_time_lines_go_to_the_log_not_the_terminal(keras_digits, tmp_path):
    """What a framework prints on fd 2 as the model loads (TensorFlow's absl and oneDNN lines), before
    the bundle (and its log) exists, is held and written into export.log; the terminal shows
    edgeship's lines only. The source here is a factory that prints a C-level line as it loads the
    Keras file, so the noise is there whatever TensorFlow prints on this machine."""
    (tmp_path / "noisy_loader.py").write_text(NOISY_LOADER)
    (tmp_path / "source.py").write_text(
        "import noisy_loader\n\n\ndef build():\n    noisy_loader.noise()\n"
        f"    return {keras_digits.source!r}\n")
    out = tmp_path / "bundle"
    proc = subprocess.run([sys.executable, "-m", "edgeship", "export", f"{tmp_path / 'source.py'}:build", "--to",
                           "tflite", "--quant", "fp32", "--golden-samples", "4", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 0, terminal
    log = (out / "export.log").read_text()
    held = log.split("--- conversion ---")[0]
    assert "framework output while the model loaded" in held and LOAD_NOISE in held, log
    assert LOAD_NOISE not in terminal, terminal
    for noise in TF_NOISE:  # TensorFlow's own lines, where it printed them, are in the log too
        assert noise not in terminal, (noise, terminal)
    assert "Traceback" not in terminal
    assert [p.name for p in out.glob("*.tflite")] == ["digits_cnn.fp32.tflite"]


DEMO_WITH_NOISE = f"""
import sys
sys.path.insert(0, sys.argv[1])
import noisy_loader
from edgeship import demo_models
from edgeship.cli import main

train = demo_models.train_keras_cnn


def noisy_train(*a, **kw):  # the demo's Keras training, printing a C-level line first (as TF's load does)
    noisy_loader.noise()
    return train(*a, **kw)


demo_models.train_keras_cnn = noisy_train
sys.argv = ["edgeship", *sys.argv[2:]]
main()
"""


def test_the_demo_terminal_shows_edgeships_lines_only(tmp_path):
    """README command 1's job, on its Keras half: TensorFlow loads while the demo trains the Keras
    CNN (absl's and oneDNN's lines on fd 2, where this TensorFlow prints them; here a certain C-level
    line too), and validate starts children after JAX is up (its fork warning). None of it reaches
    the terminal; the load-time lines are in the bundle's export.log."""
    (tmp_path / "noisy_loader.py").write_text(NOISY_LOADER)
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-c", DEMO_WITH_NOISE, str(tmp_path), "demo", "--framework", "keras",
                           "--to", "tflite", "--quant", "fp32", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 0, terminal
    for noise in (LOAD_NOISE, *TF_NOISE, "os.fork() was called", "_fork_exec", "Traceback"):
        assert noise not in terminal, (noise, terminal)
    assert "digits_keras.fp32.tflite" in terminal and "pass" in terminal
    assert LOAD_NOISE in (out / "digits_keras" / "export.log").read_text()


def test_diff_keeps_the_frameworks_load_lines_off_the_terminal(keras_digits, tmp_path):
    """`edgeship diff` loads the bundle's source and runs TensorFlow (the fp32 twin, the intermediate
    tensors): what they print as they load stays off its terminal too, as export's does."""
    (tmp_path / "noisy_loader.py").write_text(NOISY_LOADER)
    (tmp_path / "source.py").write_text(
        "import noisy_loader\n\n\ndef build():\n    noisy_loader.noise()\n"
        f"    return {keras_digits.source!r}\n")
    out, env = tmp_path / "bundle", {**os.environ, "PYTHONPATH": str(tmp_path)}
    export = subprocess.run([sys.executable, "-m", "edgeship", "export", f"{tmp_path / 'source.py'}:build", "--to",
                             "tflite", "--quant", "fp32,int8", "--calib", "digits", "--calib-samples", "32",
                             "--golden-samples", "8", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert export.returncode == 0, export.stdout + export.stderr
    proc = subprocess.run([sys.executable, "-m", "edgeship", "diff", str(out / "digits_cnn.int8.tflite"), "--png",
                           str(tmp_path / "d.png")], capture_output=True, text=True, timeout=600, env=env)
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 0, terminal
    assert "per-layer error" in terminal and (tmp_path / "d.png").exists()
    assert LOAD_NOISE not in terminal, terminal
    for noise in TF_NOISE:
        assert noise not in terminal, (noise, terminal)
