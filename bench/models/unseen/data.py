import numpy as np
N = 48

def _rng(s): return np.random.default_rng(s)

def _smooth_img(r, c, h, w):
    # low-frequency image-like data
    base = r.standard_normal((c, h // 8, w // 8)).astype(np.float32)
    return np.kron(base, np.ones((1, 8, 8), np.float32)) + 0.1 * r.standard_normal((c, h, w)).astype(np.float32)

def unet_calib():
    r = _rng(1)
    for _ in range(N): yield _smooth_img(r, 3, 64, 64)

def convnext_calib():
    r = _rng(2)
    for _ in range(N): yield _smooth_img(r, 3, 64, 64)

def superres_calib():
    r = _rng(3)
    for _ in range(N): yield np.clip(_smooth_img(r, 1, 64, 64) * 0.3 + 0.5, 0, 1)

def gpt_calib():
    r = _rng(4)
    for _ in range(N): yield r.integers(0, 100, (32,)).astype(np.int64)

def twoio_calib():
    r = _rng(5)
    for _ in range(N): yield (_smooth_img(r, 3, 48, 48), r.standard_normal(6).astype(np.float32))

def crnn_calib():
    r = _rng(6)
    for _ in range(N): yield (np.log(r.gamma(1.0, 1.0, (1, 40, 100)) + 1e-3)).astype(np.float32)

def l2norm_calib():
    r = _rng(7)
    for _ in range(N): yield _smooth_img(r, 3, 96, 96)

def kconv1d_calib():
    r = _rng(8)
    for _ in range(N): yield r.integers(0, 500, (40,)).astype(np.int32)

def klstm_calib():
    r = _rng(9)
    for _ in range(N): yield np.cumsum(r.standard_normal((30, 8)), 0).astype(np.float32) * 0.3

def kcnn_calib():
    r = _rng(10)
    for _ in range(N): yield _smooth_img(r, 3, 64, 64).transpose(1, 2, 0)
