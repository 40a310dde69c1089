"""edgeship: PyTorch and Keras models to TFLite (LiteRT), ExecuTorch and ONNX, quantized, and
proven on the host or a device to still compute what the float model computes.

The Python API (edgeship/api.py has the details):

    import edgeship
    bundle = edgeship.export(module, example_inputs=(x,), to=("tflite", "pte"), quant=("fp32", "int8"),
                             calib="digits:train", out="bundles/net")
    result = bundle.validate(device="local")
    edgeship.validate("bundles/net", device="emu:rpi4"); edgeship.check("edgeship.toml")

Importing edgeship imports no framework (torch, TensorFlow, the runtimes), and not even the API
until a name of it is used: the device agent runs as `python -m edgeship.runtime.standalone.agent`,
and its start-up time and memory are what validate measures.
"""

from edgeship.version import __version__

_API = ("export", "validate", "check", "load", "Bundle", "ValidateResult")
_ERRORS = ("EdgeshipError", "InputError", "UnsupportedError", "ConversionError", "ArtifactError", "CheckFailed",
           "DeviceError")
__all__ = ["__version__", *_API, *_ERRORS]


def __getattr__(name: str):
    if name in _API:
        from edgeship import api

        return getattr(api, name)
    if name in _ERRORS:
        from edgeship import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'edgeship' has no attribute '{name}'")
