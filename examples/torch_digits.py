"""A PyTorch model source for edgeship: `edgeship export examples/torch_digits.py:build ...`.

A factory returns an nn.Module, or (module, example_inputs) so edgeship knows the input shape.
This one trains a small CNN on scikit-learn's digits (8x8 images, NCHW) in a few seconds.
"""

import torch

from edgeship.demo_models import TORCH_INPUT, train_torch_cnn


def build():
    model, _accuracy = train_torch_cnn()
    return model, (torch.zeros(TORCH_INPUT),)
