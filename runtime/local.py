"""The host as a device: the agent runs in a child process of this Python, with a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeship.children import die_with_parent
from edgeship.runtime import native, native_build
from edgeship.runtime.base import AgentRun, describe_exit, parse_agent_stdout


def save_inputs(path: Path, inputs: list[np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **{f"input_{i}": a for i, a in enumerate(inputs)})


def load_outputs(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return [z[f"output_{i}"] for i in range(len(z.files))]


class LocalDevice:
    """The host (`local`): runs each artifact in a child process."""

    scheme = "local"
    setup_options: ClassVar[dict[str, str]] = {}
    # for an option another kind takes: what this kind does instead (the refusal's hint)
    setup_instead: ClassVar[dict[str, str]] = {
        "with_python": "the host runs every format with the Python packages edgeship installed with it",
        "with_executorch": "the host's executorch is the one installed with edgeship (scripts/install)"}
    uri = "local"
    emulated = False

    # 'native' | 'python'; None: the command's --pte-runtime (edgeship.context), else $EDGESHIP_PTE_RUNTIME, else native
    pte_runtime: str | None = None
    # the same for .tflite: --tflite-runtime, else $EDGESHIP_TFLITE_RUNTIME, else native
    tflite_runtime: str | None = None
    # the same for .onnx: $EDGESHIP_ONNX_RUNTIME, else native (onnxruntime's Python package when it cannot be built)
    onnx_runtime: str | None = None
    native_target = "host"

    @classmethod
    def prepare(cls, uri: str, progress=None, rebuild: bool = False, **options) -> dict:
        """The host needs nothing prepared: its probe report."""
        report = cls().probe()
        report["setup"] = "nothing to do"
        return report

    def probe(self, timeout: float = 300.0) -> dict:
        """The host's Python runtimes (the standalone probe, in a child) and its native runners."""
        proc = subprocess.run([sys.executable, "-m", "edgeship.runtime.standalone.probe"], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=die_with_parent())
        return {**(parse_agent_stdout(proc.stdout) or {"ok": False}), **native.native_probes(self)}

    def preflight(self) -> None:
        """Nothing to connect to."""

    def agent_command(self) -> list[str]:
        return [sys.executable, "-m", "edgeship.runtime.standalone.agent"]

    def native_command(self, runner) -> list[str]:
        return [str(runner.binary)]

    def run_artifact(self, artifact, inputs, signature, **kw) -> AgentRun:
        """A .pte, .tflite or .onnx through its native runner (native_build.py) unless the Python one
        was asked for or no runner can be built here; everything else through the Python agent."""
        kind = native_build.kind_for(artifact)
        if kind is not None:
            run = self.run_native(kind, artifact, inputs, signature, **kw)
            if run is not None:
                return run
        return self.run_agent(artifact, inputs, signature, **kw)

    def runtime_choice(self, kind: str) -> str:
        """'native' or 'python' for KIND's format: this device's own choice, else the command's, else the
        environment's (native_build's choosers)."""
        if kind == "pte":
            return native_build.pte_runtime(self.pte_runtime)
        if kind == "litert":
            return native_build.tflite_runtime(self.tflite_runtime)
        return native_build.onnx_runtime(self.onnx_runtime)

    def run_native(self, kind: str, artifact, inputs, signature, *, threads=1, warmup=5, runs=50, timeout=300.0,
                   verbose=False, etdump=None, profile=None) -> AgentRun | None:
        """ARTIFACT through the native runner of KIND (native_build.SPECS); None when the Python runtime
        is to run it (chosen, or no native runner here). ETDUMP: the .pte runner's; PROFILE: LiteRT's."""
        if self.runtime_choice(kind) != "native":
            return None
        runner = native_build.runner_or_none(self.native_target, kind)
        if runner is None:
            return None
        with tempfile.TemporaryDirectory(prefix="edgeship-native-") as tmp:
            return native.run_native(self.native_command(runner), artifact, inputs, signature, Path(tmp),
                                     threads=threads, warmup=warmup, runs=runs, timeout=timeout, etdump=etdump,
                                     profile=profile)

    def run_agent(self, artifact, inputs, signature, *, threads=1, warmup=5, runs=50, timeout=300.0,
                  verbose=False) -> AgentRun:
        with tempfile.TemporaryDirectory(prefix="edgeship-run-") as tmp:
            tmp = Path(tmp)
            save_inputs(tmp / "in.npz", inputs)
            cmd = self.agent_command() + [
                "run", str(Path(artifact).resolve()), "--inputs", str(tmp / "in.npz"), "--out", str(tmp / "out.npz"),
                "--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs),
                "--max-seconds", str(max(1.0, timeout / 4)),
            ]
            if signature is not None:
                (tmp / "sig.json").write_text(json.dumps(signature))
                cmd += ["--signature", str(tmp / "sig.json")]
            if verbose:
                cmd.append("--verbose")
            env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                      preexec_fn=die_with_parent())
            except subprocess.TimeoutExpired:
                return AgentRun(False, error=f"timed out after {timeout:.0f} s (the runtime hung or is too slow)")
            result = parse_agent_stdout(proc.stdout)
            if result is None:
                return AgentRun(False, error=describe_exit(proc.returncode, proc.stderr))
            if not result.get("ok"):
                return AgentRun(False, result, error=f"{result.get('stage', 'run')}: {result.get('error')}")
            return AgentRun(True, result, load_outputs(tmp / "out.npz"))
