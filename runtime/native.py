"""Run a .pte, .tflite or .onnx through edgeship's native runners (native_build.py) with the agent's protocol.

The runner is a child process under a timeout, like the Python agent: a crash or a hang fails the
artifact only. Inputs go in, and outputs come back, as raw tensor files (one per input/output,
N samples back to back); its JSON report becomes the agent's result keys (init_ms, first_ms,
latency from the same percentiles as timing.py, peak_rss_mb from VmHWM, runtime, delegate).

    run_native(runner_cmd, artifact, inputs, signature, workdir, ...) -> AgentRun

`runner_cmd` is how to start the binary: [path] on the host, [qemu, -L, rootfs, -cpu, ..., path]
on an emulated Pi. Remote devices (ssh) use `native_args`, `to_result` and `read_outputs` around
their own transport. `kind="litert"` runs a .tflite through litert_runner (libLiteRt.so's C API),
with the same files in and out; its inputs and outputs are reordered as the signature lists them
(`--want`, the Python runner's rule). `kind="ort"` runs a .onnx through ort_runner (libonnxruntime's
C API) the same way, and is told each input's sample shape (`--shape`) for the dimensions the
model leaves open.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from edgeship.runtime import native_build
from edgeship.runtime.base import AgentRun, describe_exit, parse_agent_stdout
from edgeship.runtime.native_build import NativeUnavailable, ensure_runner, kind_for
from edgeship.runtime.standalone import timing
from edgeship.runtime.standalone.executorch import check_pte_bytes

QUANTIZED = ("int8", "uint8", "int16")
TFLITE_IDENTIFIER = b"TFL3"


def kind_of(artifact) -> str:
    """'litert' for a .tflite, 'ort' for a .onnx (native_build.SPECS' formats), 'pte' for everything else."""
    return kind_for(artifact) or "pte"


def check_onnx_bytes(head: bytes, size: int, where: str) -> None:
    """The Python runner's check before loading: an empty file is named as such."""
    if size == 0:
        raise ValueError(f"{where} is empty (0 bytes), not an ONNX model")


def sample_shapes(inputs) -> list[list[int]]:
    """Each input's sample shape as the Python agent feeds it (a[i:i+1]): for open dimensions."""
    return [[1, *np.asarray(a).shape[1:]] for a in inputs]


def check_tflite_bytes(head: bytes, size: int, where: str) -> None:
    """The checks the Python runner makes before loading: a clear error instead of a runtime's."""
    if size == 0:
        raise ValueError(f"{where} is empty (0 bytes), not a TFLite model")
    if size < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"{where} is not a TFLite model (file identifier {head[4:8]!r}, expected "
                         f"{TFLITE_IDENTIFIER!r})")


def write_inputs(workdir: Path, inputs: list[np.ndarray]) -> list[tuple[Path, str]]:
    """Each input (N, ...) as one raw file; float inputs as float32 (the runner converts)."""
    files = []
    for i, a in enumerate(inputs):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(np.float32, copy=False)
        path = workdir / f"input_{i}.bin"
        np.ascontiguousarray(a).tofile(path)
        files.append((path, a.dtype.name))
    return files


def native_args(artifact: str, input_files: list[tuple[str, str]], out_dir: str, samples: int,
                signature: dict | None, *, threads=1, warmup=5, runs=50, max_seconds=30.0,
                etdump: str | None = None, kind: str = "pte", profile: str | None = None,
                shapes: list[list[int]] | None = None) -> list[str]:
    args = [str(artifact), "--samples", str(samples), "--out-dir", str(out_dir), "--threads", str(threads),
            "--warmup", str(warmup), "--runs", str(runs), "--max-seconds", f"{max_seconds:g}"]
    for path, dtype in input_files:
        args += ["--input", f"{path}:{dtype}"]
    for side, key in (("input", "inputs"), ("output", "outputs")):
        for i, entry in enumerate((signature or {}).get(key) or []):
            q = entry.get("quantization") if entry.get("dtype") in QUANTIZED else None
            if q and q.get("scale"):
                args += ["--quant", f"{side}:{i}:{float(q['scale']):.9g}:{int(q.get('zero_point', 0))}"]
    if etdump:
        args += ["--etdump", str(etdump)]
    if kind in ("litert", "ort"):  # the manifest's order over the file's: tensor name, else signature key
        for side, key in (("input", "inputs"), ("output", "outputs")):
            for i, entry in enumerate((signature or {}).get(key) or []):
                args += ["--want", side, str(i), str(entry.get("artifact_name") or ""), str(entry.get("name") or "")]
    if kind == "litert" and profile:
        args += ["--profile", str(profile)]
    if kind == "ort":
        for i, shape in enumerate(shapes or []):
            args += ["--shape", f"{i}:{','.join(str(int(d)) for d in shape)}"]
    return args


