"""What a route is: (source framework, target format) -> a function that writes one artifact."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from edgeship.errors import EdgeshipError, InputError, UnsupportedError


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
    # fp32 converted with the graph structure of this recipe's (for per-layer comparison with that recipe's
    # artifact: a Keras model's recurrent layers unrolled as the int8 .tflite unrolls them); None: its own
    twin_of: str | None = None


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


# ---------------------------------------------------------------------------------------------
# A converter's error as one readable line

MESSAGE_LIMIT = 300
_PATH = re.compile(r"""(?<![\w.])(?:/[^\s'"():,;/]+)+/([^\s'"():,;/]+)""")
# bundle staging folders ('.out.partial-123', see edgeship.bundle) and temporary directories are
# gone by the time anyone reads the message
_DEAD = re.compile(r"\.partial-\d+(/|$)|(^|/)(tmp|var/tmp)/|edgeship-[\w-]+-\w+/")
_ORT_CODE = re.compile(r"\[ONNXRuntimeError\] : \d+ : (\w+) : ")
_ORT_NODE = re.compile(r"""In Node, \("([^"]*)", (\w+), [^)]*\) : \(.*?\) -> \(.*?\) ?, Error """)
# a C++ source location and the signature of the function that threw ('/onnxruntime_src/.../model.cc:256
# onnxruntime::Model::Model(onnx::ModelProto&&, const onnxruntime::PathString&, ...) ')
_CPP_WHERE = re.compile(r"(?:/[\w.+-]+)+\.(?:cc|cpp|cxx|h|hpp):\d+ (?:[\w:~<>]+\([^()]*\)(?: const)? )?")
_NOISE = re.compile(r"^(Traceback \(most recent call last\)|File \"|During handling of|The above exception|"
                    r"[\^~\s]+$)")


def converter_message(error: BaseException | str, limit: int = MESSAGE_LIMIT) -> str:
    """A converter's error as one line: its own words, without what makes them unreadable.

    - temporary paths (the system temp folder, a bundle's staging folder, edgeship's job folders)
      become their file name: the folder no longer exists when the message is read;
    - onnxruntime's '[ONNXRuntimeError] : 10 : INVALID_GRAPH : ' code prefix becomes
      'INVALID_GRAPH: ', and its node dump ('In Node, ("name", Erfc, "", -1) : (inputs) ->
      (outputs) , Error ') becomes 'node name (Erfc): ', and a C++ source location with the
      signature of the function that threw is dropped;
    - of several lines, the first that says something is kept (not a traceback frame, not a
      header ending in ':'), the others dropped;
    - at most LIMIT characters, cut at a word.
    An EdgeshipError gives its message; another exception 'Type: message'."""
    if isinstance(error, EdgeshipError):
        text = error.message
    elif isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}" if str(error).strip() else type(error).__name__
    else:
        text = str(error)
    temp = tempfile.gettempdir().rstrip("/") + "/"  # $TMPDIR, where it is not /tmp

    def dead(path: str) -> bool:
        return bool(_DEAD.search(path)) or path.startswith(temp)

    text = _PATH.sub(lambda m: m.group(1) if dead(m.group(0)) else m.group(0), text)
    text = _ORT_NODE.sub(lambda m: f"node {m.group(1)} ({m.group(2)}): ", _ORT_CODE.sub(r"\1: ", text))
    text = _CPP_WHERE.sub(" ", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _NOISE.match(ln.strip())]
    line = next((ln for ln in lines if not ln.endswith(":")), lines[0] if lines else "")
    line = re.sub(r"\s+", " ", line)
    if len(line) > limit:
        cut = line[:limit].rsplit(" ", 1)[0]
        line = (cut if len(cut) > limit // 2 else line[:limit]).rstrip(",;: ") + " ..."
    return line
