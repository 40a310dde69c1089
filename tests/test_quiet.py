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


def test_tensorflows_load_time_lines_go_to_the_log_not_the_terminal(keras_digits, tmp_path):
    """TensorFlow prints absl's "All log messages before absl::InitializeLog()" and oneDNN's notice on
    fd 2 when it loads, before the bundle (and its log) exists; they are held and written into
    export.log, and the terminal shows edgeship's lines only."""
    out = tmp_path / "bundle"
    proc = subprocess.run([sys.executable, "-m", "edgeship", "export", keras_digits.source, "--to", "tflite",
                           "--quant", "fp32", "--golden-samples", "4", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    log = (out / "export.log").read_text()
    assert "oneDNN custom operations" in log and "framework output while the model loaded" in log
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_demo_terminal_shows_edgeships_lines_only(tmp_path):
    """README command 1's job, on its Keras half: TensorFlow loads while the demo trains the Keras
    CNN (absl's and oneDNN's lines on fd 2), and validate starts children after JAX is up (its fork
    warning). None of it reaches the terminal; TensorFlow's lines are in the bundle's export.log."""
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "edgeship", "demo", "--framework", "keras", "--to", "tflite",
                           "--quant", "fp32", "--out", str(out)], capture_output=True, text=True, timeout=900)
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 0, terminal
    for noise in ("oneDNN", "absl::InitializeLog", "os.fork() was called", "_fork_exec", "Traceback"):
        assert noise not in terminal, (noise, terminal)
    assert "digits_keras.fp32.tflite" in terminal and "pass" in terminal
    assert "oneDNN custom operations" in (out / "digits_keras" / "export.log").read_text()
