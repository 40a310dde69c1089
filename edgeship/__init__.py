"""edgeship: PyTorch and Keras models to TFLite (LiteRT), ExecuTorch and ONNX, quantized, and
proven on the host or a device to still compute what the float model computes.

The Python API (edgeship/api.py has the details):

    import edgeship
    bundle = edgeship.export(module, example_inputs=(x,), to=("tflite", "pte"), quant=("fp32", "int8"),
                             calib="digits:train", out="bundles/net")
    result = bundle.validate(device="local")
    edgeship.validate("bundles/net", device="emu:rpi4"); edgeship.cli.check("edgeship.toml")

Importing edgeship imports no framework (torch, TensorFlow, the runtimes): calls load what they need.
"""

from edgeship.version import __version__  # noqa: I001  (first: the modules below read it)
from edgeship.api import Bundle, ValidateResult, check, export, load, validate
from edgeship.errors import (ArtifactError, CheckFailed, ConversionError, DeviceError, EdgeshipError, InputError,
                             UnsupportedError)

__all__ = ["__version__", "export", "validate", "check", "load", "Bundle", "ValidateResult", "EdgeshipError",
           "InputError", "UnsupportedError", "ConversionError", "ArtifactError", "CheckFailed", "DeviceError"]
