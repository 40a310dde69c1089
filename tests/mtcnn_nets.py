"""MTCNN's PNet/RNet/ONet with their real trained weights, as torch modules and as Keras models.

The weights ship inside the `mtcnn` wheel (mtcnn/assets/weights/{pnet,rnet,onet}.lz4, joblib +
lz4), Keras layout. The wheel is fetched once with `pip download --no-deps` into
~/.cache/edgeship/wheels/ and read from there; it is never installed. The torch modules follow
facenet-pytorch's layout: PReLU after every conv, and `x.permute(0, 3, 2, 1).contiguous()
.view(n, -1)` before the first Linear, which equals Keras' Permute((2, 1, 3)) + Flatten on NHWC.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

try:
    import torch
except ImportError:  # the Keras nets need no torch
    torch = None

WHEELS = Path.home() / ".cache" / "edgeship" / "wheels"
INPUT_SIZE = {"pnet": 12, "rnet": 24, "onet": 48}


def wheel_path() -> Path:
    """The wheel, downloaded once. Under a lock: parallel test workers (pytest-xdist) share the cache,
    and one must not read a wheel another is still writing."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    with open(WHEELS / ".mtcnn.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(WHEELS.glob("mtcnn-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(WHEELS), "mtcnn"],
                           check=True)
            found = sorted(WHEELS.glob("mtcnn-*.whl"))
    return found[-1]


def weights(name: str) -> list[np.ndarray]:
    """The Keras weight list of 'pnet', 'rnet' or 'onet' (needs joblib and lz4)."""
    import joblib

    cache = WHEELS / "extracted" / f"{name}.lz4"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel_path()) as z:  # written whole, then renamed: another worker never reads half
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(z.read(f"mtcnn/assets/weights/{name}.lz4"))
            os.replace(tmp, cache)
    return [np.asarray(w, np.float32) for w in joblib.load(cache)]


def example(name: str, layout: str = "NCHW", seed: int = 0) -> np.ndarray:
    """A face-crop-sized input in [-1, 1] (MTCNN's normalisation)."""
    s = INPUT_SIZE[name]
    x = np.random.default_rng(seed).uniform(-1, 1, (1, s, s, 3)).astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "NCHW" else x


# ---------------------------------------------------------------------------------------------
# torch


def torch_net(name: str):
    """PNet, RNet or ONet as an nn.Module (NCHW input) with the wheel's weights."""
    import torch
    from torch import nn

    spec = {  # (conv out channels, kernel, pool after it: (kernel, stride, ceil) or None)
        "pnet": [(10, 3, (2, 2, True)), (16, 3, None), (32, 3, None)],
        "rnet": [(28, 3, (3, 2, True)), (48, 3, (3, 2, False)), (64, 2, None)],
        "onet": [(32, 3, (3, 2, True)), (64, 3, (3, 2, False)), (64, 3, (2, 2, True)), (128, 2, None)],
    }[name]
    heads = {"pnet": [4, 2], "rnet": [4, 2], "onet": [4, 10, 2]}[name]
    hidden = {"rnet": 128, "onet": 256}.get(name)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], 3
            for out, k, pool in spec:
                layers += [nn.Conv2d(c, out, k), nn.PReLU(out)]
                if pool:
                    layers.append(nn.MaxPool2d(pool[0], pool[1], ceil_mode=pool[2]))
                c = out
            self.body = nn.Sequential(*layers)
            if hidden is None:  # fully convolutional
                self.heads = nn.ModuleList([nn.Conv2d(c, h, 1) for h in heads])
            else:
                side = {"rnet": 3, "onet": 3}[name]
                self.fc = nn.Linear(c * side * side, hidden)
                self.prelu = nn.PReLU(hidden)
                self.heads = nn.ModuleList([nn.Linear(hidden, h) for h in heads])

        def forward(self, x):
            x = self.body(x)
            if hidden is None:
                box, prob = (h(x) for h in self.heads)
                return box, torch.softmax(prob, dim=1)
            n = x.shape[0]
            x = x.permute(0, 3, 2, 1).contiguous().view(n, -1)
            x = self.prelu(self.fc(x))
            outs = [h(x) for h in self.heads]
            outs[-1] = torch.softmax(outs[-1], dim=1)
            return tuple(outs)

    net = Net().eval()
    w = iter(weights(name))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.from_numpy(next(w).transpose(3, 2, 0, 1)))
                m.bias.copy_(torch.from_numpy(next(w)))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.from_numpy(next(w).T))
                m.bias.copy_(torch.from_numpy(next(w)))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.from_numpy(next(w).reshape(-1)))
    # the Keras order is conv, prelu, conv, prelu, ..., dense, prelu, heads: modules() walks body
    # then fc, prelu, heads (registered in that order), which is the same order
    assert next(w, None) is None
    return net.requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Keras


def keras_net(name: str):
    """The same net as a Functional Keras model (NHWC input), built with the wheel's own layer
    layout (Conv2D + PReLU(shared_axes=[1, 2]), Permute((2, 1, 3)) + Flatten + Dense)."""
    import keras
    from keras import layers as L

    s = INPUT_SIZE[name]
    inp = keras.Input((s, s, 3), batch_size=1, name="image")
    spec = {
        "pnet": [(10, 3, (2, "same")), (16, 3, None), (32, 3, None)],
        "rnet": [(28, 3, (3, "same")), (48, 3, (3, "valid")), (64, 2, None)],
        "onet": [(32, 3, (3, "same")), (64, 3, (3, "valid")), (64, 3, (2, "same")), (128, 2, None)],
    }[name]
    x = inp
    for i, (out, k, pool) in enumerate(spec, 1):
        x = L.Conv2D(out, k, name=f"conv{i}")(x)
        x = L.PReLU(shared_axes=[1, 2], name=f"prelu{i}")(x)
        if pool:
            x = L.MaxPooling2D(pool[0], 2, padding=pool[1], name=f"pool{i}")(x)
    if name == "pnet":
        outs = [L.Conv2D(4, 1, name="box")(x), L.Conv2D(2, 1, activation="softmax", name="prob")(x)]
    else:
        x = L.Permute((2, 1, 3), name="permute")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense({"rnet": 128, "onet": 256}[name], name="fc")(x)
        x = L.PReLU(name="prelu_fc")(x)
        heads = [4, 10, 2] if name == "onet" else [4, 2]
        outs = [L.Dense(h, activation="softmax" if j == len(heads) - 1 else None, name=f"head{j}")(x)
                for j, h in enumerate(heads)]
    model = keras.Model(inp, outs, name=name)
    model.set_weights(weights(name))
    return model
