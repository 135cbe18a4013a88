"""Backpropagation through time over stacked layers, on the C kernels or on
the float64 reference: the backend of the forward pass that filled the
record (_api.run_layers with ``record=``) does the backward too.

Arguments are validated by rnncore.layers; shapes follow _api.run_layers:
x float32 C-contiguous ``[T, N, I]`` (``[N, T, I]`` if batch_first), states
``[L*D, N, H]`` or None, ``layers`` the per-layer, per-direction parameter
dicts, ``masks`` per layer the inter-layer dropout mask applied to that
layer's input (None for layer 0 and without dropout).
"""
import numpy as np

from . import _api, reference


def backward(mode, record, layers, grads, masks, d_out, dh_n, dc_n, h0, c0, *,
             hidden_size, bidirectional, batch_first, input_grad=True):
    """Adds the parameter gradients to ``grads`` (per layer, per direction,
    dicts of float32 arrays 'w_ih', 'w_hh', 'b_ih', 'b_hh', the biases None
    without bias) and returns ``(dx, dh0, dc0)`` shaped like x, h0 and c0
    (dc0 None unless LSTM; dx None without input_grad, which skips its GEMM).
    d_out is shaped like y; dh_n, dc_n like h_n or None."""
    if "per_sequence" in record or "sorted" in record:  # variable lengths
        from . import _lengths
        if "sorted" in record:
            return _lengths.backward(mode, record, layers, grads, masks, d_out, dh_n, dc_n,
                                     hidden_size=hidden_size, bidirectional=bidirectional,
                                     input_grad=input_grad)
        dx, dh0, dc0 = _lengths.backward_reference(
            mode, record, layers, grads, d_out, dh_n, dc_n, h0, c0, hidden_size=hidden_size,
            bidirectional=bidirectional, batch_first=batch_first)
        return (dx if input_grad else None), dh0, dc0
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
                          g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"], ws, n_threads, None,
                          p.get("peep"), p.get("coupled", False), g.get("peep"))
        if masks[layer] is not None:
            dinp *= masks[layer].reshape(T * N, -1)
        dy = dinp
    dx = None if dy is None else dy.reshape((N, T, -1) if batch_first else (T, N, -1))
    return dx, dh0, dc0


# ------------------------------------------------------------ reference

_time_major64 = _api._time_major64


def _state64(s, k, N, H):
    return np.zeros((N, H)) if s is None else s[k].astype(np.float64)


def _backward_reference(mode, record, layers, grads, masks, d_out, dh_n, dc_n, h0, c0, *,
                        hidden_size, bidirectional, batch_first):
    D, H, L = (2 if bidirectional else 1), hidden_size, len(layers)
    N = record["N"]
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
                reverse=d == 1,
                peephole=None if p.get("peep") is None else p["peep"].astype(np.float64),
                input_forget=p.get("coupled", False))
            dinp += r["dx"]
            dh0[k] = r["dh0"]
            if dc0 is not None:
                dc0[k] = r["dc0"]
            g = grads[layer][d]
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                if g[name] is not None:
                    g[name] += r["d" + name].astype(np.float32)
            if g.get("peep") is not None:
                g["peep"] += r["dpeephole"].astype(np.float32)
        if masks[layer] is not None:
            dinp = dinp * _time_major64(masks[layer], batch_first)
        dy = dinp
    dx = dy.astype(np.float32)
    if batch_first:
        dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
    return dx, dh0, dc0
