"""Padded batches of sequences of different lengths (``layer(x, hx,
lengths=...)``), the result PyTorch gives for pack_padded_sequence -> layer
-> pad_packed_sequence, without packing.

The C kernels run a batch sorted by decreasing length, time-major, forward in
time (rnncore.h, "Variable lengths"): step t computes only the rows still
running. Here the batch is sorted once per call (x, states, dropout masks and
gradients gathered into that order and back), and a reverse direction runs
forward over each sequence reversed within its own length:
``rev[s, j] = seq[len_j - 1 - s, j]`` for s < len_j, 0 past it (its own
inverse on the valid part). The reference backend runs every sequence alone.
"""
import numpy as np

from . import _api


def reverse_within(a, lengths):
    """Each sequence (axis 1) of time-major a [T, N, F] reversed within its
    length, zeros past it (a slice copy per sequence: take_along_axis over
    [T, N, F] cost a bidirectional LSTM h512 n64 t100 a third of its time)."""
    out = np.zeros_like(a)
    for n, ln in enumerate(np.asarray(lengths).tolist()):
        out[:ln, n] = a[ln - 1::-1, n]
    return out


class SortedBatch:
    """The sort of one call: ``order`` (sequences by decreasing length,
    stable), the sorted lengths, and the gathers between the caller's layout
    and the kernels' (time-major, sorted)."""

    def __init__(self, lengths, T, batch_first):
        self.order = np.argsort(-lengths, kind="stable")
        self.lengths = np.ascontiguousarray(lengths[self.order], dtype=np.int64)
        self.batch_first = batch_first
        self.T, self.N = T, lengths.size
        self.real = np.arange(T)[:, None] < self.lengths[None, :]  # [T, N]: not padding

    def to_sorted(self, a):
        """[T, N, F] (or [N, T, F] if batch_first) -> sorted time-major, contiguous."""
        a = a.transpose(1, 0, 2) if self.batch_first else a
        return np.ascontiguousarray(a[:, self.order])

    def from_sorted(self, a):
        """The inverse of to_sorted."""
        out = np.empty_like(a)
        out[:, self.order] = a
        return np.ascontiguousarray(out.transpose(1, 0, 2)) if self.batch_first else out

    def states_to_sorted(self, s):
        return None if s is None else np.ascontiguousarray(s[:, self.order])

    def states_from_sorted(self, s):
        if s is None:
            return None
        out = np.empty_like(s)
        out[:, self.order] = s
        return out

    def reverse(self, a):
        """reverse_within for this batch's (sorted) lengths."""
        return reverse_within(a, self.lengths)


def run_layers(mode, x, h0, c0, layers, lengths, *, hidden_size, bidirectional, batch_first,
               masks, record, pool):
    """_api.run_layers for a padded batch with per-sequence ``lengths``
    (validated int64 [N], 1 <= lengths <= T)."""
    if _api.backend() == "reference":
        return _run_reference(mode, x, h0, c0, layers, lengths, hidden_size=hidden_size,
                              bidirectional=bidirectional, batch_first=batch_first,
                              masks=masks, record=record)
    core = _api._core
    D, H, L = (2 if bidirectional else 1), hidden_size, len(layers)
    T = x.shape[1] if batch_first else x.shape[0]
    sb = SortedBatch(lengths, T, batch_first)
    N = sb.N
    inp = sb.to_sorted(x)
    inp[~sb.real] = 0.0  # padding never reaches a sum (dW_ih = dG^T x: 0 * NaN is NaN)
    h0s, c0s = sb.states_to_sorted(h0), sb.states_to_sorted(c0)
    h_n = np.empty((L * D, N, H), dtype=np.float32)
    c_n = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    n_threads = _api.get_num_threads()
    cell = _api.cell_code(mode)
    layer_records = []
    for layer, directions in enumerate(layers):
        if masks[layer] is not None:
            inp = inp * sb.to_sorted(masks[layer])
        I = inp.shape[2]
        y = np.empty((T, N, D * H), dtype=np.float32)
        ws = _api._workspace(mode, T, N, I, H, n_threads)
        tape_floats = core.tape_floats(cell, T, N, I, H) if record is not None else 0
        rec = {"inp": inp, "src": [], "y": [], "tapes": []}
        for d, p in enumerate(directions):
            k = layer * D + d
            src = inp if d == 0 else sb.reverse(inp)
            out = np.empty((T * N, H), dtype=np.float32)
            tape = _api._take(pool, tape_floats) if tape_floats else None
            core.forward(cell, T, N, I, H, False, False, src.reshape(T * N, I),
                         h0s[k] if h0s is not None else None, c0s[k] if c0s is not None else None,
                         p["w_ih_p"], p["w_hh_p"], p["b_ih"], p["b_hh"], out, 0, h_n[k],
                         c_n[k] if c_n is not None else None, ws, n_threads, tape, sb.lengths,
                         p.get("peep"), p.get("coupled", False))
            out = out.reshape(T, N, H)
            y[..., d * H:(d + 1) * H] = out if d == 0 else sb.reverse(out)
            rec["src"].append(src)
            rec["y"].append(out)
            rec["tapes"].append(tape)
        layer_records.append(rec)
        inp = y
    if record is not None:
        record.update(backend="c", T=T, N=N, layers=layer_records, sorted=sb, h0=h0s, c0=c0s)
    return sb.from_sorted(inp), sb.states_from_sorted(h_n), sb.states_from_sorted(c_n)