def to_result(report: dict, artifact) -> dict:
    """The runner's JSON as the agent's result dict."""
    keys = ("ok", "runtime", "delegate", "init_ms", "first_ms", "samples", "threads", "peak_rss_mb",
            "rss_before_load_mb", "stage", "error", "etdump", "profile", "profile_events")
    out = {k: report[k] for k in keys if k in report}
    out["artifact"] = os.path.basename(str(artifact))
    out["platform"] = dict(report.get("platform") or {}, runner="native")
    out["import_ms"] = 0.0  # no interpreter, no runtime import: the libraries load with the process
    if "samples_ms" in report:
        samples = [float(v) for v in report["samples_ms"]]
        latency = timing.summarize(samples)
        latency.update(warmup=report.get("warmup"), requested_runs=report.get("requested_runs"),
                       truncated=len(samples) < (report.get("requested_runs") or 0), samples_ms=samples)
        out["latency"] = latency
    if out.get("peak_rss_mb") is not None and out.get("rss_before_load_mb") is not None:
        out["model_rss_mb"] = max(0.0, out["peak_rss_mb"] - out["rss_before_load_mb"])
    if "inputs" in report:
        out["io"] = {"inputs": report["inputs"], "outputs": report.get("outputs", [])}
    return out


def read_outputs(report: dict, out_dir: Path, signature: dict | None) -> list[np.ndarray]:
    """output_K.bin -> float32 arrays (N*batch, ...), dequantized like the Python runner does."""
    sig = (signature or {}).get("outputs") or []
    n = int(report["samples"])
    arrays = []
    for k, spec in enumerate(report.get("outputs", [])):
        shape = [int(d) for d in spec["shape"]] or [1]
        y = np.fromfile(out_dir / f"output_{k}.bin", dtype=spec["dtype"])
        y = y.reshape([n * shape[0], *shape[1:]])
        q = spec.get("quantization") or (sig[k].get("quantization") if k < len(sig) else None)
        if q and spec["dtype"] in QUANTIZED:
            y = ((y.astype(np.float32) - q.get("zero_point", 0)) * q["scale"]).astype(np.float32)
        elif y.dtype.kind == "f":
            y = y.astype(np.float32)
        arrays.append(y)
    return arrays


def finish(proc_returncode: int, stdout: str, stderr: str, artifact, out_dir: Path,
           signature: dict | None) -> AgentRun:
    """The AgentRun for a finished runner process: its report, or why it died."""
    report = parse_agent_stdout(stdout)
    if report is None:
        return AgentRun(False, {"platform": {"runner": "native"}}, error=describe_exit(proc_returncode, stderr))
    result = to_result(report, artifact)
    if not report.get("ok"):
        return AgentRun(False, result, error=f"{report.get('stage', 'run')}: {report.get('error')}")
    try:
        outputs = read_outputs(report, out_dir, signature)
    except (OSError, ValueError) as e:
        return AgentRun(False, result, error=f"read outputs: {e}")
    return AgentRun(True, result, outputs)


