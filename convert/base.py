"""What a route is: (source framework, target format) -> a function that writes one artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from edgeship.errors import InputError, UnsupportedError


@dataclass
class ConvertOptions:
    int8_io: bool = False  # integer inputs/outputs for the int8 recipe (default: float I/O)
    verbose: bool = False
    # int8 recipe: layers left in float (accuracy-aware mode). Torch: module names ('fragile',
    # '0'); Keras: layer names. See edgeship.quantize.layer_error for what counts as a layer.
    float_layers: tuple[str, ...] = ()
    # int8/int16x8: activation calibration method (edgeship.quantize.calibration.METHODS);
    # None: the route's own default
    calibration: str | None = None


@dataclass
class ConvertResult:
    """What a route reports besides the file it wrote."""

    route: str  # e.g. "torch.export -> XNNPACK -> .pte"
    tools: dict[str, str]  # converter name -> version
    delegation: dict | None = None  # {"backend", "delegated_ops", "total_ops", "coverage", "fallback"}
    warnings: list[str] = field(default_factory=list)
    # Per-tensor quantization of integer I/O when the artifact itself does not carry it (pte):
    # {"inputs": [{"scale":..,"zero_point":..}|None,...], "outputs": [...]}
    io_quantization: dict | None = None


class ConvertFn(Protocol):
    def __call__(self, model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult: ...


@dataclass(frozen=True)
class Route:
    source: str  # "torch" | "keras"
    target: str  # "tflite" | "pte"
    recipes: tuple[str, ...]
    module: str  # module under edgeship.convert holding `convert`
    summary: str

    def require(self, recipe, calib=...) -> None:
        """Refuse a recipe this route does not take, or (when CALIB is given) one that needs
        calibration data without it."""
        if recipe.name not in self.recipes:
            raise UnsupportedError(f"recipe '{recipe.name}' is not available on {self.summary}; it has "
                                   f"{', '.join(self.recipes)}")
        if calib is not ... and recipe.needs_calibration and (calib is None or len(calib) == 0):
            raise InputError(f"recipe '{recipe.name}' needs calibration data", hint="pass --calib DATA")

    def load(self) -> Callable:
        import importlib

        return importlib.import_module(f"edgeship.convert.{self.module}").convert