def backward(mode, record, layers, grads, masks, d_out, dh_n, dc_n, *, hidden_size,
             bidirectional, input_grad):
    """_bptt.backward for a record of run_layers with lengths; h0 and c0 are
    in the record's sort. Returns (dx, dh0, dc0) in the caller's layout."""
    core = _api._core
    sb = record["sorted"]
    D, H, L = (2 if bidirectional else 1), hidden_size, len(layers)
    T, N = record["T"], record["N"]
    n_threads = _api.get_num_threads()
    cell = _api.cell_code(mode)
    h0s, c0s = record["h0"], record["c0"]
    dh_ns, dc_ns = sb.states_to_sorted(dh_n), sb.states_to_sorted(dc_n)
    dh0 = np.empty((L * D, N, H), dtype=np.float32)
    dc0 = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    dy = sb.to_sorted(d_out)
    for layer in reversed(range(L)):
        rec = record["layers"][layer]
        I = rec["inp"].shape[2]
        need_dx = layer > 0 or input_grad
        dinp = np.zeros((T, N, I), dtype=np.float32) if need_dx else None
        for d, p in enumerate(layers[layer]):
            k = layer * D + d
            g = grads[layer][d]
            dy_d = np.ascontiguousarray(dy[..., d * H:(d + 1) * H])
            if d == 1:
                dy_d = sb.reverse(dy_d)
            dsrc = np.empty((T * N, I), dtype=np.float32) if need_dx else None
            floats = core.bwd_workspace_floats(cell, T, N, I, H, n_threads)
            ws = _api.workspace(floats, f"backward workspace for T={T}, N={N}, H={H}")
            core.backward(cell, T, N, I, H, False, False, rec["src"][d].reshape(T * N, I),
                          h0s[k] if h0s is not None else None, c0s[k] if c0s is not None else None,
                          p["w_ih"], p["w_hh"], rec["y"][d].reshape(T * N, H), 0, rec["tapes"][d],
                          dy_d.reshape(T * N, H), dh_ns[k] if dh_ns is not None else None,
                          dc_ns[k] if dc_ns is not None else None, dsrc, False, dh0[k],
                          dc0[k] if dc0 is not None else None, g["w_ih"], g["w_hh"],
                          g["b_ih"], g["b_hh"], ws, n_threads, sb.lengths, p.get("peep"),
                          p.get("coupled", False), g.get("peep"))
            if need_dx:
                dsrc = dsrc.reshape(T, N, I)
                dinp += dsrc if d == 0 else sb.reverse(dsrc)
        if masks[layer] is not None and need_dx:
            dinp *= sb.to_sorted(masks[layer])
        dy = dinp
    dx = sb.from_sorted(dy) if input_grad else None
    return dx, sb.states_from_sorted(dh0), sb.states_from_sorted(dc0)


# ------------------------------------------------------------ reference

def _run_reference(mode, x, h0, c0, layers, lengths, *, hidden_size, bidirectional, batch_first,
                   masks, record):
    """Every sequence alone on the reference, padded with zeros."""
    D, H, L = (2 if bidirectional else 1), hidden_size, len(layers)
    xt = x.transpose(1, 0, 2) if batch_first else x
    T, N = xt.shape[:2]
    y = np.zeros((T, N, D * H), dtype=np.float32)
    h_n = np.empty((L * D, N, H), dtype=np.float32)
    c_n = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    per_sequence = []
    for n in range(N):
        ln = int(lengths[n])
        sub_masks = [None if m is None else (m.transpose(1, 0, 2) if batch_first else m)[:ln, n:n + 1]
                     for m in masks]
        sub_record = {} if record is not None else None
        yn, hn, cn = _api._run_reference(
            mode, np.ascontiguousarray(xt[:ln, n:n + 1]), None if h0 is None else h0[:, n:n + 1],
            None if c0 is None else c0[:, n:n + 1], layers, sub_masks, sub_record,
            hidden_size=H, bidirectional=bidirectional, batch_first=False)
        y[:ln, n] = yn[:, 0]
        h_n[:, n] = hn[:, 0]
        if c_n is not None:
            c_n[:, n] = cn[:, 0]
        per_sequence.append((ln, sub_record, sub_masks))
    if record is not None:
        record.update(backend="reference", T=T, N=N, per_sequence=per_sequence)
    return (np.ascontiguousarray(y.transpose(1, 0, 2)) if batch_first else y), h_n, c_n


def backward_reference(mode, record, layers, grads, d_out, dh_n, dc_n, h0, c0, *, hidden_size,
                       bidirectional, batch_first):
    """Every sequence's backward alone (see _bptt._backward_reference); the
    parameter gradients add up over the sequences."""
    from ._bptt import _backward_reference
    T, N = record["T"], record["N"]
    dyt = d_out.transpose(1, 0, 2) if batch_first else d_out
    dx = None
    dh0 = dc0 = None
    for n, (ln, sub_record, sub_masks) in enumerate(record["per_sequence"]):
        dxn, dh0n, dc0n = _backward_reference(
            mode, sub_record, layers, grads, sub_masks, np.ascontiguousarray(dyt[:ln, n:n + 1]),
            None if dh_n is None else dh_n[:, n:n + 1], None if dc_n is None else dc_n[:, n:n + 1],
            None if h0 is None else h0[:, n:n + 1], None if c0 is None else c0[:, n:n + 1],
            hidden_size=hidden_size, bidirectional=bidirectional, batch_first=False)
        if dx is None:
            dx = np.zeros((T, N, dxn.shape[2]), dtype=np.float32)
            dh0 = np.empty((dh0n.shape[0], N, hidden_size), dtype=np.float32)
            dc0 = np.empty_like(dh0) if dc0n is not None else None
        dx[:ln, n] = dxn[:, 0]
        dh0[:, n] = dh0n[:, 0]
        if dc0 is not None:
            dc0[:, n] = dc0n[:, 0]
    return (np.ascontiguousarray(dx.transpose(1, 0, 2)) if batch_first else dx), dh0, dc0

