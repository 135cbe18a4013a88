"""Training passes of stacked layers: the forward pass that keeps what backward
needs (a "record"), and backpropagation through time, on the C kernels or on
the float64 reference (the backend active at the forward pass is used for the
backward too).

Arguments are validated by rnncore.layers; shapes follow _api.run_layers:
x float32 C-contiguous ``[T, N, I]`` (``[N, T, I]`` if batch_first), states
``[L*D, N, H]`` or None, ``layers`` the per-layer, per-direction parameter
dicts, ``masks`` per layer the inter-layer dropout mask applied to that
layer's input (None for layer 0 and without dropout).
"""
import threading

import numpy as np

from . import _api, reference

_pool_lock = threading.Lock()  # layers may be trained from several Python threads


def _take(pool, floats):
    """A float32 buffer of `floats` from `pool` (tapes that backward has
    consumed), or a new one. Fresh 27 MB tapes per step (lstm h512 n64 t35)
    cost 4% of a training step in page faults."""
    with _pool_lock:
        for i, buf in enumerate(pool):
            if buf.size == floats:
                return pool.pop(i)
    return np.empty(floats, dtype=np.float32)


def recycle(record, pool, limit):
    """Return a consumed record's tape buffers to `pool` (at most `limit`)."""
    with _pool_lock:
        for rec in record.get("layers", ()):
            for tape in rec["tapes"]:
                if tape is not None and len(pool) < limit:
                    pool.append(tape)


def forward(mode, x, h0, c0, layers, masks, *, hidden_size, bidirectional, batch_first,
            pool=()):
    """Returns ``(y, h_n, c_n, record)``; y, h_n, c_n as _api.run_layers.
    Tape buffers come from `pool` when it has them (see recycle)."""
    if _api.backend() == "reference":
        return _forward_reference(mode, x, h0, c0, layers, masks, hidden_size=hidden_size,
                                  bidirectional=bidirectional, batch_first=batch_first)
    core = _api._core
    D, H, L = (2 if bidirectional else 1), hidden_size, len(layers)
    N, T = x.shape[:2] if batch_first else x.shape[1::-1]
    h_n = np.empty((L * D, N, H), dtype=np.float32)
    c_n = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    n_threads = _api.get_num_threads()
    cell = _api.cell_code(mode)
    inp = x.reshape(T * N, x.shape[2])
    layer_records = []
    for layer, directions in enumerate(layers):
        if masks[layer] is not None:
            inp = inp * masks[layer].reshape(T * N, -1)
        y = np.empty((T * N, D * H), dtype=np.float32)
        tape_floats = core.tape_floats(cell, T, N, inp.shape[1], H)
        tapes = []
        for d, p in enumerate(directions):
            k = layer * D + d
            tape = _take(pool, tape_floats) if tape_floats else None
            ws = _api._workspace(mode, T, N, inp.shape[1], H, n_threads)
            core.forward(cell, T, N, inp.shape[1], H, batch_first, d == 1, inp,
                         h0[k] if h0 is not None else None, c0[k] if c0 is not None else None,
                         p["w_ih_p"], p["w_hh_p"], p["b_ih"], p["b_hh"],
                         y, d * H, h_n[k], c_n[k] if c_n is not None else None,
                         ws, n_threads, tape)
            tapes.append(tape)
        layer_records.append({"inp": inp, "y": y, "tapes": tapes})
        inp = y
    out = inp.reshape((N, T, D * H) if batch_first else (T, N, D * H))
    record = {"backend": "c", "layers": layer_records, "T": T, "N": N}
    return out, h_n, c_n, record


