"""`emu:rpi4` and `emu:rpi5`: a Raspberry Pi's userland (Debian arm64) under QEMU user mode.

.tflite and .pte run through edgeship's native runners built for aarch64 (native_build.py: the
LiteRT one against the aarch64 wheel's libLiteRt.so, the ExecuTorch one against executorch's
aarch64 libraries), started as `qemu-aarch64-static -L ROOTFS -cpu cortex-a72 RUNNER`: they need
the root filesystem's libc and libstdc++ and no Python package (rootfs.py installs none). No
chroot and no binfmt_misc are needed to run them, nor root: `-L` makes QEMU look paths up in the
root filesystem first (its libraries, its /sys stub for XNNPACK), then on the host (the run's own
files). The board's CPU model keeps the guest from claiming features the Pi lacks.

The Python agent (`ROOTFS/usr/bin/python3 -m edgeship_agent.agent`, same QEMU flags) runs
--tflite-runtime python, EDGESHIP_ONNX_RUNTIME=python, and .onnx when this host cannot build the
native ONNX Runtime runner. Its packages (numpy, ai-edge-litert, onnxruntime) are the Python
side, a folder beside the root filesystem (rootfs.ensure_python_side) put on the guest's
PYTHONPATH: installed by `edgeship devices setup emu:rpi4 --with-python`, or at the first run that
needs it. ExecuTorch's Python runtime needs a CPU torch, which PyPI does not serve for aarch64:
with --pte-runtime python (or without the cross compiler) .pte artifacts get a per-artifact error
saying so instead of a run.

Latency measured here is the emulator's, not the board's: `emulated = True` labels it everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeship.children import die_with_parent
from edgeship.console import info
from edgeship.errors import DeviceUnreachable, InputError, suggest
from edgeship.runtime import native_build
from edgeship.runtime import rootfs as rootfs_mod
from edgeship.runtime.base import AgentRun, describe_exit, parse_agent_stdout
from edgeship.runtime.local import LocalDevice
from edgeship.runtime.native import native_probes
from edgeship.runtime.rootfs import MARKER, write_cpu_files

AGENT_MODULES = ("agent", "timing", "tensors", "tflite", "executorch", "probe")
OPTIONAL_AGENT_MODULES = ("onnx",)  # runners the agent may name (RUNNERS) when this tree has them
EXECUTORCH_ON_AARCH64 = ("ExecuTorch cannot run on this emulated arm64 device: its Python runtime links libtorch, "
                         "and PyPI serves no CPU torch for aarch64 (on a real Pi, `edgeship devices setup "
                         "ssh://... --with-executorch` installs one from PyTorch's CPU index); edgeship's native "
                         "runner needs no torch: --pte-runtime native, with g++-aarch64-linux-gnu installed")


@dataclass(frozen=True)
class Board:
    name: str
    cpu: str  # QEMU's -cpu model
    part: str  # the MIDR part number its /proc/cpuinfo shows
    cores: int


BOARDS = {
    "rpi4": Board("Raspberry Pi 4 (BCM2711, 4x Cortex-A72)", "cortex-a72", "0xd08", 4),
    "rpi5": Board("Raspberry Pi 5 (BCM2712, 4x Cortex-A76)", "cortex-a76", "0xd0b", 4),
}


def board_root(rootfs: Path, board_id: str) -> Path:
    """The root filesystem as BOARD sees it: the cached one (its /proc/cpuinfo is a Pi 4's), or a
    hard-linked copy of it with the board's own /proc/cpuinfo (made once, in a second or two)."""
    import fcntl


    board = BOARDS[board_id]
    if board.part == "0xd08":
        return rootfs
    view = rootfs.parent / f"{rootfs.name}.{board_id}"
    if (view / MARKER).is_file():
        return view
    with open(rootfs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (view / MARKER).is_file():
            stage = rootfs.parent / f".{view.name}.partial"
            shutil.rmtree(stage, ignore_errors=True)
            subprocess.run(["cp", "-al", str(rootfs), str(stage)], check=True)
            write_cpu_files(stage, board.part, board.cores)
            shutil.rmtree(view, ignore_errors=True)
            stage.rename(view)
    return view


def agent_package(dest: Path) -> Path:
    """Copy the agent's standalone modules into DEST/edgeship_agent; returns DEST (for sys.path)."""
    src = Path(__file__).resolve().parent / "standalone"
    pkg = dest / "edgeship_agent"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""edgeship\'s device agent (copied from edgeship.runtime.standalone)."""\n')
    for name in AGENT_MODULES + OPTIONAL_AGENT_MODULES:
        if (src / f"{name}.py").is_file() or name in AGENT_MODULES:
            shutil.copyfile(src / f"{name}.py", pkg / f"{name}.py")
    return dest


def parse_board(uri: str) -> str:
    board = uri.split(":", 1)[1] if ":" in uri else ""
    if board not in BOARDS:
        raise InputError(suggest(board, BOARDS, "emulated board"), hint="e.g. --device emu:rpi4")
    return board


class EmulatedDevice(LocalDevice):
    """An emulated Raspberry Pi (`emu:rpi4`, `emu:rpi5`): the cached arm64 root filesystem under QEMU user mode."""

    scheme = "emu"
    # `devices setup` options, as the refusal for another kind says them; --help says what they install
    setup_options: ClassVar[dict[str, str]] = {"with_python": "is for emu:* devices"}
    setup_instead: ClassVar[dict[str, str]] = {
        "with_executorch": "emu:* has no CPU torch for arm64 (PyPI's is a CUDA build): edgeship's native aarch64 "
                           "pte_runner runs .pte there, and needs no setup option"}
    emulated = True
    native_target = "aarch64"

    @classmethod
    def prepare(cls, uri: str, progress=None, rebuild: bool = False, with_python: bool = False) -> dict:
        """Build (once) and cache the arm64 root filesystem, with the guest's Python packages if asked for."""
        import time

        t0 = time.monotonic()
        parse_board(uri)
        path, built = rootfs_mod.ensure_rootfs(progress=progress, rebuild=rebuild)
        info(f"{'built' if built else 'cached'} arm64 root filesystem: {path} ({time.monotonic() - t0:.0f} s)")
        said = "built" if built else "cached"
        if with_python:
            side, installed = rootfs_mod.ensure_python_side(progress=progress)
            info(f"{'installed' if installed else 'cached'} Python side: {side}")
            said += f"; Python side {'installed' if installed else 'cached'}"
        report = cls(uri, rootfs=path).probe()
        report["setup"] = said
        return report

    def __init__(self, uri: str, rootfs: Path | None = None):
        self.board_id = parse_board(uri)
        self.board = BOARDS[self.board_id]
        self.uri = f"emu:{self.board_id}"
        base = rootfs or rootfs_mod.usable_rootfs()
        if base is None:
            raise DeviceUnreachable(f"the emulated arm64 root filesystem for {self.uri} is not set up",
                                    hint=f"run `edgeship devices setup {self.uri}` (about 5 minutes, once)")
        self.rootfs = board_root(base, self.board_id)
        self.qemu = shutil.which(rootfs_mod.QEMU)
        if self.qemu is None:
            raise DeviceUnreachable(f"{rootfs_mod.QEMU} is not installed, and {self.uri} runs under it",
                                    hint=rootfs_mod.APT_HINT)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgeship-emu-agent-")
        self.agent_dir = agent_package(Path(self._tmp.name))
        self._executorch: bool | None = None
        self.python_side = rootfs_mod.cached_python_side()  # None until installed (only the Python runtimes)

    def guest_command(self, module: str) -> list[str]:
        path = f"{self.agent_dir}:{self.python_side}" if self.python_side else str(self.agent_dir)
        return [self.qemu, "-L", str(self.rootfs), "-cpu", self.board.cpu, "-U", "PYTHONHOME",
                "-E", f"PYTHONPATH={path}", "-E", "PYTHONNOUSERSITE=1",
                str(self.rootfs / "usr/bin/python3"), "-m", f"edgeship_agent.{module}"]

    def ensure_python_side(self) -> None:
        """Install the guest's Python packages now if they are missing (raises SetupError)."""
        if self.python_side is None:
            info(f"{self.uri}: installing the Python side (numpy, ai-edge-litert, onnxruntime for aarch64), once; "
                 f"only the Python runtimes need it")
            self.python_side, _ = rootfs_mod.ensure_python_side()

    def agent_command(self) -> list[str]:
        return self.guest_command("agent")

    def native_command(self, runner) -> list[str]:
        return [self.qemu, "-L", str(self.rootfs), "-cpu", self.board.cpu, str(runner.binary)]

    def probe(self, timeout: float = 300.0) -> dict:
        """What the board has: the guest Python's probe (the standard library only; numpy and the
        runtimes when the Python side is installed), the native runners, and which formats run."""
        try:
            proc = subprocess.run(self.guest_command("probe"), capture_output=True, text=True, timeout=timeout,
                                  preexec_fn=die_with_parent())
        except subprocess.TimeoutExpired:
            raise DeviceUnreachable(f"{self.uri}: the probe did not finish in {timeout:.0f} s") from None
        result = parse_agent_stdout(proc.stdout)
        if result is None:
            raise DeviceUnreachable(f"{self.uri}: the probe failed: {describe_exit(proc.returncode, proc.stderr)}")
        result["board"] = self.board.name
        result["qemu_cpu"] = self.board.cpu
        result["board_cores"] = self.board.cores
        result["rootfs"] = str(self.rootfs)
        result["python_side"] = str(self.python_side) if self.python_side else None
        self._executorch = bool(result.get("executorch", {}).get("available"))
        if self.python_side is None and not (result.get("tflite") or {}).get("available"):
            result["tflite"] = {"available": False, "reason": f"no Python side ({self.python_hint()})"}
        result.update(native_probes(self))
        result["formats"] = formats(result, self.uri)
        return result

    def python_hint(self) -> str:
        return (f"needed only for --tflite-runtime python and Python's onnxruntime (.onnx without the native "
                f"runner): `edgeship devices setup {self.uri} --with-python`")

    def run_artifact(self, artifact, inputs, signature, **kw) -> AgentRun:
        if Path(artifact).suffix == ".tflite":  # the aarch64 LiteRT runner; the guest's Python if chosen
            run = self.run_native("litert", artifact, inputs, signature, **kw)
            if run is not None:
                return run
        if Path(artifact).suffix == ".pte":
            run = self.run_native("pte", artifact, inputs, signature, **kw)
            if run is not None:
                return run
            if self._executorch is None:
                self._executorch = self.python_side is not None and self._guest_imports("torch")
            if not self._executorch:
                return AgentRun(False, {"platform": {"machine": "aarch64"}}, error=EXECUTORCH_ON_AARCH64)
        if Path(artifact).suffix == ".onnx":  # the aarch64 ONNX Runtime runner; the guest's Python if chosen
            run = self.run_native("ort", artifact, inputs, signature, **kw)
            if run is not None:
                return run
        try:
            self.ensure_python_side()
        except rootfs_mod.SetupError as e:
            return AgentRun(False, {"platform": {"machine": "aarch64"}},
                            error=f"{Path(artifact).suffix} on {self.uri} needs the Python side, and installing it "
                                  f"failed: {e.message}")
        return self.run_agent(artifact, inputs, signature, **kw)

    def _guest_imports(self, module: str) -> bool:
        cmd = self.guest_command("probe")[:-2] + ["-c", f"import {module}"]
        return subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0


def formats(report: dict, uri: str) -> dict:
    """{'.tflite' | '.pte' | '.onnx': {'runs': bool, 'how': str}} for an emulated board's probe
    REPORT: the native runners first (no Python package needed), as runs use them."""
    out = {}
    side = report.get("python_side")
    setup = f"`edgeship devices setup {uri} --with-python`"
    for kind, spec in native_build.SPECS.items():
        ext, choice, name = spec.fmt, native_build.runtime_choice(kind), spec.title
        nat, py = report.get(spec.report_key) or {}, report.get(spec.python_key) or {}
        if choice == "native" and nat.get("available"):
            out[ext] = {"runs": True, "how": f"native {name} runner under QEMU (no Python package in the rootfs)"}
        elif ext == ".onnx" and side:
            out[ext] = {"runs": True, "how": f"onnxruntime (the Python side, {side})"}
        elif ext == ".onnx":
            out[ext] = {"runs": False, "how": f"needs onnxruntime, the Python side: {setup} (or the first .onnx run "
                                              f"installs it)" + (f"; the native runner: {nat.get('reason')}"
                                                                 if choice == "native" and nat.get("reason") else "")}
        elif py.get("available"):
            out[ext] = {"runs": True, "how": f"{py.get('runtime')} (the Python side, {side})"}
        elif ext == ".tflite" and not side:
            out[ext] = {"runs": False, "how": f"needs ai-edge-litert, the Python side: {setup} (or the first run "
                                              f"installs it)"}
        else:
            why = (nat.get("reason") if choice == "native" else None) or py.get("reason") or "no runtime"
            out[ext] = {"runs": False, "how": str(why)}
    return out
