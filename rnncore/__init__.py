"""rnncore: fast CPU kernels for RNN, LSTM and GRU layers behind a
PyTorch-shaped NumPy API.

>>> import numpy as np, rnncore
>>> lstm = rnncore.LSTM(32, 64, num_layers=2, seed=0)
>>> y, (h_n, c_n) = lstm(np.zeros((10, 3, 32), np.float32))
>>> y.shape, h_n.shape
((10, 3, 64), (2, 3, 64))

Layout (imports point down only; tests/test_imports.py holds it):
``reference`` (the specification) <- ``engine`` (cells, checks, Ops,
runtime, stacking, layers, losses) <- ``optim``, ``lm``, ``interop`` <-
``seq2seq``, ``classify`` (the tasks) <- ``files`` <- ``distributed`` (Dask
jobs) <- ``tools`` (the command line; nothing imports it).
"""
from . import optim, reference
from ._version import __version__
from .engine.config import config, show_config
from .engine.layers import GRU, LSTM, RNN, Tape
from .engine.losses import softmax_cross_entropy
from .engine.runtime import backend, get_num_threads, set_num_threads
from .files import load, save
from .quantization import quantize
from .interop import from_keras, from_keras_weights, from_onnx, from_torch
from .lm import LanguageModel, Vocabulary, text
from .seq2seq import Seq2Seq
from .classify import SequenceClassifier

__all__ = ["RNN", "LSTM", "GRU", "Tape", "LanguageModel", "Vocabulary", "Seq2Seq",
           "SequenceClassifier", "optim", "reference",
           "from_torch", "from_keras", "from_keras_weights", "from_onnx", "save", "load",
           "softmax_cross_entropy", "quantize", "text", "backend", "config", "show_config", "set_num_threads",
           "get_num_threads", "__version__"]
