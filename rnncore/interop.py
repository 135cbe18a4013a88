"""Weights from and to the frameworks people train in: PyTorch modules
(``from_torch``, ``layer.to_torch()``) and Keras weight lists
(``from_keras_weights``). torch is imported lazily and only here.
"""
import numpy as np

from . import _api
from .layers import GRU, LSTM, RNN, RNNBase

__all__ = ["from_torch", "to_torch", "from_keras_weights"]

_TORCH_KINDS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised where torch is missing
        raise ImportError("this needs PyTorch (pip install torch); rnncore itself does not") from None
    return torch


def from_torch(module):
    """An rnncore layer with the configuration and weights of a
    ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (copied: later changes to either
    do not affect the other). Modules with ``proj_size`` are not supported."""
    torch = _torch()
    kind = next((name for name in _TORCH_KINDS if type(module) is getattr(torch.nn, name)), None)
    if kind is None:
        raise TypeError("module must be a torch.nn.RNN, LSTM or GRU, got "
                        f"{type(module).__module__}.{type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError("LSTM with proj_size > 0 is not supported by rnncore")
    kw = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
              dropout=float(module.dropout), bidirectional=module.bidirectional)
    if kind == "RNN":
        kw["nonlinearity"] = module.nonlinearity
    layer = _TORCH_KINDS[kind](module.input_size, module.hidden_size, **kw)
    layer.load_state_dict({k: v.detach().to("cpu", torch.float32).numpy()
                           for k, v in module.state_dict().items()})
    return layer


def to_torch(layer):
    """The ``torch.nn`` module (float32, CPU) with this layer's configuration
    and a copy of its weights."""
    if not isinstance(layer, RNNBase):
        raise TypeError(f"layer must be an rnncore RNN, LSTM or GRU, got {type(layer).__name__}")
    if layer.mode == "GRU_RB":
        raise ValueError("torch.nn.GRU applies the reset gate after the recurrent product; "
                         "a GRU with reset_after=False has no PyTorch equivalent")
    if getattr(layer, "peephole", False) or getattr(layer, "input_forget", False):
        raise ValueError("torch.nn.LSTM has no peepholes or coupled input-forget gate")
    torch = _torch()
    kind = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(layer.mode, layer.mode)
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
              dropout=layer.dropout, bidirectional=layer.bidirectional)
    if kind == "RNN":
        kw["nonlinearity"] = layer.nonlinearity
    module = getattr(torch.nn, kind)(layer.input_size, layer.hidden_size, **kw)
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()})
    return module


# ------------------------------------------------------------ Keras

# Keras stores gates as column blocks of kernel [I, G*H] and recurrent_kernel
# [H, G*H]: LSTM i, f, c, o (= PyTorch's i, f, g, o); GRU z, r, h (PyTorch:
# r, z, n).
_KERAS_TO_TORCH = {"LSTM": [0, 1, 2, 3], "GRU": [1, 0, 2], "SimpleRNN": [0]}


def _blocks(a, order, H):
    """Rows of a [G*H, ...] array (or entries of [G*H]) reordered by gate."""
    return np.concatenate([a[g * H:(g + 1) * H] for g in order])


def from_keras_weights(kind, weights, *, reset_after=True, activation="tanh", batch_first=True):
    """An rnncore layer from the weights of a Keras ``LSTM``, ``GRU`` or
    ``SimpleRNN`` layer: ``weights`` is ``layer.get_weights()``, i.e.
    ``[kernel [I, G*H], recurrent_kernel [H, G*H], bias]`` (bias optional;
    ``[G*H]``, or ``[2, G*H]`` for GRU with ``reset_after=True``, the Keras
    default, whose second row is the recurrent bias). Keras layers are
    batch-first, so the result is too unless ``batch_first=False``.

    GRU with ``reset_after=False`` (the reset gate before the recurrent
    product) gives ``GRU(..., reset_after=False)``; its bias is ``[3H]``.
    SimpleRNN takes ``activation`` 'tanh' or 'relu'.
    """
    if kind not in _KERAS_TO_TORCH:
        raise ValueError(f"kind must be 'LSTM', 'GRU' or 'SimpleRNN', got {kind!r}")
    if not isinstance(weights, (list, tuple)) or len(weights) not in (2, 3):
        raise ValueError("weights must be [kernel, recurrent_kernel] or "
                         "[kernel, recurrent_kernel, bias] (Keras layer.get_weights())")
    kernel = _api.as_float32("kernel", weights[0])
    recurrent = _api.as_float32("recurrent_kernel", weights[1])
    G = len(_KERAS_TO_TORCH[kind])
    if kernel.ndim != 2 or recurrent.ndim != 2 or recurrent.shape[1] % G or \
            recurrent.shape[0] * G != recurrent.shape[1] or kernel.shape[1] != recurrent.shape[1]:
        raise ValueError(f"{kind}: kernel must be [I, {G}*H] and recurrent_kernel [H, {G}*H], "
                         f"got {kernel.shape} and {recurrent.shape}")
    H, I = recurrent.shape[0], kernel.shape[0]
    order = _KERAS_TO_TORCH[kind]
    bias = weights[2] if len(weights) == 3 else None
    b_ih = b_hh = None
    if bias is not None:
        bias = _api.as_float32("bias", bias)
        if kind == "GRU" and reset_after:
            if bias.shape != (2, G * H):
                raise ValueError(f"GRU bias (reset_after=True) must be [2, {G * H}], got {bias.shape}")
            b_ih, b_hh = bias[0], bias[1]
        else:
            if bias.shape != (G * H,):
                raise ValueError(f"{kind} bias must be [{G * H}], got {bias.shape}")
            b_ih, b_hh = bias, np.zeros_like(bias)
    if kind == "SimpleRNN":
        if activation not in ("tanh", "relu"):
            raise ValueError(f"SimpleRNN activation must be 'tanh' or 'relu', got {activation!r}")
        layer = RNN(I, H, nonlinearity=activation, bias=bias is not None, batch_first=batch_first)
    elif kind == "GRU":
        layer = GRU(I, H, bias=bias is not None, batch_first=batch_first, reset_after=reset_after)
    else:
        layer = LSTM(I, H, bias=bias is not None, batch_first=batch_first)
    sd = {"weight_ih_l0": _blocks(kernel.T, order, H), "weight_hh_l0": _blocks(recurrent.T, order, H)}
    if bias is not None:
        sd["bias_ih_l0"] = _blocks(b_ih, order, H)
        sd["bias_hh_l0"] = _blocks(b_hh, order, H)
    layer.load_state_dict(sd)
    return layer