def backward(mode, record, layers, grads, masks, d_out, dh_n, dc_n, h0, c0, *,
             hidden_size, bidirectional, batch_first, input_grad=True):
    """Adds the parameter gradients to ``grads`` (per layer, per direction,
    dicts of float32 arrays 'w_ih', 'w_hh', 'b_ih', 'b_hh', the biases None
    without bias) and returns ``(dx, dh0, dc0)`` shaped like x, h0 and c0
    (dc0 None unless LSTM; dx None without input_grad, which skips its GEMM).
    d_out is shaped like y; dh_n, dc_n like h_n or None."""
    if record["backend"] == "reference":
        dx, dh0, dc0 = _backward_reference(
            mode, record, layers, grads, masks, d_out, dh_n, dc_n, h0, c0,
            hidden_size=hidden_size, bidirectional=bidirectional, batch_first=batch_first)
        return (dx if input_grad else None), dh0, dc0
    core = _api._core
    D, H, L = (2 if bidirectional else 1), hidden_size, len(layers)
    T, N = record["T"], record["N"]
    n_threads = _api.get_num_threads()
    cell = _api.cell_code(mode)
    dh0 = np.empty((L * D, N, H), dtype=np.float32)
    dc0 = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    dy = d_out.reshape(T * N, D * H)
    for layer in reversed(range(L)):
        rec = record["layers"][layer]
        inp = rec["inp"]
        I = inp.shape[1]
        dinp = np.empty((T * N, I), dtype=np.float32) if layer > 0 or input_grad else None
        for d, p in enumerate(layers[layer]):
            k = layer * D + d
            g = grads[layer][d]
            floats = core.bwd_workspace_floats(cell, T, N, I, H, n_threads)
            ws = _api.workspace(floats, f"backward workspace for T={T}, N={N}, H={H}")
            core.backward(cell, T, N, I, H, batch_first, d == 1, inp,
                          h0[k] if h0 is not None else None, c0[k] if c0 is not None else None,
                          p["w_ih"], p["w_hh"], rec["y"], d * H, rec["tapes"][d], dy,
                          dh_n[k] if dh_n is not None else None,
                          dc_n[k] if dc_n is not None else None,
                          dinp, d == 1, dh0[k], dc0[k] if dc0 is not None else None,
                          g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"], ws, n_threads)
        if masks[layer] is not None:
            dinp *= masks[layer].reshape(T * N, -1)
        dy = dinp
    dx = None if dy is None else dy.reshape((N, T, -1) if batch_first else (T, N, -1))
    return dx, dh0, dc0


# ------------------------------------------------------------ reference

def _time_major64(a, batch_first):
    a = np.asarray(a, dtype=np.float64)
    return a.transpose(1, 0, 2) if batch_first else a


def _state64(s, k, N, H):
    return np.zeros((N, H)) if s is None else s[k].astype(np.float64)


def _forward_reference(mode, x, h0, c0, layers, masks, *, hidden_size, bidirectional,
                       batch_first):
    D, H, L = (2 if bidirectional else 1), hidden_size, len(layers)
    inp = _time_major64(x, batch_first)
    T, N = inp.shape[:2]
    h_n = np.empty((L * D, N, H), dtype=np.float32)
    c_n = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    layer_inputs = []
    for layer, directions in enumerate(layers):
        if masks[layer] is not None:
            inp = inp * _time_major64(masks[layer], batch_first)
        layer_inputs.append(inp)
        outs = []
        for d, p in enumerate(directions):
            k = layer * D + d
            y, hk, ck = reference.layer_forward(
                mode, inp, _state64(h0, k, N, H), _state64(c0, k, N, H),
                *(None if p[w] is None else p[w].astype(np.float64)
                  for w in ("w_ih", "w_hh", "b_ih", "b_hh")),
                reverse=d == 1)
            outs.append(y)
            h_n[k] = hk
            if c_n is not None:
                c_n[k] = ck
        inp = np.concatenate(outs, axis=2)
    y = inp.astype(np.float32)
    if batch_first:
        y = np.ascontiguousarray(y.transpose(1, 0, 2))
    return y, h_n, c_n, {"backend": "reference", "inputs": layer_inputs, "T": T, "N": N}


def _backward_reference(mode, record, layers, grads, masks, d_out, dh_n, dc_n, h0, c0, *,
                        hidden_size, bidirectional, batch_first):
    D, H, L = (2 if bidirectional else 1), hidden_size, len(layers)
    T, N = record["T"], record["N"]
    dh0 = np.empty((L * D, N, H), dtype=np.float32)
    dc0 = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    dy = _time_major64(d_out, batch_first)
    for layer in reversed(range(L)):
        inp = record["inputs"][layer]
        dinp = np.zeros_like(inp)
        for d, p in enumerate(layers[layer]):
            k = layer * D + d
            r = reference.layer_backward(
                mode, inp, _state64(h0, k, N, H), _state64(c0, k, N, H),
                *(None if p[w] is None else p[w].astype(np.float64)
                  for w in ("w_ih", "w_hh", "b_ih", "b_hh")),
                dy[..., d * H:(d + 1) * H],
                None if dh_n is None else dh_n[k].astype(np.float64),
                None if dc_n is None else dc_n[k].astype(np.float64),
                reverse=d == 1)
            dinp += r["dx"]
            dh0[k] = r["dh0"]
            if dc0 is not None:
                dc0[k] = r["dc0"]
            g = grads[layer][d]
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                if g[name] is not None:
                    g[name] += r["d" + name].astype(np.float32)
        if masks[layer] is not None:
            dinp = dinp * _time_major64(masks[layer], batch_first)
        dy = dinp
    dx = dy.astype(np.float32)
    if batch_first:
        dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
    return dx, dh0, dc0
