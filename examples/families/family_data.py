"""Real data for the model families (examples/families/), all available offline on this Debian host:

  language id   the translated messages of the GNU gettext catalogs in /usr/share/locale
                (*/LC_MESSAGES/*.mo: real translations of coreutils, tar, bash, ... by people), one
                string per sample, labelled by catalog language; English is the catalogs' msgids.
                Split by catalog (text domain): the held-out strings come from programs the model
                never read.
  keywords      eight words spoken by espeak-ng (Debian's `espeak-ng`): 7 English accents x 12 voice
                variants = 84 synthetic speakers, random speed and pitch. Split by speaker: the
                held-out clips are voices the model never heard. (Synthetic speech, not recordings.)
  digits        scikit-learn's 8x8 digits (1,797 scanned handwritten digits), upscaled for CNNs.

Every set is built deterministically (fixed seeds, sorted file lists) and cached as .npz in
~/.cache/edgeship/families/. The generator functions at the bottom take no arguments, so the CLI
can use them as --calib/--eval (`examples/families/family_data.py:langid_torch`); each yields
(input, label) pairs from the held-out split.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

CACHE = Path.home() / ".cache" / "edgeship" / "families"
SAMPLES = 64  # yielded per --calib/--eval source

# ---------------------------------------------------------------------------------------------
# Language identification from gettext catalogs

LANGS = ("en", "de", "fr", "es", "it", "nl", "pl", "sv")
SEQ = 48  # UTF-8 bytes per string (longer strings are cut, shorter padded with 0)
VOCAB = 257  # byte + 1; 0 is padding
LOCALE = Path("/usr/share/locale")


def _read_mo(path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a GNU .mo file (format: magic, revision, count, two offset tables)."""
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic == 0x950412DE else ">"
    n, orig, trans = struct.unpack(end + "3I", data[8:20])
    pairs = []
    for i in range(n):
        olen, ooff = struct.unpack(end + "2I", data[orig + 8 * i : orig + 8 * i + 8])
        tlen, toff = struct.unpack(end + "2I", data[trans + 8 * i : trans + 8 * i + 8])
        msgid, msgstr = data[ooff : ooff + olen], data[toff : toff + tlen]
        if not msgid or b"\x00" in msgid:  # the header, plural forms
            continue
        try:
            pairs.append((msgid.decode("utf-8"), msgstr.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return pairs


def _clean(s: str) -> str | None:
    s = " ".join(s.replace("\\n", " ").split())
    letters = sum(c.isalpha() for c in s)
    return s if len(s) >= 16 and letters >= 0.6 * len(s) else None


def encode(texts: list[str], seq: int = SEQ) -> np.ndarray:
    """UTF-8 bytes + 1, cut or zero-padded to seq: (n, seq) int64 token ids."""
    out = np.zeros((len(texts), seq), np.int64)
    for i, t in enumerate(texts):
        b = np.frombuffer(t.encode("utf-8")[:seq], np.uint8).astype(np.int64) + 1
        out[i, : len(b)] = b
    return out


def langid(per_lang: int = 1500, seed: int = 0) -> dict[str, np.ndarray]:
    """{'x_train','y_train','x_test','y_test'}: token ids and language index (LANGS order)."""
    path = CACHE / f"langid-{per_lang}-{seed}.npz"
    if path.exists():
        return dict(np.load(path))
    domains = sorted({p.stem for p in LOCALE.glob("*/LC_MESSAGES/*.mo")})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(domains, size=max(1, len(domains) // 5), replace=False))  # programs never read
    by_lang: dict[str, dict[str, set[str]]] = {lang: {"train": set(), "test": set()} for lang in LANGS}
    for lang in LANGS[1:]:
        for mo in sorted((LOCALE / lang / "LC_MESSAGES").glob("*.mo")):
            split = "test" if mo.stem in held else "train"
            for msgid, msgstr in _read_mo(mo):
                a, b = _clean(msgid), _clean(msgstr.split("\x00")[0])
                if a:
                    by_lang["en"][split].add(a)
                if b and b != a:
                    by_lang[lang][split].add(b)
    seen: dict[str, int] = {}
    for lang in LANGS:  # a string in two languages (untranslated, names) is no evidence of either
        for split in ("train", "test"):
            for s in by_lang[lang][split]:
                seen[s] = seen.get(s, 0) + 1
    arrays = {}
    for split, n in (("train", per_lang), ("test", per_lang // 4)):
        xs, ys = [], []
        for k, lang in enumerate(LANGS):
            pool = sorted(s for s in by_lang[lang][split] if seen[s] == 1)
            pick = rng.permutation(len(pool))[:n]
            xs += [pool[i] for i in pick]
            ys += [k] * len(pick)
        order = rng.permutation(len(xs))
        arrays[f"x_{split}"] = encode([xs[i] for i in order])
        arrays[f"y_{split}"] = np.array(ys, np.int64)[order]
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


# ---------------------------------------------------------------------------------------------
# Keyword spotting on espeak-ng speech

WORDS = ("yes", "no", "up", "down", "left", "right", "stop", "go")
ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
RATE, CLIP = 16000, 16000  # 1 s at 16 kHz


def _say(exe: str, voice: str, word: str, speed: int, pitch: int, tmp: Path) -> np.ndarray:
    from scipy.signal import resample_poly

    path = tmp / "w.wav"
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), word], check=True,
                   capture_output=True)
    with wave.open(str(path)) as w:
        src = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    g = np.gcd(RATE, src)
    return resample_poly(pcm, RATE // g, src // g).astype(np.float32)


def mel_filters(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-style mel filterbank (n_mels, 1 + n_fft // 2): linear below 1 kHz, logarithmic above,
    triangles normalised to equal area (librosa's default)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, step = min_log_hz / f_sp, np.log(6.4) / 27.0

    def to_mel(hz):
        hz = np.asarray(hz, np.float64)
        return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / step, hz / f_sp)

    def to_hz(mel):
        mel = np.asarray(mel, np.float64)
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(step * (mel - min_log_mel)), mel * f_sp)

    bins = np.linspace(0, rate / 2, 1 + n_fft // 2)
    edges = to_hz(np.linspace(to_mel(0), to_mel(rate / 2), n_mels + 2))
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    tri = np.maximum(0, np.minimum(rising, falling))
    return (tri * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def _place(wav: np.ndarray, rng) -> np.ndarray:
    """The spoken part (above 2% of the peak) at a random place in a 1 s clip, with faint noise."""
    loud = np.flatnonzero(np.abs(wav) > 0.02 * np.abs(wav).max())
    wav = wav[loud[0] : loud[-1] + 1][:CLIP]
    out = rng.normal(0, 1e-3, CLIP).astype(np.float32)
    start = int(rng.integers(0, CLIP - len(wav) + 1))
    out[start : start + len(wav)] += wav
    return out


def keywords(takes: int = 2, seed: int = 0, speakers: int | None = None) -> dict[str, np.ndarray]:
    """{'x_train','y_train','x_test','y_test'}: 1 s clips (n, 16000) and word index (WORDS order);
    the test speakers (accent x variant) are never in train. speakers: only the first N of the 84
    (in a fixed shuffled order; quick tests), a sixth of them held out."""
    path = CACHE / f"keywords-{takes}-{seed}{f'-{speakers}' if speakers else ''}.npz"
    if path.exists():
        return dict(np.load(path))
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    rng = np.random.default_rng(seed)
    everyone = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    if speakers:
        everyone = [everyone[i] for i in np.random.default_rng(seed + 1).permutation(len(everyone))[:speakers]]
    test = set(rng.choice(everyone, size=len(everyone) // 6, replace=False))
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    with tempfile.TemporaryDirectory() as tmp:
        for spk in everyone:
            split = "test" if spk in test else "train"
            for _ in range(takes if split == "train" else 1):
                for k, word in enumerate(WORDS):
                    wav = _say(exe, spk, word, int(rng.integers(130, 220)), int(rng.integers(30, 75)), Path(tmp))
                    xs[split].append(_place(wav, rng))
                    ys[split].append(k)
    arrays = {}
    for split in ("train", "test"):
        arrays[f"x_{split}"] = np.stack(xs[split])
        arrays[f"y_{split}"] = np.array(ys[split], np.int64)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


# ---------------------------------------------------------------------------------------------
# Digits


def digits(size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's digits upscaled (bilinear) to size x size x 3, 0..255, NHWC; 25% held out."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.stack([np.asarray(Image.fromarray((im * 255 / 16).astype(np.float32)).resize((size, size),
                                Image.BILINEAR)) for im in d.images])
    x = np.repeat(imgs[..., None], 3, axis=-1).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    n = int(len(x) * 0.75)
    tr, te = order[:n], order[n:]
    return {"x_train": x[tr], "y_train": d.target[tr].astype(np.int64), "x_test": x[te],
            "y_test": d.target[te].astype(np.int64)}


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# --calib / --eval sources: (input, label) pairs; *_calib from the training split, the others from the
# held-out split (what validate's golden samples and accuracy are measured on)


def _pairs(arrays, split: str, dtype=None):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    idx = np.random.default_rng(1).permutation(len(x))[:SAMPLES]
    for i in idx:
        yield (x[i].astype(dtype) if dtype else x[i]), y[i]


def langid_torch():
    yield from _pairs(langid(), "test")


def langid_torch_calib():
    yield from _pairs(langid(), "train")


def langid_keras():
    yield from _pairs(langid(), "test", np.int32)


def langid_keras_calib():
    yield from _pairs(langid(), "train", np.int32)


def keywords_torch():
    yield from _pairs(keywords(), "test")


def keywords_torch_calib():
    yield from _pairs(keywords(), "train")


def digits_keras():
    yield from _pairs(digits(), "test")


def digits_keras_calib():
    yield from _pairs(digits(), "train")


# ---------------------------------------------------------------------------------------------
# Trained weights, cached by family, epochs and data


def cached_torch_model(name: str, epochs: int, data: dict[str, np.ndarray], make, train):
    """A family's trained torch module: from CACHE/NAME-eEPOCHS-<data fingerprint>.pt (loaded into
    make()), else train() -> (module, held-out top-1) now, and cached."""
    import torch

    path = CACHE / f"{name}-e{epochs}-{fingerprint(data)}.pt"
    model = make()
    if path.exists():
        model.load_state_dict(torch.load(path)["state"])
        return model.eval()
    model, acc = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "test_top1": acc}, path)
    return model


def cached_keras_model(name: str, epochs: int, data: dict[str, np.ndarray], train) -> Path:
    """A family's trained Keras model as a .keras file: CACHE/NAME-eEPOCHS-<data fingerprint>.keras,
    trained now (train() -> (model, held-out top-1)) and saved with its top-1 beside it when missing."""
    path = CACHE / f"{name}-e{epochs}-{fingerprint(data)}.keras"
    if not path.exists():
        model, acc = train()
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        path.with_suffix(".top1").write_text(f"{acc:.1f}\n")
    return path
