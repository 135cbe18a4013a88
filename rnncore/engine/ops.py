"""The primitives the engine is built of, on the reference: ``Ops``.

Everything above (the stacking loop, the layers, the losses, the language
models) calls ``ops.<primitive>``; ``Ops`` implements every primitive with
rnncore.reference in float64 NumPy, and ``rnncore.engine.c_ops.COps``
subclasses it and overrides what the C kernels accelerate (thinc's ``Ops`` /
``NumpyOps`` is the model). The reference backend is simply this class, so
it is always complete.

Shapes and arguments of the layer primitives (one layer-direction):

* ``inp``: the layer input in the Ops' own sequence form, from
  :meth:`enter`; ``y``: the layer output from :meth:`new_layer_output`, of
  which this direction owns the ``H`` features from ``col``. ``T``, ``N``:
  time steps and batch; ``batch_first``: the row order :meth:`enter` chose.
* ``p``: the direction's parameters, a dict with 'w_ih', 'w_hh', 'b_ih',
  'b_hh' (biases None without bias), 'w_ih_p', 'w_hh_p' (packed, see
  rnncore.engine.runtime.pack), 'peephole' (None), 'input_forget' and the
  LSTM projection 'w_hr' [R, H], 'w_hr_p' (None without one).
  ``g``: the gradient arrays 'w_ih', 'w_hh', 'b_ih', 'b_hh', 'peephole',
  'w_hr' (float32, added to; None where the parameter is absent).
* states travel as pairs ``(h, c)`` of float32 ``[N, H]`` arrays (``c`` None
  unless LSTM; an initial state None means zeros); with a projection h is
  ``[N, R]``, and this direction's part of y is R wide (``R = w_hh.shape[1]``).
* ``lengths``: None or int64 ``[N]`` steps per sequence (rnncore.reference's
  padded batches); when ``sorts_lengths`` is set the stacking loop sorts the
  batch by decreasing length first.
"""
import numpy as np

from .. import reference

__all__ = ["Ops"]


def _f64(a):
    return None if a is None else a.astype(np.float64)


def _state64(s, N, H):
    return np.zeros((N, H)) if s is None else s.astype(np.float64)


