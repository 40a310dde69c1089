"""A Keras model's float reference through Keras' torch backend, in a child process.

Keras picks its backend once per process, and edgeship's process holds Keras with TensorFlow
(tensorflow-cpu: no GPU). For `--reference-device cuda`, `run` writes the inputs to a job folder
and runs `python -m edgeship.reference_keras JOB` with KERAS_BACKEND=torch: the child loads the
.keras/.h5 file, which Keras' torch backend places on CUDA when torch sees a GPU, runs it in
batches with TF32 off, and writes the outputs and its timing back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeship.children import die_with_parent
from edgeship.errors import ConversionError


def run(model, ds, batch: int, device: str) -> tuple[list[np.ndarray], dict]:
    """(outputs, {"seconds", "device", "name"?}) of the child's batched run over `ds`."""
    with tempfile.TemporaryDirectory(prefix="edgeship-keras-reference-") as tmp:
        job = Path(tmp)
        np.savez(job / "inputs.npz", **{f"input_{i}": a for i, a in enumerate(ds.arrays)})
        (job / "job.json").write_text(json.dumps({"model_path": str(Path(model.source_path).resolve()),
                                                  "batch": batch, "device": device}))
        env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        proc = subprocess.run([sys.executable, "-m", "edgeship.reference_keras", str(job)], env=env,
                              capture_output=True, text=True, preexec_fn=die_with_parent())
        result_path = job / "result.json"
        if not result_path.exists():
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            raise ConversionError(f"the Keras (torch backend) reference run failed: {last}",
                                  hint="pass --reference-device cpu to run the reference through TensorFlow")
        result = json.loads(result_path.read_text())
        with np.load(job / "outputs.npz") as z:
            outputs = [z[f"output_{i}"].astype(np.float32) for i in range(len(z.files))]
    return outputs, result


def _child(job: Path) -> None:
    import time

    import keras
    import torch

    spec = json.loads((job / "job.json").read_text())
    if spec["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device in the Keras reference child")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model = keras.models.load_model(spec["model_path"], compile=False)
    with np.load(job / "inputs.npz") as z:
        inputs = [z[f"input_{i}"] for i in range(len(z.files))]
    n, batch = len(inputs[0]), spec["batch"]
    parts = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, batch):
            xs = [x[i : i + batch] for x in inputs]
            out = model(xs[0] if len(xs) == 1 else xs, training=False)
            parts.append([keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(out)])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    np.savez(job / "outputs.npz", **{f"output_{k}": np.concatenate(p) for k, p in enumerate(zip(*parts))})
    result = {"seconds": seconds, "device": "cuda" if torch.cuda.is_available() else "cpu",
              "backend": f"keras {keras.__version__} (torch {torch.__version__})"}
    if result["device"] == "cuda":
        result["name"] = torch.cuda.get_device_name()
    (job / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
