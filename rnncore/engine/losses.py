"""Losses for the output layer of sequence models."""
import numpy as np

from . import runtime
from .checks import as_float32, shape_str

__all__ = ["softmax_cross_entropy"]


def softmax_cross_entropy(logits, targets, *, reduction="mean", grad=True):
    """Cross-entropy of softmax(logits) against integer targets, and its
    gradient, in one fused, numerically stable pass (rnc_softmax_xent).

    logits: float ``[..., V]``; targets: integers ``[...]`` in [0, V), or
    negative for positions to ignore (padding; PyTorch's ``ignore_index``).
    reduction: 'mean' (over the targets not ignored, PyTorch's default),
    'sum' or 'none' (per position, shaped like targets).
    Returns ``(loss, dlogits)``: loss in nats, a float (or an array for
    'none'); dlogits = d loss / d logits shaped like logits (for 'none': of
    the sum of the losses), or None with ``grad=False``.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    z = as_float32("logits", logits)
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets must be integers, got dtype {t.dtype}")
    if z.ndim < 1 or z.shape[:-1] != t.shape or z.shape[-1] == 0:
        raise ValueError(f"logits must be [..., V] with [...] = the targets' shape "
                         f"{shape_str(t.shape)}, got {shape_str(z.shape)}")
    V = z.shape[-1]
    if t.size and t.max() >= V:
        raise ValueError(f"targets must be < V = {V} (or negative to ignore), got {t.max()}")
    z2 = np.ascontiguousarray(z.reshape(-1, V))
    t2 = np.ascontiguousarray(t.reshape(-1), dtype=np.int64)
    counted = int((t2 >= 0).sum())
    scale = 1.0 / counted if reduction == "mean" and counted else 1.0
    losses, dz = rows_xent(z2, t2, scale, grad)
    if reduction == "none":
        loss = losses.reshape(t.shape)
    else:
        total = float(losses.sum(dtype=np.float64))
        loss = total * scale if reduction == "mean" else total
        if reduction == "mean" and not counted:
            loss = float("nan")  # as PyTorch: the mean of nothing
    return loss, (dz.reshape(z.shape) if dz is not None else None)


def rows_xent(z2, t2, scale, grad, in_place=False):
    """Per-row losses of checked C-contiguous float32 logits [M, V] and int64
    targets [M], and dz = scale * d loss / dz (None without grad; written
    over z2 itself with in_place, which saves a pass over M x V floats)."""
    if z2.shape[0] == 0:
        return np.zeros(0, np.float32), (np.zeros_like(z2) if grad else None)
    return runtime.ops().softmax_xent(z2, t2, scale, grad, in_place, runtime.get_num_threads())
