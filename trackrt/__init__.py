"""trackrt: transformer track reconstruction from PyTorch training to TensorRT deployment."""

__version__ = "0.1.0"
