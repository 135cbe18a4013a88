"""Attention of a decoder over encoder outputs, forward and backward, for
all target steps at once (one batched product per step kind).

Shapes (batch first): decoder states ``h`` ``[N, T, H]``, encoder outputs
``K`` ``[N, S, H]``, ``valid`` ``[N, S]`` (False at source padding, which
gets weight 0). Scores (Luong, Pham & Manning 2015; Bahdanau, Cho & Bengio
2015 for the additive one)::

    dot       score[n,t,s] = h[n,t] . K[n,s]
    general   score[n,t,s] = (h[n,t] W_a) . K[n,s]                W_a [H, H]
    additive  score[n,t,s] = v . tanh(W_q h[n,t] + W_k K[n,s])    W_q, W_k [H, H], v [H]

    a = softmax_s(score) over the valid s,   c[n,t] = sum_s a[n,t,s] K[n,s]

and the attentional state h~ = tanh(W_c [c; h] + b_c) (W_c [H, 2H]) is what
the output layer reads. Parameters live in the model's dict under
``attn.<name>``; every function takes that dict and, for backward, the
gradient dict to add to.
"""
import numpy as np

from ..engine.runtime import matmul

__all__ = ["KINDS", "shapes", "forward", "backward"]

KINDS = ("dot", "general", "additive")


def shapes(kind, H):
    """The attention's parameters: name -> shape (the output combination W_c, b_c included)."""
    own = {"dot": {}, "general": {"attn.W_a": (H, H)},
           "additive": {"attn.W_q": (H, H), "attn.W_k": (H, H), "attn.v": (H,)}}[kind]
    return {**own, "attn.W_c": (H, 2 * H), "attn.b_c": (H,)}


def _lin(x, w):
    """x [..., a] @ w [a, b] as one 2-D product (NumPy's batched matmul of a
    3-D array by a matrix ran 3.4x slower: [320, 1, 768] x [768, 384] took
    11.7 ms against 3.5 ms), on the kernels' GEMM and threads."""
    out = matmul(np.ascontiguousarray(x.reshape(-1, x.shape[-1])), w)
    return out.reshape(x.shape[:-1] + (w.shape[1],))


def forward(kind, p, h, K, valid):
    """``(h_tilde [N, T, H], cache)`` (cache: what backward needs)."""
    if kind == "dot":
        q, e = h, None
        score = h @ K.transpose(0, 2, 1)
    elif kind == "general":
        q, e = _lin(h, p["attn.W_a"]), None
        score = q @ K.transpose(0, 2, 1)
    else:
        q = None
        kq = _lin(h, p["attn.W_q"].T)                  # [N, T, H]
        kk = _lin(K, p["attn.W_k"].T)                  # [N, S, H]
        e = np.tanh(kq[:, :, None, :] + kk[:, None, :, :])  # [N, T, S, H]
        score = e @ p["attn.v"]
    # masked softmax over s: padding gets -inf (exp 0); every row has one valid s
    score = np.where(valid[:, None, :], score, -np.inf)
    score -= score.max(axis=-1, keepdims=True)
    a = np.exp(score, out=score)
    a /= a.sum(axis=-1, keepdims=True)
    c = a @ K                                          # [N, T, H]
    ch = np.concatenate([c, h], axis=-1)               # [N, T, 2H]
    h_tilde = np.tanh(_lin(ch, p["attn.W_c"].T) + p["attn.b_c"])
    return h_tilde, (h, K, q, e, a, ch, h_tilde)


def backward(kind, p, g, d_tilde, cache):
    """Given dL/dh~ ``[N, T, H]``: adds the parameter gradients to `g` and
    returns ``(dh [N, T, H], dK [N, S, H])``."""
    h, K, q, e, a, ch, h_tilde = cache
    H = h.shape[-1]
    du = d_tilde * (1.0 - h_tilde * h_tilde)           # through tanh
    g["attn.W_c"] += matmul(du.reshape(-1, H).T, ch.reshape(-1, 2 * H))
    g["attn.b_c"] += du.sum(axis=(0, 1))
    dch = _lin(du, p["attn.W_c"])
    dc, dh = dch[..., :H], dch[..., H:].copy()
    # c = a K
    da = dc @ K.transpose(0, 2, 1)                     # [N, T, S]
    dK = a.transpose(0, 2, 1) @ dc                     # [N, S, H]
    # softmax: dscore = a * (da - sum_s a da); padding has a = 0, so 0
    dscore = a * (da - (a * da).sum(axis=-1, keepdims=True))
    if kind == "dot":
        dh += dscore @ K
        dK += dscore.transpose(0, 2, 1) @ h
    elif kind == "general":
        dq = dscore @ K
        dK += dscore.transpose(0, 2, 1) @ q
        g["attn.W_a"] += matmul(h.reshape(-1, H).T, dq.reshape(-1, H))
        dh += _lin(dq, p["attn.W_a"].T)
    else:
        g["attn.v"] += np.einsum("nts,ntsh->h", dscore, e)
        dpre = dscore[..., None] * p["attn.v"] * (1.0 - e * e)   # [N, T, S, H]
        dkq, dkk = dpre.sum(axis=2), dpre.sum(axis=1)            # [N, T, H], [N, S, H]
        g["attn.W_q"] += matmul(dkq.reshape(-1, H).T, h.reshape(-1, H))
        g["attn.W_k"] += matmul(dkk.reshape(-1, H).T, K.reshape(-1, H))
        dh += _lin(dkq, p["attn.W_q"])
        dK += _lin(dkk, p["attn.W_k"])
    return dh, dK
