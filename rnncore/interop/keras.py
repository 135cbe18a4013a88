"""Keras layers' weights to rnncore layers: ``from_keras_weights(kind,
layer.get_weights())`` for ``LSTM``, ``GRU`` (either reset placement) and
``SimpleRNN``. Keras stores gates as column blocks of kernel [I, G*H] and
recurrent_kernel [H, G*H] in its own order (rnncore.engine.cells:
keras_order); Keras itself is never imported.
"""
import numpy as np

from ..engine import cells
from ..engine.checks import as_float32, check_bool
from ..engine.layers import make_layer
from .gates import reorder_gates

__all__ = ["from_keras_weights"]


def _cell(kind, reset_after, activation):
    """The Cell a Keras layer class with these options is."""
    options = {"SimpleRNN": {"activation": activation},
               "GRU": {"reset_after": check_bool("reset_after", reset_after)}, "LSTM": {}}[kind]
    for c in cells.CELLS.values():
        if c.keras == kind and all(options[k] == v for k, v in c.keras_options):
            return c
    raise ValueError(f"SimpleRNN activation must be 'tanh' or 'relu', got {activation!r}")


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
    if kind not in ("LSTM", "GRU", "SimpleRNN"):
        raise ValueError(f"kind must be 'LSTM', 'GRU' or 'SimpleRNN', got {kind!r}")
    if not isinstance(weights, (list, tuple)) or len(weights) not in (2, 3):
        raise ValueError("weights must be [kernel, recurrent_kernel] or "
                         "[kernel, recurrent_kernel, bias] (Keras layer.get_weights())")
    kernel = as_float32("kernel", weights[0])
    recurrent = as_float32("recurrent_kernel", weights[1])
    cell = _cell(kind, reset_after, activation)
    G = cell.gates
    if kernel.ndim != 2 or recurrent.ndim != 2 or recurrent.shape[1] % G or \
            recurrent.shape[0] * G != recurrent.shape[1] or kernel.shape[1] != recurrent.shape[1]:
        raise ValueError(f"{kind}: kernel must be [I, {G}*H] and recurrent_kernel [H, {G}*H], "
                         f"got {kernel.shape} and {recurrent.shape}")
    H, I = recurrent.shape[0], kernel.shape[0]
    order = cell.keras_order
    bias = weights[2] if len(weights) == 3 else None
    b_ih = b_hh = None
    if bias is not None:
        bias = as_float32("bias", bias)
        if kind == "GRU" and reset_after:
            if bias.shape != (2, G * H):
                raise ValueError(f"GRU bias (reset_after=True) must be [2, {G * H}], got {bias.shape}")
            b_ih, b_hh = bias[0], bias[1]
        else:
            if bias.shape != (G * H,):
                raise ValueError(f"{kind} bias must be [{G * H}], got {bias.shape}")
            b_ih, b_hh = bias, np.zeros_like(bias)
    layer = make_layer(cell, I, H, bias=bias is not None, batch_first=batch_first)
    sd = {"weight_ih_l0": reorder_gates(kernel.T, order, H),
          "weight_hh_l0": reorder_gates(recurrent.T, order, H)}
    if bias is not None:
        sd["bias_ih_l0"] = reorder_gates(b_ih, order, H)
        sd["bias_hh_l0"] = reorder_gates(b_hh, order, H)
    layer.load_state_dict(sd)
    return layer
