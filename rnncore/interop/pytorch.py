"""PyTorch modules to and from rnncore layers: ``from_torch(module)`` and
``layer.to_torch()``. torch is imported lazily and only here; PyTorch's
parameter names, shapes and gate order are the library's own, so weights
copy unchanged.
"""
import numpy as np

from ..engine import cells
from ..engine.layers import LAYERS, RNNBase

__all__ = ["from_torch", "to_torch"]

_TORCH_KINDS = sorted({c.torch for c in cells.CELLS.values() if c.torch})


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised where torch is missing
        raise ImportError("this needs PyTorch (pip install torch); rnncore itself does not") from None
    return torch


def from_torch(module):
    """An rnncore layer with the configuration and weights of a
    ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (copied: later changes to either
    do not affect the other), ``proj_size`` included."""
    torch = _torch()
    kind = next((name for name in _TORCH_KINDS if type(module) is getattr(torch.nn, name)), None)
    if kind is None:
        raise TypeError("module must be a torch.nn.RNN, LSTM or GRU, got "
                        f"{type(module).__module__}.{type(module).__name__}")
    kw = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
              dropout=float(module.dropout), bidirectional=module.bidirectional)
    if kind == "RNN":
        kw["nonlinearity"] = module.nonlinearity
    if kind == "LSTM":
        kw["proj_size"] = module.proj_size
    layer = LAYERS[kind](module.input_size, module.hidden_size, **kw)
    layer.load_state_dict({k: v.detach().to("cpu", torch.float32).numpy()
                           for k, v in module.state_dict().items()})
    return layer


def to_torch(layer):
    """The ``torch.nn`` module (float32, CPU) with this layer's configuration
    and a copy of its weights."""
    if not isinstance(layer, RNNBase):
        raise TypeError(f"layer must be an rnncore RNN, LSTM or GRU, got {type(layer).__name__}")
    if layer.cell.torch is None:
        raise ValueError("torch.nn.GRU applies the reset gate after the recurrent product; "
                         "a GRU with reset_after=False has no PyTorch equivalent")
    if getattr(layer, "peephole", False) or getattr(layer, "input_forget", False):
        raise ValueError("torch.nn.LSTM has no peepholes or coupled input-forget gate")
    torch = _torch()
    kind = layer.cell.torch
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
              dropout=layer.dropout, bidirectional=layer.bidirectional)
    if kind == "RNN":
        kw["nonlinearity"] = layer.nonlinearity
    if layer.proj_size:
        kw["proj_size"] = layer.proj_size
    module = getattr(torch.nn, kind)(layer.input_size, layer.hidden_size, **kw)
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()})
    return module
