"""Keras -> ExecuTorch .pte, converted in a child process under Keras' torch backend.

Keras chooses its backend once per process, and edgeship's main process may already hold Keras
with TensorFlow (it loaded the model for the float reference). So `convert` writes a job folder
(the job, example inputs, calibration data) and runs `python -m edgeship.convert.keras_pte JOB`
with KERAS_BACKEND=torch. The child loads the .keras/.h5 file as a torch module, exports it with
torch.export, cleans the graph (convert/torch_passes.py) and lowers it with the torch route's
`export_pte`. It answers with result.json; its own output goes to a log, shown with --verbose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeship.convert.base import ConvertOptions, ConvertResult
from edgeship.errors import ConversionError, EdgeshipError, InputError, UnsupportedError

KERAS_SUFFIXES = (".keras", ".h5")
SOURCE_STEP = "Keras (torch backend) -> torch.export -> graph passes"


def convert(model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult:
    if model.kind == "savedmodel":
        raise UnsupportedError(
            "SavedModel -> pte is not supported: the Keras -> pte route re-loads the model with Keras' "
            "torch backend, which reads .keras (or .h5) files, not TensorFlow graphs",
            hint="save the model with model.save('model.keras') and export that, or use --to tflite",
        )
    path = Path(model.source_path)
    if model.kind != "keras" or path.suffix not in KERAS_SUFFIXES:
        raise UnsupportedError(
            f"the Keras -> pte route needs a .keras or .h5 file, got '{model.source_path}' ({model.kind})",
            hint="save the model with model.save('model.keras')",
        )
    with tempfile.TemporaryDirectory(prefix="edgeship-keras-pte-") as tmp:
        job_dir = Path(tmp)
        _write_job(job_dir, model, recipe, calib, Path(out_path), options)
        env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, "-m", "edgeship.convert.keras_pte", str(job_dir)]
        with open(job_dir / "child.log", "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log_text = (job_dir / "child.log").read_text(errors="replace")
        if options.verbose:
            sys.stderr.write(log_text)
        return _read_result(job_dir / "result.json", proc.returncode, log_text)


# ---------------------------------------------------------------------------------------------
# Parent side: job folder and answer


def _write_job(job_dir: Path, model, recipe, calib, out_path: Path, options: ConvertOptions) -> None:
    examples = model.example_inputs or [np.zeros(s.shape, s.dtype) for s in model.io.inputs]
    np.savez(job_dir / "examples.npz", **{f"input_{i}": a for i, a in enumerate(examples)})
    if calib is not None:
        np.savez(job_dir / "calib.npz", **{f"input_{i}": a for i, a in enumerate(calib.arrays)})
    job = {
        "model_path": str(Path(model.source_path).resolve()),
        "io": model.io.to_dict(),
        "recipe": recipe.name,
        "out_path": str(Path(out_path).resolve()),
        "int8_io": options.int8_io,
        "calib_name": None if calib is None else calib.name,
    }
    (job_dir / "job.json").write_text(json.dumps(job))


def _read_result(result_path: Path, returncode: int, log_text: str) -> ConvertResult:
    if not result_path.exists():
        lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
        how = f"died with signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        raise ConversionError(
            f"the Keras -> pte child process {how}" + (f": {lines[-1]}" if lines else ""),
            hint="run with --verbose to see its output",
        )
    answer = json.loads(result_path.read_text())
    if not answer["ok"]:
        cls = {"UnsupportedError": UnsupportedError, "InputError": InputError}.get(answer["type"], ConversionError)
        raise cls(answer["message"], hint=answer.get("hint"))
    return ConvertResult(**answer["result"])


# ---------------------------------------------------------------------------------------------
# Child side


def clean_keras_graph(gm) -> dict[str, int]:
    """The passes that make a Keras (torch backend) graph lower like a native PyTorch one."""
    from edgeship.convert import torch_passes as p

    return {
        "identity conversions removed": p.remove_identity_conversions(gm),
        "channels_last hints stripped": p.strip_channels_last_hints(gm),
        "constant layout ops folded": p.fold_constant_layout_ops(gm),
        "matmul+add -> linear": p.matmul_add_to_linear(gm),
    }


def _convert_in_child(job_dir: Path) -> ConvertResult:
    if os.environ.get("KERAS_BACKEND") != "torch":
        raise ConversionError("internal: the Keras -> pte child must run with KERAS_BACKEND=torch")
    import keras
    import torch

    from edgeship.convert.base import ConvertOptions as Options
    from edgeship.convert.torch_pte import _quiet, error_line, export_pte, to_tensors
    from edgeship.data import Dataset
    from edgeship.model import IOSpec
    from edgeship.quantize.recipes import get_recipe

    job = json.loads((job_dir / "job.json").read_text())
    io = IOSpec.from_dict(job["io"])
    with np.load(job_dir / "examples.npz") as z:
        examples = to_tensors([z[f"input_{i}"] for i in range(len(io.inputs))])
    calib = None
    if (job_dir / "calib.npz").exists():
        with np.load(job_dir / "calib.npz") as z:
            calib = Dataset(job["calib_name"], [z[f"input_{i}"] for i in range(len(io.inputs))], io.inputs)
    try:
        keras_model = keras.models.load_model(job["model_path"], compile=False)
    except Exception as e:
        raise ConversionError(f"Keras (torch backend) cannot load '{job['model_path']}': {error_line(e)}") from None
    try:
        with _quiet():
            exported = torch.export.export(_as_torch_module(keras_model, len(examples)), tuple(examples))
            graph = exported.module()
            changes = clean_keras_graph(graph)
            program = torch.export.export(graph, tuple(examples))
    except Exception as e:
        raise ConversionError(f"torch.export of the Keras model failed: {error_line(e)}") from None
    done = ", ".join(f"{k}: {v}" for k, v in changes.items() if v)
    print(f"graph passes: {done or 'nothing to change'}", flush=True)
    return export_pte(program, get_recipe(job["recipe"]), examples, calib, Path(job["out_path"]),
                      Options(int8_io=job["int8_io"]), source=SOURCE_STEP, tools={"keras": keras.__version__})


def _as_torch_module(keras_model, n_inputs: int):
    """Keras models are torch modules under the torch backend; this fixes the calling convention
    (one tensor, or a list for several inputs) and inference mode."""
    import torch

    class KerasInference(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.keras_model = keras_model

        def forward(self, *inputs):
            return self.keras_model(inputs[0] if n_inputs == 1 else list(inputs), training=False)

    return KerasInference().eval()


def main(argv: list[str] | None = None) -> int:
    import traceback

    job_dir = Path((argv or sys.argv[1:])[0])
    try:
        answer = {"ok": True, "result": asdict(_convert_in_child(job_dir))}
    except EdgeshipError as e:
        answer = {"ok": False, "type": type(e).__name__, "message": e.message, "hint": e.hint}
    except Exception as e:  # a bug or a converter's surprise: one line back, the traceback in the log
        from edgeship.convert.torch_pte import error_line

        traceback.print_exc()
        answer = {"ok": False, "type": "ConversionError", "message": f"{type(e).__name__}: {error_line(e)}"}
    (job_dir / "result.json").write_text(json.dumps(answer))
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