class Ops:
    """The reference implementation of every primitive (float64 NumPy;
    results returned as float32)."""

    name = "reference"
    sorts_lengths = False  # padded batches run in the caller's order

    # ------------------------------------------------------------ sequences

    def enter(self, a, batch_first):
        """A caller's sequence array ([T, N, F], or [N, T, F] if batch_first)
        in the form the layer primitives take, and the row order they will
        see: here float64, time-major."""
        a = np.asarray(a, dtype=np.float64)
        return (a.transpose(1, 0, 2) if batch_first else a), False

    def leave(self, a, T, N, batch_first):
        """The inverse of enter, as float32."""
        a = a.astype(np.float32)
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if batch_first else a

    def new_layer_output(self, T, N, F):
        return np.empty((T, N, F))

    def new_input_grad(self, inp, lengths):
        """The gradient of a layer input, to which each direction adds."""
        return np.zeros_like(inp)

    # ------------------------------------------------------------ layers

    def layer_forward(self, cell, inp, state0, p, *, T, N, batch_first, reverse, lengths, y, col,
                      state_n, train, pool, n_threads):
        """One layer-direction: writes this direction's part of y and the
        final state pair state_n; returns what layer_backward needs beyond
        inp and y (its "tape"; the reference recomputes, so None)."""
        h0, c0 = state0
        R, H = p["w_hh"].shape[1], p["w_ih"].shape[0] // cell.gates
        yd, h_n, c_n = reference.layer_forward(
            cell.mode, inp, _state64(h0, N, R), _state64(c0, N, H), _f64(p["w_ih"]),
            _f64(p["w_hh"]), _f64(p["b_ih"]), _f64(p["b_hh"]), reverse=reverse,
            peephole=_f64(p["peephole"]), input_forget=p["input_forget"], lengths=lengths,
            w_hr=_f64(p.get("w_hr")))
        y[..., col:col + R] = yd
        state_n[0][...] = h_n
        if state_n[1] is not None:
            state_n[1][...] = c_n
        return None

    def layer_backward(self, cell, inp, y, tape, state0, p, g, *, T, N, batch_first, reverse,
                       lengths, dy, col, dstate_n, dinp, accumulate, dstate0, n_threads):
        """One layer-direction's BPTT: adds the parameter gradients to g and
        this direction's input gradient to dinp (None: not needed; with
        ``accumulate`` false the C implementation overwrites instead), and
        writes the initial-state gradients into the pair dstate0. dy: the
        gradient of the whole layer output (this direction's part from col)."""
        R, H = p["w_hh"].shape[1], p["w_ih"].shape[0] // cell.gates
        h0, c0 = _state64(state0[0], N, R), _state64(state0[1], N, H)
        dh_n, dc_n = (_f64(s) for s in dstate_n)
        w = [_f64(p[name]) for name in ("w_ih", "w_hh", "b_ih", "b_hh")]
        w_hr = _f64(p.get("w_hr"))
        dy = dy[..., col:col + R]
        # each sequence of a padded batch alone, in the caller's order (so
        # float32 gradient sums add up in the same order as for a batch)
        sequences = ([(slice(None), slice(None))] if lengths is None else
                     [(slice(0, ln), slice(n, n + 1)) for n, ln in enumerate(lengths.tolist())])
        for ts, ns in sequences:
            r = reference.layer_backward(
                cell.mode, inp[ts, ns], h0[ns], c0[ns], *w, dy[ts, ns],
                None if dh_n is None else dh_n[ns], None if dc_n is None else dc_n[ns],
                reverse=reverse, peephole=_f64(p["peephole"]), input_forget=p["input_forget"],
                w_hr=w_hr)
            if dinp is not None:
                dinp[ts, ns] += r["dx"]
            dstate0[0][ns] = r["dh0"]
            if dstate0[1] is not None:
                dstate0[1][ns] = r["dc0"]
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                if g[name] is not None:
                    g[name] += r["d" + name].astype(np.float32)
            if g["peephole"] is not None:
                g["peephole"] += r["dpeephole"].astype(np.float32)
            if g.get("w_hr") is not None:
                g["w_hr"] += r["dw_hr"].astype(np.float32)

    def release(self, tapes, pool, limit):
        """Hand the buffers of consumed tapes back to `pool`."""

    def step_plan(self, cell, N, I, H, layers, n_threads):
        """A compiled plan of one time step through stacked unidirectional
        layers (``plan.step(x, (h, c)) -> (y, (h, c))``), or None: the layers
        then run a T = 1 sequence instead."""
        return None

    # ------------------------------------------------------------ int8 inference

    def qpack(self, wq, sw, G, H):
        """The kernels' packed form of int8 weights wq [G*H, K] with row
        scales sw (None here: the reference reads wq and sw themselves)."""
        return None

    def qunpack(self, packed, G, H, K):
        """(wq, sw) back from qpack's form (never called here: qpack gives None)."""
        raise NotImplementedError

    def qact_max(self):
        """The activations' range Q of the int8 products (q in [-Q, Q]):
        127 here; the C ops report their int8 path's (63 on avx2_7bit)."""
        return 127

    def qlayer_forward(self, cell, inp, state0, p, *, T, N, batch_first, reverse, lengths, y,
                       col, state_n, n_threads, **_):
        """layer_forward with int8 weights: p's 'w_ih', 'w_hh' (and 'w_hr')
        are rnncore.engine.quantized.Int8Weight (``.shape``, ``.packed``,
        ``.int8()`` -> (wq, sw)); biases and the LSTM variants as in
        layer_forward."""
        h0, c0 = state0
        R, H = p["w_hh"].shape[1], p["w_ih"].shape[0] // cell.gates
        w_hr = None if p.get("w_hr") is None else p["w_hr"].int8()
        yd, h_n, c_n = reference.qlayer_forward(
            cell.mode, inp, _state64(h0, N, R), _state64(c0, N, H), p["w_ih"].int8(),
            p["w_hh"].int8(), _f64(p["b_ih"]), _f64(p["b_hh"]), reverse=reverse,
            peephole=_f64(p["peephole"]), input_forget=p["input_forget"], lengths=lengths,
            w_hr=w_hr, act_max=self.qact_max())
        y[..., col:col + R] = yd
        state_n[0][...] = h_n
        if state_n[1] is not None:
            state_n[1][...] = c_n

    def qstep_plan(self, cell, N, I, H, layers, n_threads):
        """step_plan for int8 layers (None: a T = 1 sequence instead)."""
        return None

    def qlinear(self, x, w, bias, n_threads):
        """x [M, K] float32 (M > 0) through the Int8Weight w [Nout, K], plus
        bias: float32 [M, Nout]."""
        return reference.qlinear(x, *w.int8(), bias, act_max=self.qact_max())

    # ------------------------------------------------------------ output layer

    def matmul(self, a, b, out, accumulate, n_threads):
        """out (+)= a @ b for float32 2-D arrays (shapes checked by the caller)."""
        r = reference.matmul(a, b)
        if accumulate:
            out += r
        else:
            out[...] = r
        return out

    def linear(self, x, w, w_p, bias, n_threads, out=None):
        """x @ w.T (+ bias) for float32 x [M, K] (rows of any stride) and a
        constant w [Nout, K] whose packed form is w_p (runtime.pack); M > 0;
        into out (float32 [M, Nout], C-contiguous) when given."""
        y = reference.matmul(x, w.T)
        if bias is not None:
            y += bias
        if out is not None:
            out[...] = y
            return out
        return y

    def scatter_add_rows(self, dst, index, src, n_threads):
        """dst[index[r]] += src[r] for every row r in order: float32 dst [V, E]
        (C-contiguous), int64 index [M] in [0, V), float32 src [M, E]."""
        np.add.at(dst, index, src)
        return dst

    def softmax(self, x2, out, log, n_threads):
        """out = softmax (log-softmax with log) of each row of float32 x2
        [M, V] (M, V > 0; rows of any stride, columns contiguous); out has
        x2's shape and may be x2 itself."""
        out[...] = reference.softmax(x2, log)
        return out

    def softmax_xent(self, z2, t2, scale, grad, in_place, n_threads):
        """Per-row losses of C-contiguous float32 logits [M, V] against int64
        targets [M] and dz = scale * d loss / dz (None without grad; written
        over z2 with in_place). M > 0."""
        losses, dz = reference.softmax_xent(z2, t2, scale, grad)
        if in_place and dz is not None:
            z2[...] = dz
            dz = z2
        return losses, dz
