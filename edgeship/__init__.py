"""edgeship: PyTorch and Keras models to TFLite and ExecuTorch, quantized and validated."""

__version__ = "0.1.0"
