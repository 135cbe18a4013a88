"""Models from and to other frameworks: PyTorch modules, Keras weights, ONNX
export and import. Each framework is imported lazily, only by its module."""
from .keras import from_keras_weights
from .keras_model import from_keras
from .onnx_import import from_onnx
from .pytorch import from_torch, to_torch

__all__ = ["from_torch", "to_torch", "from_keras", "from_keras_weights", "from_onnx"]
