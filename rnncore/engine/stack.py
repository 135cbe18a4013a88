"""The one loop over stacked layers and their directions, forward and
backward (BPTT), over an Ops (rnncore.engine.ops).

Layer l > 0 reads the concatenation (forward direction first) of layer
l-1's outputs, multiplied by its dropout mask when training; layer l
direction d starts from state l*D + d and direction 1 runs in reverse
(rnncore.reference.stack_forward states the same). Padded batches enter
through rnncore.engine.lengths when the Ops wants them sorted.

Arguments are validated by rnncore.engine.layers: x float32 C-contiguous
``[T, N, I]`` (``[N, T, I]`` if batch_first); states ``[L*D, N, H]`` or
None (zeros; h is R wide with an LSTM projection); ``layers[l][d]`` the parameter dicts of rnncore.engine.ops
(``grads[l][d]`` their gradients); ``masks[l]`` the dropout mask of layer
l's input, shaped like it (None: no dropout; always None for l = 0).
"""
import numpy as np

from .lengths import SortedBatch

__all__ = ["forward", "backward", "Record", "dropout_mask"]


def dropout_mask(shape, p, rng, draw_dtype=np.float64):
    """Inverted dropout: keep with probability 1 - p, kept values scaled by
    1 / (1 - p); float32, or None for p = 0. The uniform draws are made in
    `draw_dtype` (the stream a seed gives depends on it)."""
    if p == 0.0:
        return None
    keep = rng.random(shape, dtype=draw_dtype) >= p
    return keep.astype(np.float32) * np.float32(0.0 if p == 1.0 else 1.0 / (1.0 - p))


class Record:
    """What backward needs from one training forward: per layer its input,
    output and the directions' tapes (all in the Ops' own form), the masks,
    the initial states and the sort of a padded batch."""
    __slots__ = ("ops", "T", "N", "layout", "row_order", "sorted", "lengths", "h0", "c0",
                 "masks", "layers")

    def __init__(self, **fields):
        for name, value in fields.items():
            setattr(self, name, value)


def _cell_width(cell, layers):
    """Width of the cell state c: the hidden size (h is narrower with an LSTM
    projection)."""
    return layers[0][0]["w_ih"].shape[0] // cell.gates


def _at(states, k):
    return None if states is None else states[k]


def forward(ops, cell, x, h0, c0, layers, *, batch_first, n_threads, lengths=None, masks=None,
            train=False, pool=None):
    """Returns ``(y, h_n, c_n, record)``: y ``[T, N, D*H]`` (``[N, T, D*H]`` if
    batch_first), h_n and c_n ``[L*D, N, H]`` (c_n None unless LSTM), and
    with ``train`` the Record for :func:`backward` (else None). lengths:
    None or int64 ``[N]`` in [1, T]. Tape buffers come from ``pool``."""
    L, D, H = len(layers), len(layers[0]), layers[0][0]["w_hh"].shape[1]  # H: h's width
    T, N = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    masks = masks or [None] * L
    layout, sb = batch_first, None
    if lengths is not None and ops.sorts_lengths:
        sb = SortedBatch(lengths, T, batch_first)
        x = sb.to_sorted(x)
        x[~sb.real] = 0.0  # padding never reaches a sum (dW_ih = dG^T x: 0 * NaN is NaN)
        h0, c0 = sb.states_to_sorted(h0), sb.states_to_sorted(c0)
        masks = [None if m is None else sb.to_sorted(m) for m in masks]
        lengths, layout = sb.lengths, False
    inp, row_order = ops.enter(x, layout)
    masks = [None if m is None else ops.enter(m, layout)[0] for m in masks]
    h_n = np.empty((L * D, N, H), dtype=np.float32)
    c_n = np.empty((L * D, N, _cell_width(cell, layers)), dtype=np.float32) if cell.has_cell_state else None
    recorded = []
    for li, directions in enumerate(layers):
        if masks[li] is not None:
            inp = inp * masks[li]
        y = ops.new_layer_output(T, N, D * H)
        tapes = []
        for d, p in enumerate(directions):
            k = li * D + d
            tapes.append(ops.layer_forward(
                cell, inp, (_at(h0, k), _at(c0, k)), p, T=T, N=N, batch_first=row_order,
                reverse=d == 1, lengths=lengths, y=y, col=d * H,
                state_n=(h_n[k], _at(c_n, k)), train=train, pool=pool, n_threads=n_threads))
        recorded.append((inp, y, tapes))
        inp = y
    y = ops.leave(inp, T, N, layout)
    record = None
    if train:
        record = Record(ops=ops, T=T, N=N, layout=layout, row_order=row_order, sorted=sb,
                        lengths=lengths, h0=h0, c0=c0, masks=masks, layers=recorded)
    if sb is not None:
        y, h_n, c_n = sb.from_sorted(y), sb.states_from_sorted(h_n), sb.states_from_sorted(c_n)
    return y, h_n, c_n, record


def backward(cell, record, layers, grads, d_out, dh_n, dc_n, *, input_grad, n_threads, pool=None,
             pool_limit=0):
    """BPTT of a :func:`forward` record, on the Ops that recorded it. Adds the
    parameter gradients to ``grads`` and returns ``(dx, dh0, dc0)`` shaped
    like x, h0 and c0 (dx None without input_grad, which skips its GEMM;
    dc0 None unless LSTM). d_out is shaped like y; dh_n, dc_n like h_n or
    None. The record's tape buffers go back to ``pool``."""
    ops, sb, T, N = record.ops, record.sorted, record.T, record.N
    L, D, H = len(layers), len(layers[0]), layers[0][0]["w_hh"].shape[1]
    if sb is not None:
        d_out = sb.to_sorted(d_out)
        dh_n, dc_n = sb.states_to_sorted(dh_n), sb.states_to_sorted(dc_n)
    dy, _ = ops.enter(d_out, record.layout)
    dh0 = np.empty((L * D, N, H), dtype=np.float32)
    dc0 = (np.empty((L * D, N, _cell_width(cell, layers)), dtype=np.float32)
           if cell.has_cell_state else None)
    for li in reversed(range(L)):
        inp, y, tapes = record.layers[li]
        dinp = ops.new_input_grad(inp, record.lengths) if li > 0 or input_grad else None
        for d, p in enumerate(layers[li]):
            k = li * D + d
            ops.layer_backward(
                cell, inp, y, tapes[d], (_at(record.h0, k), _at(record.c0, k)), p, grads[li][d],
                T=T, N=N, batch_first=record.row_order, reverse=d == 1, lengths=record.lengths,
                dy=dy, col=d * H, dstate_n=(_at(dh_n, k), _at(dc_n, k)), dinp=dinp,
                accumulate=d > 0, dstate0=(dh0[k], _at(dc0, k)), n_threads=n_threads)
        if record.masks[li] is not None and dinp is not None:
            dinp *= record.masks[li]
        dy = dinp
    ops.release([t for _, _, tapes in record.layers for t in tapes], pool, pool_limit)
    dx = ops.leave(dy, T, N, record.layout) if input_grad else None
    if sb is not None:
        dx = None if dx is None else sb.from_sorted(dx)
        dh0, dc0 = sb.states_from_sorted(dh0), sb.states_from_sorted(dc0)
    return dx, dh0, dc0
