"""What a device can run: `python3 -m edgeship_agent.probe` prints one JSON object. Standalone.

Pushed with the agent (standard library; numpy and a TFLite runtime when present). Reports the
architecture, CPU model, cores, Python, the TFLite runtime and whether XNNPACK takes a small
built-in model, whether ExecuTorch's runtime imports (and why not), free disk and memory.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import sys
import tempfile

# A 1,032-byte float TFLite model: relu(x @ W), x (1, 8) -> (1, 4). Written by TFLiteConverter
# from a tf.Module; XNNPACK takes its one FULLY_CONNECTED op wherever XNNPACK works.
PROBE_TFLITE = base64.b64decode("""
HAAAAFRGTDMUACAAHAAYABQAEAAMAAAACAAEABQAAAAcAAAAjAAAAOQAAAAoAgAAOAIAALQDAAADAAAAAQAAABAAAAAAAAoA
EAAMAAgABAAKAAAADAAAABwAAAA8AAAADwAAAHNlcnZpbmdfZGVmYXVsdAABAAAABAAAAJz///8CAAAABAAAAAgAAABvdXRw
dXRfMAAAAAABAAAABAAAAOb+//8EAAAAAQAAAHgAAAACAAAANAAAAAQAAADc////BQAAAAQAAAATAAAAQ09OVkVSU0lPTl9N
RVRBREFUQQAIAAwACAAEAAgAAAAEAAAABAAAABMAAABtaW5fcnVudGltZV92ZXJzaW9uAAYAAABAAQAAOAEAAKgAAACYAAAA
dAAAAAQAAABu////BAAAAGAAAAAQAAAAAAAAAAgADgAIAAQACAAAABAAAAAkAAAAAAAGAAgABAAGAAAABAAAAAAAAAAMABgA
FAAQAAwABAAMAAAAEtL7EMMpdGgDAAAAAgAAAAQAAAAGAAAAMi4yMS4wAADa////BAAAABAAAAAxLjUuMAAAAAAAAAAAAAAA
BAAGAAQAAAAAAAYACAAEAAYAAAAEAAAAgAAAAGy/AD6hIQm//ic0v07NFMCPVAu/l54DvtJJZz8KW+q+f0YHvv0iuT5V+aG/
7Apgvhjyob5G6K4/hYnAPdV6YT698iM/eemmP+qOH78Dep+/PcHSPjNKKr/4VT6/KzuBv9/V1j3mc3I/bkUpPeB1O78UcYU/
IfmzPjL2a78fMla+kP7//5T+//8PAAAATUxJUiBDb252ZXJ0ZWQuAAEAAAAUAAAAAAAOABgAFAAQAAwACAAEAA4AAAAUAAAA
HAAAAGwAAABwAAAAdAAAAAQAAABtYWluAAAAAAEAAAAUAAAAAAAOABYAAAAQAAwACwAEAA4AAAAYAAAAAAAACBgAAAAcAAAA
AAAGAAgABwAGAAAAAAAAAQEAAAACAAAAAwAAAAAAAAABAAAA/////wEAAAACAAAAAQAAAAAAAAADAAAAmAAAAEgAAAAEAAAA
iv///wAAAAEQAAAAEAAAAAMAAAAgAAAAdP///xEAAABQYXJ0aXRpb25lZENhbGw6MAAAAAIAAAABAAAABAAAAMr///8AAAAB
EAAAABAAAAACAAAAFAAAALT///8GAAAATWF0TXVsAAACAAAABAAAAAgAAAAAABYAGAAUAAAAEAAMAAgAAAAAAAAABwAWAAAA
AAAAARQAAAAUAAAAAQAAACQAAAAEAAQABAAAABMAAABzZXJ2aW5nX2RlZmF1bHRfeDowAAIAAAABAAAACAAAAAEAAAAQAAAA
DAAMAAsAAAAAAAQADAAAAAkAAAAAAAAJ
""")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    for key in ("model name", "Model", "Hardware"):
        if key in fields:
            return fields[key]
    part = fields.get("CPU part")
    if part:
        return f"{ARM_PARTS.get(part.lower(), 'Arm core')} (CPU part {part})"
    return None


ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78"}


def _meminfo() -> dict:
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("MemTotal", "MemAvailable"):
                    out[k] = int(v.split()[0]) / 1024.0
    except (OSError, ValueError):
        pass
    return {"mem_total_mb": out.get("MemTotal"), "mem_available_mb": out.get("MemAvailable")}


def _tflite() -> dict:
    try:
        import numpy as np
    except ImportError as e:
        return {"available": False, "reason": f"numpy is not installed ({e})"}
    try:
        from . import tflite
    except ImportError as e:
        return {"available": False, "reason": str(e)}
    fd, path = tempfile.mkstemp(suffix=".tflite")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(PROBE_TFLITE)
        runner = tflite.Runner(path)
        runner.run([np.ones((1, 8), np.float32)])
        return {"available": True, "runtime": runner.runtime, "numpy": np.__version__, "xnnpack": runner.delegate}
    except Exception as e:  # a runtime that cannot even run the probe model
        return {"available": False, "reason": f"{type(e).__name__}: {e}"}
    finally:
        os.unlink(path)


def _executorch() -> dict:
    try:
        import torch  # noqa: F401  (ExecuTorch's Python runtime links libtorch)
    except Exception as e:
        return {"available": False, "reason": f"torch does not import ({type(e).__name__}: {e}); ExecuTorch's "
                f"Python runtime links libtorch, and PyPI serves no CPU torch for {platform.machine()}"}
    try:
        from executorch.extension.pybindings import _C  # noqa: F401

        from .executorch import runtime_version
    except Exception as e:
        return {"available": False, "reason": f"executorch does not import ({type(e).__name__}: {e})"}
    return {"available": True, "runtime": runtime_version()}


def probe() -> dict:
    home = os.path.expanduser("~")
    disk = shutil.disk_usage(home if os.path.isdir(home) else "/")
    return {
        "ok": True,
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "kernel": platform.release(),
        "disk_free_mb": disk.free / 2**20,
        **_meminfo(),
        "tflite": _tflite(),
        "executorch": _executorch(),
    }


if __name__ == "__main__":
    sys.stdout.write("\n" + json.dumps(probe()) + "\n")
