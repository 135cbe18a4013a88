"""Losses for the output layer of sequence models."""
import numpy as np

from . import _api

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
    z = _api.as_float32("logits", logits)
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets must be integers, got dtype {t.dtype}")
    if z.ndim < 1 or z.shape[:-1] != t.shape or z.shape[-1] == 0:
        raise ValueError(f"logits must be [..., V] with [...] = the targets' shape "
                         f"{_api.shape_str(t.shape)}, got {_api.shape_str(z.shape)}")
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
    M = z2.shape[0]
    if M == 0:
        return np.zeros(0, np.float32), (np.zeros_like(z2) if grad else None)
    if _api.backend() == "c":
        losses = np.empty(M, np.float32)
        dz = (z2 if in_place else np.empty_like(z2)) if grad else None
        _api._core.softmax_xent(z2, t2, losses, dz, scale, _api.get_num_threads())
        return losses, dz
    losses, dz = _reference(z2, t2, scale, grad)
    if in_place and dz is not None:
        z2[...] = dz
        dz = z2
    return losses, dz


def _reference(z, t, scale, grad):
    """float64 NumPy twin of rnc_softmax_xent (the reference backend)."""
    z64 = z.astype(np.float64)
    with np.errstate(all="ignore"):
        m = z64.max(axis=1, keepdims=True)
        e = np.exp(z64 - m)
        s = e.sum(axis=1, keepdims=True)
        keep = t >= 0
        rows = np.arange(z.shape[0])
        picked = z64[rows, np.where(keep, t, 0)]
        losses = np.where(keep, np.log(s[:, 0]) + m[:, 0] - picked, 0.0).astype(np.float32)
        dz = None
        if grad:
            p = e / s
            p[rows[keep], t[keep]] -= 1.0
            p[~keep] = 0.0
            dz = (p * scale).astype(np.float32)
    return losses, dz
