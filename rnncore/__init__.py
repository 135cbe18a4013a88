"""rnncore: fast CPU kernels for RNN, LSTM and GRU layers behind a
PyTorch-shaped NumPy API.

>>> import numpy as np, rnncore
>>> lstm = rnncore.LSTM(32, 64, num_layers=2, seed=0)
>>> y, (h_n, c_n) = lstm(np.zeros((10, 3, 32), np.float32))
>>> y.shape, h_n.shape
((10, 3, 64), (2, 3, 64))
"""
from ._api import backend, get_num_threads, set_num_threads
from ._config import config, show_config
from . import optim
from .interop import from_keras_weights, from_torch
from .io import load, save
from .onnx_import import from_onnx
from .losses import softmax_cross_entropy
from .layers import GRU, LSTM, RNN, Tape
from .lm import LanguageModel
from .text import Vocabulary

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "Tape", "LanguageModel", "Vocabulary", "optim", "from_torch", "from_keras_weights", "save", "load", "from_onnx", "softmax_cross_entropy", "backend", "config", "show_config",
           "set_num_threads", "get_num_threads", "__version__"]
