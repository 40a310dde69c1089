"""Small models with the inputs and outputs real models have, trained in about a second each on
scikit-learn's digits (real data; 1,797 labelled 8x8 images, pixel values 0..16):

- `time_first`: input `rows` (8, 8), an image as a sequence of 8 rows with time first and no batch
  axis; a per-row Linear + tanh, the mean over time, a Linear to 10 logits: output (10,).
- `tokens`: input `ids` (1, 64) int64, the 64 pixel values as token ids (vocabulary 17), an
  nn.Embedding + Linear classifier: output (1, 10).
- `dict_out`: input (1, 64) float; forward returns {"logits": (1, 10), "aux": ((1, 10) softmax,
  (1, 16) hidden)}: a dict holding a tuple.
- `lstm_cell`: a streaming LSTM cell with its state as an input and an output, laid the way
  nn.LSTM lays it: `x` (1, 8) one row of the image per step, `state` (2, 1, 16) = (h, c) stacked;
  outputs `logits` (1, 10) and the new `state` (2, 1, 16). It reads an image row by row and names
  the digit after the 8th row. The cell is written out as its equations (Linear, sigmoid, tanh).

Each factory returns (module, example_inputs), as `edgeship export tests/shape_models.py:NAME` takes.
`record_lstm_states` is the README's recipe: run the float model over each sequence and save every
step's x and state, named after the model's inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

VERSION = 1  # bump when a model or its training changes
TRAIN = 600  # digits used to train (the first 600)
HIDDEN = 16
ROWS = 8


def _digits(n: int | None = TRAIN):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x[:n].astype(np.float32), y[:n].astype(np.int64)


def _train(module, batches, steps: int, name: str, lr: float = 0.05):
    """Train once (seeded), then keep the weights in edgeship's cache: every export of the same
    factory loads the same trained weights without training again."""
    import torch

    cache = Path(os.environ.get("EDGESHIP_CACHE", Path.home() / ".cache" / "edgeship")) / "test_weights"
    path = cache / f"shape_models.{name}.v{VERSION}.pt"
    if path.exists():
        module.load_state_dict(torch.load(path, weights_only=True))
        return module.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = batches(module)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(module.state_dict(), tmp)
    os.replace(tmp, path)
    return module.eval()


def time_first():
    import torch
    from torch import nn

    torch.manual_seed(0)

    class TimeFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.row = nn.Linear(8, 32)
            self.head = nn.Linear(32, 10)

        def forward(self, rows):  # (..., 8 rows, 8): time first, no batch axis
            return self.head(torch.tanh(self.row(rows)).mean(-2))

    x, y = _digits()
    xs, ys = torch.from_numpy(x.reshape(-1, ROWS, 8) / 16.0), torch.from_numpy(y)
    net = _train(TimeFirst(), lambda m: nn.functional.cross_entropy(m(xs), ys), 80, "time_first")
    return net, torch.from_numpy(xs[0].numpy().copy())  # one sample: (8, 8)


def tokens():
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(17, 4)
            self.head = nn.Linear(64 * 4, 10)

        def forward(self, ids):
            return self.head(self.embed(ids).flatten(1))

    x, y = _digits()
    ids, ys = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)
    net = _train(Tokens(), lambda m: nn.functional.cross_entropy(m(ids), ys), 60, "tokens")
    return net, ids[:1].clone()


def dict_out():
    import torch
    from torch import nn

    torch.manual_seed(0)

    class DictOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(64, 16)
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            h = torch.relu(self.hidden(x))
            logits = self.head(h)
            return {"logits": logits, "aux": (torch.softmax(logits, -1), h)}

    x, y = _digits()
    xs, ys = torch.from_numpy(x / 16.0), torch.from_numpy(y)
    net = _train(DictOut(), lambda m: nn.functional.cross_entropy(m(xs)["logits"], ys), 60, "dict_out")
    return net, xs[:1].clone()


def lstm_cell():
    import torch
    from torch import nn

    torch.manual_seed(0)

    class LSTMCellModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.ih = nn.Linear(8, 4 * HIDDEN)
            self.hh = nn.Linear(HIDDEN, 4 * HIDDEN, bias=False)
            self.head = nn.Linear(HIDDEN, 10)

        def forward(self, x, state):  # x (B, 8); state (2, B, HIDDEN) = h, c
            h, c = state[0], state[1]
            i, f, g, o = (self.ih(x) + self.hh(h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return self.head(h), torch.stack([h, c])

    x, y = _digits()
    seq = torch.from_numpy(x.reshape(-1, ROWS, 8) / 16.0)
    ys = torch.from_numpy(y)

    def loss(m):
        state = torch.zeros(2, len(seq), HIDDEN)
        for t in range(ROWS):  # the batch rides on the state's second axis, as in nn.LSTM
            logits, state = m(seq[:, t], state)
        return nn.functional.cross_entropy(logits, ys)

    net = _train(LSTMCellModel(), loss, 80, "lstm_cell")
    return net, (seq[0, :1].clone(), torch.zeros(2, 1, HIDDEN))


def record_lstm_states(net, sequences: np.ndarray, path) -> int:
    """The README's recipe: run the float model over each sequence from a zero state and save
    every step's input and the state it met, as (N, *full_shape) arrays named after the inputs."""
    import torch

    xs, states = [], []
    with torch.no_grad():
        for seq in sequences:  # seq: (steps, 8)
            state = torch.zeros(2, 1, HIDDEN)
            for row in seq:
                x = torch.from_numpy(np.ascontiguousarray(row[None], np.float32))  # (1, 8)
                xs.append(x.numpy())
                states.append(state.numpy())
                _, state = net(x, state)
    np.savez(path, x=np.stack(xs), state=np.stack(states))  # x (N, 1, 8), state (N, 2, 1, 16)
    return len(xs)


def keras_time_first():
    """`time_first` as a Keras model (the same trained weights, copied): input `rows` with a fixed
    first dimension of 8 (keras.Input(batch_size=8)), so it is taken whole. Returns the .keras path."""
    cache = Path(os.environ.get("EDGESHIP_CACHE", Path.home() / ".cache" / "edgeship")) / "test_weights"
    path = cache / f"shape_models.v{VERSION}" / "keras_time_first.keras"
    if path.exists():
        return str(path)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    net, _ = time_first()
    rows = keras.Input(shape=(8,), batch_size=ROWS, name="rows")
    row = keras.layers.Dense(32, activation="tanh", name="row")
    head = keras.layers.Dense(10, name="head")
    h = keras.ops.mean(row(rows), axis=0, keepdims=True)  # (1, 32): the mean over time
    model = keras.Model(rows, head(h))
    row.set_weights([net.row.weight.detach().numpy().T, net.row.bias.detach().numpy()])
    head.set_weights([net.head.weight.detach().numpy().T, net.head.bias.detach().numpy()])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"tmp{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, path)
    return str(path)
