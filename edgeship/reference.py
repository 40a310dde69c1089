"""Where the float reference runs: `--reference-device auto|cpu|cuda`.

The reference run produces the golden outputs every artifact is compared with. It runs batched
(256 samples a call by default). PyTorch models run on CUDA when asked and present: the module
(or the .pt2's module) is copied to the GPU; TF32 is switched off for the run so the golden
outputs stay within float32 rounding of the CPU's. Keras models (.keras/.h5) run on CUDA through
Keras' torch backend in a child process (edgeship/reference_keras.py), as TensorFlow here is the
CPU build; on the CPU they run through TensorFlow in this process. SavedModels run through
TensorFlow on the CPU only: `cuda` for them is a clear error.
"""

from __future__ import annotations

import contextlib
import copy
import time

import numpy as np

from edgeship import reference_keras
from edgeship.console import info
from edgeship.data import has_batch_axis
from edgeship.errors import InputError, UnsupportedError, error_line, suggest
from edgeship.sources import batch_one, flatten_outputs

DEVICES = ("auto", "cpu", "cuda")
DEFAULT_BATCH = 256


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve(requested: str, model) -> str:
    """'auto' | 'cpu' | 'cuda' -> the device the reference runs on ('cpu' or 'cuda')."""
    if requested not in DEVICES:
        raise InputError(suggest(requested, DEVICES, "reference device"),
                         hint="pass --reference-device auto, cpu or cuda")
    if requested == "cpu":
        return "cpu"
    if model.kind == "savedmodel":
        if requested == "cuda":
            raise UnsupportedError(
                f"--reference-device cuda runs PyTorch and Keras (.keras/.h5) models; '{model.name}' is a "
                "SavedModel, whose reference runs through TensorFlow on the CPU",
                hint="pass --reference-device cpu (or auto), or export a .keras file",
            )
        info("reference run: CPU (SavedModel references run through TensorFlow on the CPU)")
        return "cpu"
    if cuda_available():
        return "cuda"
    if requested == "cuda":
        raise UnsupportedError(
            "--reference-device cuda: no CUDA device is available (torch.cuda.is_available() is False; "
            "this PyTorch build is " + _torch_build() + ")",
            hint="pass --reference-device auto to use a GPU when there is one and the CPU otherwise",
        )
    info("reference run: no CUDA device found, so the float reference runs on the CPU")
    return "cpu"


def run(model, ds, device: str = "cpu", batch: int = DEFAULT_BATCH) -> tuple[list[np.ndarray], dict]:
    """The model's outputs over `ds` on `device`, in batches; and the manifest's `reference` record."""
    if device == "cuda" and model.framework == "keras":
        outputs, child = reference_keras.run(model, ds, batch, device)
        record = {"device": device, "batch": batch, "samples": len(ds), "seconds": round(child["seconds"], 4),
                  "name": child.get("name"), "via": child["backend"]}
        model.reference_device = device
        return outputs, record
    fn = model.run if device == "cpu" else _cuda_runner(model)
    t0 = time.perf_counter()
    whole = not batchable(model, ds)
    with _exact_float32() if device == "cuda" else contextlib.nullcontext():
        parts = None
        if not whole:
            try:
                parts = [fn(ds.batch(i, i + batch)) for i in range(0, len(ds), batch)]
            except Exception:  # noqa: BLE001 - a forward that fixes batch 1 (view(1, ...)): one sample a call
                whole = True
        if whole:  # also a tensor taken whole (an RNN state, a time-first input)
            try:
                parts = [[_as_row(o) for o in fn(ds.sample(i))] for i in range(len(ds))]
            except Exception as e:
                raise InputError(f"the float model '{model.name}' failed on the data: {error_line(e)}",
                                 hint="check the input shapes (--input-shape) and dtypes the model expects; "
                                      "--verbose shows the traceback") from e
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    outputs = [np.concatenate(p).astype(np.float32) for p in zip(*parts)]
    record = {"device": device, "batch": 1 if whole else batch, "samples": len(ds), "seconds": round(seconds, 4)}
    if device == "cuda":
        import torch

        record["name"] = torch.cuda.get_device_name()
    model.reference_device = device
    return outputs, record


def batchable(model, ds) -> bool:
    """Rows can run as one batch only when every input and every output has a batch axis (first
    dimension 1); otherwise (an LSTM state (2, 1, 128) in or out) the reference runs per sample."""
    return ds.batchable and all(has_batch_axis(o.shape) for o in model.io.outputs)


def _as_row(y: np.ndarray) -> np.ndarray:
    """One sample's output as one row: (1, ...) stays, a whole tensor gets a new first axis."""
    y = np.asarray(y)
    return y if has_batch_axis(y.shape) else y[None]


def _cuda_runner(model):
    import torch


    module = model.obj.module() if model.kind == "torch-exported" else model.obj
    module = copy.deepcopy(module).to("cuda").eval()  # the CPU module stays as it is for the converters

    def run_batch(inputs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(x)).to("cuda") for x in inputs])
        return [t.detach().float().cpu().numpy() for t in flatten_outputs(out)]

    return batch_one(run_batch, [s.shape for s in model.io.inputs]) if model.kind == "torch-exported" else run_batch


@contextlib.contextmanager
def _exact_float32():
    """No TF32 in matmuls and convolutions: golden outputs are float32 results."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _torch_build() -> str:
    import torch

    return f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
