"""The model as edgeship sees it: framework, a callable reference, and its I/O spec.

Nothing here imports a framework at module level; loaders live in `edgeship.sources`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # static, batch included (batch 1 for exported artifacts)
    dtype: str = "float32"  # numpy dtype name
    layout: str | None = None  # "NCHW", "NHWC" or None when not an image tensor

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"), d.get("layout"))


@dataclass
class IOSpec:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict) -> "IOSpec":
        return cls([TensorSpec.from_dict(t) for t in d["inputs"]], [TensorSpec.from_dict(t) for t in d.get("outputs", [])])


def guess_layout(shape: tuple[int, ...]) -> str | None:
    """NCHW/NHWC for 4-d tensors whose channel axis is unambiguous (1, 3 or 4 channels)."""
    if len(shape) != 4:
        return None
    c_first, c_last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
    if c_first and not c_last:
        return "NCHW"
    if c_last and not c_first:
        return "NHWC"
    return None


@dataclass
class Model:
    """A loaded source model.

    kind: "torch-module" (obj: nn.Module), "torch-exported" (obj: ExportedProgram),
          "keras" (obj: keras.Model), "savedmodel" (obj: the loaded TF object).
    framework: "torch" or "keras" (SavedModels count as "keras": same TF toolchain).
    run: float reference, list of batched numpy inputs -> list of numpy outputs.
    """

    name: str
    framework: str
    kind: str
    source: str  # what the user passed, e.g. "model.py:build" or "net.keras"
    source_path: str  # the file or directory that holds it (hashed into the manifest)
    obj: Any
    io: IOSpec
    run: Callable[[list], list]
    example_inputs: list | None = None  # numpy arrays, batch 1
    reference_device: str = "cpu"
    loader: dict | None = None  # how a SavedModel was read when TF's object loader refused it (savedmodel_fallback.py)
