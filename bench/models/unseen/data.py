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

def tcn_calib():
    r = _rng(11)
    t = np.arange(4000, dtype=np.float32) / 8000
    for _ in range(N):
        f0 = r.uniform(100, 600)
        w = sum(r.uniform(0.05, 0.3) * np.sin(2 * np.pi * f0 * k * t + r.uniform(0, 6.3)) for k in (1, 2, 3))
        yield (w * np.exp(-t * r.uniform(0, 4)) + 0.01 * r.standard_normal(4000)).astype(np.float32)[None]

def shufflenet_calib():
    r = _rng(12)
    for _ in range(N): yield _smooth_img(r, 3, 64, 64)

def mixer_calib():
    r = _rng(13)
    for _ in range(N): yield _smooth_img(r, 3, 64, 64)

def swin_calib():
    r = _rng(14)
    for _ in range(N): yield _smooth_img(r, 3, 32, 32)

def yolohead_calib():
    r = _rng(15)
    for _ in range(N): yield np.clip(_smooth_img(r, 3, 64, 64) * 0.25 + 0.5, 0, 1)

def deconv_calib():
    r = _rng(16)
    for _ in range(N): yield np.clip(_smooth_img(r, 3, 64, 64) * 0.5, -1, 1)

def kdeconv_calib():
    r = _rng(17)
    for _ in range(N): yield np.clip(_smooth_img(r, 3, 64, 64) * 0.5, -1, 1).transpose(1, 2, 0)

def ktextcausal_calib():
    r = _rng(18)
    for _ in range(N): yield r.integers(0, 1000, (64,)).astype(np.int32)

def kpreproc_calib():
    r = _rng(19)
    for _ in range(N): yield np.clip(_smooth_img(r, 3, 64, 64) * 50 + 128, 0, 255).round().transpose(1, 2, 0)

def kgrutd_calib():
    r = _rng(20)
    for _ in range(N): yield np.cumsum(r.standard_normal((50, 12)), 0).astype(np.float32) * 0.3
