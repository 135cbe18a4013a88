"""Choosing the next token from a model's logits: greedy, temperature,
top-k and nucleus (top-p) sampling."""
import numpy as np

__all__ = ["pick"]


def pick(z, temperature, top_k, top_p, rng):
    """One token id per row of logits z (N, V): the arg max with
    temperature 0, else a draw from softmax(z / temperature) restricted to
    the top_k most likely tokens and/or to the smallest set whose probability
    reaches top_p (None: no restriction)."""
    if temperature == 0.0:
        return z.argmax(axis=1)
    z = z.astype(np.float64) / temperature
    V = z.shape[1]
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=1)[:, V - top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=1)
        sorted_p = np.take_along_axis(p, order, axis=1)
        # keep the most likely tokens until their mass reaches top_p (at least one)
        keep_sorted = np.cumsum(sorted_p, axis=1) - sorted_p < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=1, keepdims=True)
    u = rng.random((p.shape[0], 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), V - 1).astype(np.int64)
