"""Spotify's basic-pitch note transcriber (ICASSP 2022 model) as the TensorFlow SavedModel
shipped in the basic-pitch wheel: a Keras-2-era SavedModel whose object graph holds optimizer
slot variables, which TF 2.21's object loader rejects ("'_UserObject' object has no attribute
'add_slot'"). `build` returns the SavedModel folder unpacked from the cached wheel."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wheels  # noqa: E402

PREFIX = "basic_pitch/saved_models/icassp_2022/nmp/"


def build() -> str:
    return str(wheels.extract("basic-pitch", [], prefix=PREFIX) / PREFIX.rstrip("/"))
