"""Gate blocks between PyTorch's order (the library's) and another
framework's (rnncore.engine.cells: onnx_order, keras_order)."""
import numpy as np

__all__ = ["reorder_gates", "inverse"]


def reorder_gates(a, order, H):
    """The H-row gate blocks of a ([G*H, ...] or [G*H]) in the given order:
    block k of the result is block order[k] of a."""
    return np.concatenate([a[g * H:(g + 1) * H] for g in order])


def inverse(order):
    """The order that undoes `order`."""
    return np.argsort(order).tolist()
