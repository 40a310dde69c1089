"""What the CUDA reference path needs, and what is missing when it cannot run.

The float reference (`export --reference-device cuda|auto`) runs on a GPU only with the CUDA build of
torch (constraints-cuda.txt: the same torch version as constraints.txt, from PyTorch's CUDA wheel
index; the README's "GPU set-up") on a machine whose GPU that build can see. `cuda_missing()` names
the missing part, for test skips and bench/reference_device.py's GPU column.
"""

from __future__ import annotations

SETUP_HINT = ("install the CUDA build of the pinned torch: pip install -c constraints.txt -c constraints-cuda.txt "
              "--extra-index-url https://download.pytorch.org/whl/cu130 -e '.[test]' (README: GPU set-up)")


def cuda_missing() -> str | None:
    """None when torch is a CUDA build and sees a GPU; else one line naming what is missing."""
    try:
        import torch
    except ImportError:
        return f"torch is not installed; {SETUP_HINT}"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None); {SETUP_HINT}"
    if not torch.cuda.is_available():
        return (f"no CUDA GPU is visible (torch {torch.__version__}, a CUDA {torch.version.cuda} build: "
                "torch.cuda.is_available() is False)")
    return None