def run_native(runner_cmd: list[str], artifact, inputs: list[np.ndarray], signature: dict | None, workdir: Path, *,
               threads=1, warmup=5, runs=50, timeout=300.0, env: dict | None = None,
               etdump: str | None = None, profile: str | None = None) -> AgentRun:
    workdir = Path(workdir)
    kind = kind_of(artifact)
    try:  # a FIFO or device file is left to the child (and its timeout): reading it here could block
        if Path(artifact).is_file() and kind == "litert":
            with open(artifact, "rb") as f:
                check_tflite_bytes(f.read(8), Path(artifact).stat().st_size, f"'{artifact}'")
        elif Path(artifact).is_file() and kind == "ort":
            check_onnx_bytes(b"", Path(artifact).stat().st_size, f"'{artifact}'")
        elif Path(artifact).is_file():
            check_pte_bytes(Path(artifact).read_bytes(), str(artifact))
    except (OSError, ValueError) as e:
        return AgentRun(False, {"platform": {"runner": "native"}}, error=f"load: {type(e).__name__}: {e}")
    files = write_inputs(workdir, inputs)
    out_dir = workdir / "out"
    out_dir.mkdir(exist_ok=True)
    n = int(np.asarray(inputs[0]).shape[0])
    args = native_args(str(Path(artifact).resolve()), [(str(p), d) for p, d in files], str(out_dir), n, signature,
                       threads=threads, warmup=warmup, runs=runs, max_seconds=max(1.0, timeout / 4), etdump=etdump,
                       kind=kind, profile=profile, shapes=sample_shapes(inputs))
    try:
        proc = subprocess.run(runner_cmd + args, capture_output=True, text=True, timeout=timeout,
                              env=env, stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        return AgentRun(False, {"platform": {"runner": "native"}},
                        error=f"timed out after {timeout:.0f} s (the native runner hung or is too slow)")
    return finish(proc.returncode, proc.stdout, proc.stderr, artifact, out_dir, signature)


def probe_native(runner_cmd: list[str] | None, reason: str | None = None, timeout: float = 120.0) -> dict:
    """What `devices doctor` shows for the native runner: {available, runtime, backends, xnnpack} or
    {available: False, reason}. `runner_cmd` None: it cannot be built (`reason` says why)."""
    if runner_cmd is None:
        return {"available": False, "reason": reason or "not built"}
    try:
        proc = subprocess.run(runner_cmd + ["--probe"], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"the native runner did not answer in {timeout:.0f} s"}
    report = parse_agent_stdout(proc.stdout)
    if not report or not report.get("ok"):
        return {"available": False, "reason": describe_exit(proc.returncode, proc.stderr)}
    return available(report)


# what each runtime registers when its CPU path is there: XNNPACK for ExecuTorch and LiteRT, onnxruntime's
# own CPU execution provider (no XNNPACK in the wheel's build)
CPU_BACKENDS = {"executorch": "XnnpackBackend", "litert": "CpuAccelerator", "onnxruntime": "CPUExecutionProvider"}


def available(report: dict, **extra) -> dict:
    """A runner's --probe REPORT (ok) as doctor shows it; EXTRA keys added (an ssh device's location)."""
    backends = report.get("backends") or []
    runtime = str(report.get("runtime"))
    name = next((b for prefix, b in CPU_BACKENDS.items() if runtime.startswith(prefix)), "CpuAccelerator")
    out = {"available": True, "runtime": report.get("runtime"), "backends": backends, **extra,
           "machine": (report.get("platform") or {}).get("machine")}
    if name == "CPUExecutionProvider":
        out["cpu"] = {"active": name in backends,
                      "detail": f"{name} registered" if name in backends else f"{name} not registered"}
    else:
        out["xnnpack"] = {"active": name in backends,
                          "detail": f"{name} registered" if name in backends else f"{name} not registered"}
    return out


def native_probe_for(device, kind: str = "pte") -> dict:
    """probe_native for a LocalDevice-like device (its native_target and native_command); KIND
    'litert' probes the native LiteRT runner (its CPU accelerator is XNNPACK)."""
    try:
        runner = ensure_runner(device.native_target, kind)
    except NativeUnavailable as e:
        return probe_native(None, e.message)
    return probe_native(device.native_command(runner))


def native_probes(device) -> dict:
    """{report key: native_probe_for(DEVICE, kind)} for every native runner (native_build.SPECS): the native
    rows of a LocalDevice-like device's probe report."""
    return {spec.report_key: native_probe_for(device, kind) for kind, spec in native_build.SPECS.items()}


def native_row(n: dict) -> str:
    """The doctor table's 'ExecuTorch (native)', 'LiteRT (native)' or 'ONNX Runtime (native)' cell (rich markup)."""
    from rich.markup import escape

    if not n.get("available"):
        return f"[red]unavailable[/]: {escape(str(n.get('reason')))}"
    if "cpu" in n:  # onnxruntime: its own CPU execution provider
        c = n["cpu"]
        return (f"[green]{escape(str(n.get('runtime')))}[/] ({n.get('machine')}; no Python); "
                + ("[green]CPU execution provider[/]" if c.get("active") else "[red]no CPU execution provider[/]"))
    x = n.get("xnnpack") or {}
    needs_none = "no torch" if str(n.get("runtime")).startswith("executorch") else "no Python"
    return (f"[green]{escape(str(n.get('runtime')))}[/] ({n.get('machine')}; {needs_none}); XNNPACK "
            + ("[green]active[/]" if x.get("active") else "[red]not active[/]") + f": {escape(x.get('detail', ''))}")
