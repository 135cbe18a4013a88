"""The specification of rnncore in NumPy: every cell's forward and backward
pass, padded batches, stacking, the fused softmax cross-entropy and matmul.

It is the test oracle, the backend that runs where the C extension is
missing (or with ``RNNCORE_BACKEND=reference``, see rnncore.engine.ops) and
the executable statement of gate order and layout. Everything computes in
the dtype it is given (float64 in the tests and the reference backend) with
an explicit loop over time. It imports nothing of rnncore's.

Conventions are PyTorch's:

* Weights ``w_ih`` ``[G*H, I]``, ``w_hh`` ``[G*H, H]``, biases ``[G*H]``, gates
  stored as contiguous blocks of ``H`` rows. Sequences are time-major:
  ``x`` ``[T, N, I]``, ``y`` ``[T, N, H]``, states ``[N, H]``.
* RNN (G = 1, modes "RNN_TANH" and "RNN_RELU")::

      h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),  act = tanh or relu

* LSTM (G = 4, mode "LSTM"), gate order **i, f, g, o**::

      i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
      g = tanh   (W_ig x + b_ig + W_hg h + b_hg)
      o = sigmoid(W_io x + b_io + W_ho h + b_ho)
      c_t = f * c_{t-1} + i * g
      h_t = o * tanh(c_t)

  ONNX's variants: ``peephole`` [3H] = (p_i, p_f, p_o) adds p_i*c_{t-1},
  p_f*c_{t-1} and p_o*c_t to the i, f and o pre-activations;
  ``input_forget`` couples f = 1 - i. PyTorch's projection (``proj_size``
  R): ``w_hr`` ``[R, H]`` maps the cell output to the state,
  ``h_t = W_hr (o * tanh(c_t))`` (h, y and ``w_hh`` ``[4H, R]`` are R wide;
  c stays H wide).

* GRU (G = 3, mode "GRU"), gate order **r, z, n**, the reset applied after the
  recurrent product ("linear before reset")::

      r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
      n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
      h_t = (1 - z) * n + z * h_{t-1}

* GRU with the reset before the recurrent product (mode "GRU_RB": ONNX's
  default ``linear_before_reset=0``, Keras ``reset_after=False``)::

      n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)

* Activations: the functions above are the defaults. ONNX models may name
  others: ``acts`` = (f, g, h) replaces (sigmoid, tanh, tanh) of an LSTM,
  (f, g) replaces (sigmoid, tanh) of a GRU and (f,) the RNN's act; ``clip``
  bounds every activation's input to [-clip, clip]. Backward is defined for
  the defaults only.

* Padded batches: with ``lengths`` [N], sequence n has lengths[n] steps. Its
  outputs past them are 0, its final state is the one after its last step,
  and a reverse direction starts at that step (PyTorch's
  pack_padded_sequence -> layer -> pad_packed_sequence). Each sequence is
  computed alone, so a padded batch gives exactly what the sequences give
  one at a time.
"""
import numpy as np

__all__ = ["sigmoid", "layer_forward", "layer_backward", "stack_forward", "softmax_xent", "softmax",
           "matmul", "reverse_within", "quantize_rows", "quantize_weight", "qproduct", "qlinear",
           "QWeight", "qlayer_forward"]


def sigmoid(x):
    """Logistic function, written through tanh so it never overflows."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _relu(x):
    return np.maximum(x, 0)


def _no_clip(v):
    return v


def _gate_input(x, w_ih, b_ih, b_hh, recurrent_bias_blocks):
    """gx[t] = x[t] @ w_ih.T + b_ih (+ b_hh on the first `recurrent_bias_blocks`
    rows of gates): the input projection of all steps at once."""
    gx = x @ w_ih.T
    if b_ih is not None:
        gx = gx + b_ih
    if b_hh is not None and recurrent_bias_blocks:
        k = recurrent_bias_blocks
        gx[..., :k] = gx[..., :k] + b_hh[:k]
    return gx


def _steps(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


# ------------------------------------------------------------ cells, forward
#
# Each cell's forward walks the sequence once. With `tape` (a list) it appends,
# per step in processing order, what its backward needs:
# (t, h_{t-1}, c_{t-1}, values), the values being the activated gates
# (LSTM i, f, g, o, c_t; GRU r, z, n, hn = W_hn h_{t-1} + b_hn;
# GRU_RB r, z, n, rh = r * h_{t-1}; RNN h_t).

def _rnn(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, reverse, act, clip, tape, **_):
    H = w_hh.shape[1]
    gx = _gate_input(x, w_ih, b_ih, b_hh, H)
    y = np.empty(x.shape[:2] + (H,), dtype=gx.dtype)
    h = h0
    for t in _steps(x.shape[0], reverse):
        # 1. h_t = act(gx_t + W_hh h_{t-1})
        h_prev, h = h, act[0](clip(gx[t] + h @ w_hh.T))
        if tape is not None:
            tape.append((t, h_prev, None, (h,)))
        y[t] = h
    return y, h, None


def _lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, reverse, act, clip, tape, peephole=None,
          input_forget=False, w_hr=None):
    H = w_hh.shape[0] // 4
    gx = _gate_input(x, w_ih, b_ih, b_hh, 4 * H)
    y = np.empty(x.shape[:2] + (w_hh.shape[1],), dtype=gx.dtype)
    f_act, g_act, h_act = act
    h, c = h0, c0
    p = np.zeros(3 * H) if peephole is None else peephole
    for t in _steps(x.shape[0], reverse):
        # 1. gates = gx_t + W_hh h_{t-1} (+ peepholes)
        a = gx[t] + h @ w_hh.T
        i = f_act(clip(a[:, 0 * H:1 * H] + p[:H] * c))
        f = 1.0 - i if input_forget else f_act(clip(a[:, 1 * H:2 * H] + p[H:2 * H] * c))
        g = g_act(clip(a[:, 2 * H:3 * H]))
        # 2. c_t = f * c_{t-1} + i * g
        c_new = f * c + i * g
        # 3. h_t = o * tanh(c_t) (projected: W_hr (o * tanh(c_t)))
        o = f_act(clip(a[:, 3 * H:4 * H] + p[2 * H:] * c_new))
        if tape is not None:
            tape.append((t, h, c, (i, f, g, o, c_new)))
        c, h = c_new, o * h_act(clip(c_new))
        if w_hr is not None:
            h = h @ w_hr.T
        y[t] = h
    return y, h, c


def _gru(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, reverse, act, clip, tape, **_):
    H = w_hh.shape[1]
    gx = _gate_input(x, w_ih, b_ih, b_hh, 2 * H)  # b_hn stays inside the reset product
    b_hn = b_hh[2 * H:] if b_hh is not None else 0.0
    y = np.empty(x.shape[:2] + (H,), dtype=gx.dtype)
    f_act, g_act = act
    h = h0
    for t in _steps(x.shape[0], reverse):
        # 1. a = W_hh h_{t-1}
        a = h @ w_hh.T
        r = f_act(clip(gx[t][:, 0 * H:1 * H] + a[:, 0 * H:1 * H]))
        z = f_act(clip(gx[t][:, 1 * H:2 * H] + a[:, 1 * H:2 * H]))
        # 2. n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        hn = a[:, 2 * H:3 * H] + b_hn
        n = g_act(clip(gx[t][:, 2 * H:3 * H] + r * hn))
        if tape is not None:
            tape.append((t, h, None, (r, z, n, hn)))
        # 3. h_t = (1 - z) * n + z * h_{t-1}
        h = (1.0 - z) * n + z * h
        y[t] = h
    return y, h, None


def _gru_rb(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, reverse, act, clip, tape, **_):
    H = w_hh.shape[1]
    gx = _gate_input(x, w_ih, b_ih, b_hh, 3 * H)  # every recurrent bias is outside a product
    y = np.empty(x.shape[:2] + (H,), dtype=gx.dtype)
    f_act, g_act = act
    h = h0
    for t in _steps(x.shape[0], reverse):
        # 1. r, z from W_h{r,z} h_{t-1}
        a = h @ w_hh[:2 * H].T
        r = f_act(clip(gx[t][:, :H] + a[:, :H]))
        z = f_act(clip(gx[t][:, H:2 * H] + a[:, H:]))
        # 2. n = tanh(W_in x + b_in + b_hn + W_hn (r * h_{t-1}))
        rh = r * h
        n = g_act(clip(gx[t][:, 2 * H:] + rh @ w_hh[2 * H:].T))
        if tape is not None:
            tape.append((t, h, None, (r, z, n, rh)))
        # 3. h_t = (1 - z) * n + z * h_{t-1}
        h = (1.0 - z) * n + z * h
        y[t] = h
    return y, h, None


# mode -> (forward, default activations)
_CELLS = {
    "RNN_TANH": (_rnn, (np.tanh,)),
    "RNN_RELU": (_rnn, (_relu,)),
    "LSTM": (_lstm, (sigmoid, np.tanh, np.tanh)),
    "GRU": (_gru, (sigmoid, np.tanh)),
    "GRU_RB": (_gru_rb, (sigmoid, np.tanh)),
}


_CELLS_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3, "GRU_RB": 3}


def _check_mode(mode):
    if mode not in _CELLS:
        raise ValueError(f"mode must be one of {sorted(_CELLS)}, got {mode!r}")


def _one_sequence_at_a_time(x, lengths, run):
    """Apply run(x_n [len_n, 1, F], n) -> (y_n, h_n, c_n) to each sequence of
    a padded batch and assemble (y, h_n, c_n) (y zero past each length)."""
    y = h_n = c_n = None
    for n, ln in enumerate(np.asarray(lengths).tolist()):
        yn, hn, cn = run(x[:ln, n:n + 1], n)
        if y is None:
            y = np.zeros(x.shape[:2] + yn.shape[2:], yn.dtype)
            h_n = np.empty((x.shape[1],) + hn.shape[1:], hn.dtype)
            c_n = None if cn is None else np.empty((x.shape[1],) + cn.shape[1:], cn.dtype)
        y[:ln, n] = yn[:, 0]
        h_n[n] = hn[0]
        if c_n is not None:
            c_n[n] = cn[0]
    return y, h_n, c_n


def layer_forward(mode, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False,
                  peephole=None, input_forget=False, lengths=None, acts=None, clip=None,
                  tape=None, w_hr=None):
    """One layer-direction of any cell over a sequence.

    mode: 'RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU' or 'GRU_RB'. x ``[T, N, I]``,
    h0 and c0 ``[N, H]`` (c0 used by LSTM only), weights as in the module
    docstring, ``reverse`` runs from t = T-1 down to 0; ``peephole`` and
    ``input_forget``: the LSTM variants; ``w_hr``: the LSTM projection
    ``[R, H]`` (then h0, y and h_n are R wide); ``lengths``: a padded batch;
    ``acts`` and ``clip``: ONNX's activation functions (module docstring).
    ``tape``: a list that receives what :func:`layer_backward` needs (no
    lengths). Returns ``(y [T, N, H], h_n [N, H], c_n [N, H] or None)``.

    IEEE semantics: NaN and Inf propagate as they would in exact arithmetic, so
    floating-point warnings are silenced here rather than raised.
    """
    _check_mode(mode)
    forward, default = _CELLS[mode]
    if w_hr is not None and mode != "LSTM":
        raise ValueError("w_hr (a projection) is an LSTM option")
    kw = dict(reverse=reverse, act=acts or default,
              clip=_no_clip if clip is None else (lambda v: np.clip(v, -clip, clip)),
              peephole=peephole, input_forget=input_forget, w_hr=w_hr)
    with np.errstate(all="ignore"):
        if lengths is None:
            return forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, tape=tape, **kw)
        if tape is not None:
            raise ValueError("a tape is recorded for whole sequences only")
        return _one_sequence_at_a_time(x, lengths, lambda xn, n: forward(
            xn, h0[n:n + 1], None if c0 is None else c0[n:n + 1], w_ih, w_hh, b_ih, b_hh,
            tape=None, **kw))


# ------------------------------------------------------------ cells, backward

def layer_backward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dy, dh_n=None, dc_n=None, *,
                   reverse=False, peephole=None, input_forget=False, w_hr=None):
    """Gradients of one layer-direction by backpropagation through time.

    Same arguments as :func:`layer_forward` (c0 is ignored unless LSTM), plus
    dy ``[T, N, H]`` (gradient of the loss with respect to y), dh_n and dc_n
    ``[N, H]`` or None. The forward pass is recomputed here (with its tape).
    Per step, from the last processed to the first, with dh = dy_t + the
    gradient from step t+1 and dA the gradient of a gate's pre-activation
    (input plus recurrent part, biases included)::

        RNN   dA = dh * (1 - h_t^2)  (tanh)  or  dh * [h_t > 0]  (relu)
        LSTM  dc = dc + dh * o * (1 - tanh(c_t)^2)
              dA_i = dc * g * i(1-i)       dA_f = dc * c_{t-1} * f(1-f)
              dA_g = dc * i * (1-g^2)      dA_o = dh * tanh(c_t) * o(1-o)
              dc_{t-1} = dc * f
        GRU   dn = dh * (1-z) * (1-n^2)    dA_z = dh * (h_{t-1} - n) * z(1-z)
              dA_r = dn * hn * r(1-r)      (hn = W_hn h_{t-1} + b_hn)
              input side (W_ih, b_ih, x): (dA_r, dA_z, dn)
              state side (W_hh, b_hh, h): (dA_r, dA_z, dn * r), plus dh * z to h_{t-1}
        GRU_RB dn, dA_z as GRU;  q = dn W_hn;  dA_r = q * h_{t-1} * r(1-r)
              (dA_r, dA_z, dn) for W_ih, b_ih, x and b_hh; W_hh: rows r, z get
              (dA_r, dA_z)^T h_{t-1}, rows n get dn^T (r * h_{t-1});
              h_{t-1} gets (dA_r, dA_z) W_h{r,z} + q * r + dh * z

        dh_{t-1} = dA_h W_hh     dx_t = dA_x W_ih
        dW_ih += dA_x^T x_t      dW_hh += dA_h^T h_{t-1}
        db_ih += sum_n dA_x      db_hh += sum_n dA_h

    LSTM variants: with peepholes dA_o enters dc (dc += dA_o * p_o), c_{t-1}
    gets dA_i * p_i + dA_f * p_f besides dc * f, and dP = (sum dA_i c_{t-1},
    sum dA_f c_{t-1}, sum dA_o c_t); with input_forget (f = 1 - i) dA_i =
    dc * (g - c_{t-1}) * i(1-i) and dA_f = 0.

    Returns a dict with 'dx' ``[T, N, I]``, 'dh0', 'dc0' (None unless LSTM),
    'dw_ih', 'dw_hh', 'db_ih', 'db_hh' and 'dpeephole' (None without
    peepholes).
    """
    with np.errstate(all="ignore"):
        steps = []
        layer_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                      peephole=peephole, input_forget=input_forget, tape=steps, w_hr=w_hr)
        H = w_ih.shape[0] // _CELLS_GATES[mode]
        dw_hr = None if w_hr is None else np.zeros_like(w_hr)
        p = np.zeros(3 * H) if peephole is None else peephole
        dp = np.zeros(3 * H)
        dx = np.zeros_like(x)
        dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
        db_ih, db_hh = np.zeros(w_ih.shape[0]), np.zeros(w_hh.shape[0])
        dh = np.zeros_like(h0) if dh_n is None else np.array(dh_n, dtype=h0.dtype)
        dc = np.zeros((h0.shape[0], H), h0.dtype) if dc_n is None else np.array(dc_n, h0.dtype)
        for t, h_prev, c_prev, gates in reversed(steps):
            dh = dh + dy[t]
            if mode == "LSTM":
                i, f, g, o, c = gates
                tc = np.tanh(c)
                if w_hr is not None:  # d4. h_t = W_hr m_t
                    dw_hr += dh.T @ (o * tc)
                    dh = dh @ w_hr
                # d3. h_t = o * tanh(c_t)
                ao = dh * tc * o * (1 - o)
                dc = dc + dh * o * (1.0 - tc * tc) + ao * p[2 * H:]
                # d2. c_t = f * c_{t-1} + i * g
                if input_forget:
                    ai, af = dc * (g - c_prev) * i * (1 - i), np.zeros_like(dc)
                else:
                    ai, af = dc * g * i * (1 - i), dc * c_prev * f * (1 - f)
                # d1. gates
                da = np.concatenate([ai, af, dc * i * (1 - g * g), ao], axis=1)
                da_x = da_h = da
                dp += np.concatenate([(ai * c_prev).sum(0), (af * c_prev).sum(0), (ao * c).sum(0)])
                dc = dc * f + ai * p[:H] + af * p[H:2 * H]
                direct = 0.0
            elif mode == "GRU_RB":
                r, z, n, rh = gates
                # d3, d2
                dn = dh * (1 - z) * (1 - n * n)
                dz = dh * (h_prev - n) * z * (1 - z)
                q = dn @ w_hh[2 * H:]
                # d1
                dr = q * h_prev * r * (1 - r)
                da_x = da_h = np.concatenate([dr, dz, dn], axis=1)
                dx[t] = da_x @ w_ih
                dw_ih += da_x.T @ x[t]
                dw_hh[:2 * H] += np.concatenate([dr, dz], axis=1).T @ h_prev
                dw_hh[2 * H:] += dn.T @ rh
                db_ih += da_x.sum(axis=0)
                db_hh += da_h.sum(axis=0)
                dh = np.concatenate([dr, dz], axis=1) @ w_hh[:2 * H] + q * r + dh * z
                continue
            elif mode == "GRU":
                r, z, n, hn = gates
                # d3, d2
                dn = dh * (1 - z) * (1 - n * n)
                # d1
                dr = dn * hn * r * (1 - r)
                dz = dh * (h_prev - n) * z * (1 - z)
                da_x = np.concatenate([dr, dz, dn], axis=1)
                da_h = np.concatenate([dr, dz, dn * r], axis=1)
                direct = dh * z
            else:
                (h_t,) = gates
                # d1. h_t = act(...)
                da = dh * (1 - h_t * h_t) if mode == "RNN_TANH" else dh * (h_t > 0)
                da_x = da_h = da
                direct = 0.0
            dx[t] = da_x @ w_ih
            dw_ih += da_x.T @ x[t]
            dw_hh += da_h.T @ h_prev
            db_ih += da_x.sum(axis=0)
            db_hh += da_h.sum(axis=0)
            dh = da_h @ w_hh + direct
        return {"dx": dx, "dh0": dh, "dc0": dc if mode == "LSTM" else None,
                "dw_ih": dw_ih, "dw_hh": dw_hh, "db_ih": db_ih, "db_hh": db_hh,
                "dpeephole": dp if peephole is not None else None, "dw_hr": dw_hr}


# ------------------------------------------------------------ stacking

def stack_forward(mode, x, h0, c0, layers, *, lengths=None):
    """Stacked, optionally bidirectional layers: the meaning of num_layers and
    bidirectional.

    x ``[T, N, I]``; h0, c0 ``[L*D, N, H]`` or None (zeros); layers: per layer a
    list of D (1 or 2) dicts with 'w_ih', 'w_hh', 'b_ih', 'b_hh' (None without
    bias) and optionally 'peephole', 'input_forget' and 'w_hr' (an LSTM
    projection: h, y and the states h0 / h_n are then R wide). Direction 1 runs in
    reverse. Layer l > 0 reads the concatenation (forward first) of layer
    l-1's directions; layer l direction d starts from state l*D + d.
    Returns ``(y [T, N, D*H], h_n [L*D, N, H], c_n or None)``.
    """
    inp = x
    N = x.shape[1]
    hs, cs = [], []
    for li, directions in enumerate(layers):
        outs = []
        for d, p in enumerate(directions):
            k = li * len(directions) + d
            R, H = p["w_hh"].shape[1], p["w_ih"].shape[0] // _CELLS_GATES[mode]
            h = np.zeros((N, R), x.dtype) if h0 is None else h0[k]
            c = np.zeros((N, H), x.dtype) if c0 is None else c0[k]
            y, hk, ck = layer_forward(mode, inp, h, c, p["w_ih"], p["w_hh"], p.get("b_ih"),
                                      p.get("b_hh"), reverse=d == 1, lengths=lengths,
                                      peephole=p.get("peephole"),
                                      input_forget=p.get("input_forget", False),
                                      w_hr=p.get("w_hr"))
            outs.append(y)
            hs.append(hk)
            cs.append(ck)
        inp = np.concatenate(outs, axis=2)
    return inp, np.stack(hs), (np.stack(cs) if mode == "LSTM" else None)


def reverse_within(a, lengths):
    """Each sequence (axis 1) of time-major a [T, N, F] reversed within its
    length, zeros past it: ``rev[s, n] = a[len_n - 1 - s, n]`` for s < len_n,
    its own inverse on the valid part."""
    out = np.zeros_like(a)
    for n, ln in enumerate(np.asarray(lengths).tolist()):
        out[:ln, n] = a[ln - 1::-1, n]
    return out


# ------------------------------------------------------------ output layer

def softmax_xent(z, t, scale, grad):
    """Per-row cross-entropy of softmax(z) against targets, in float64.

    z ``[M, V]``, t ``[M]`` integers (negative: ignored, loss 0 and no
    gradient). ``loss_r = log(sum_v exp(z_rv)) - z_r,t_r`` (computed as
    ``log(sum exp(z - max)) + max - z_t``); ``dz = scale * (softmax(z) -
    onehot(t))``. Returns (losses float32 [M], dz float32 [M, V] or None).
    """
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


def softmax(x, log=False):
    """softmax (or log-softmax, with log) over the last axis of x, in
    float64: ``z = x - max(x)``, ``exp(z) / sum(exp(z))`` or
    ``z - log(sum(exp(z)))``; rows holding NaN or +inf, and rows all -inf,
    give NaN. Returned in float64."""
    x64 = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        z = x64 - x64.max(axis=-1, keepdims=True)
        s = np.exp(z).sum(axis=-1, keepdims=True)
        return z - np.log(s) if log else np.exp(z) / s


def matmul(a, b):
    """a @ b in float64, rounded to the arrays' dtype: the reference
    backend's GEMM. A float32 product would be NumPy's BLAS's own summation
    order, which its per-CPU kernels choose (OpenBLAS's Haswell and SkylakeX
    sgemm kernels gave different bits for the same language-model gradients);
    in float64 the order stays below float32's rounding."""
    dtype = np.result_type(a, b)
    if dtype == np.float64:
        return a @ b
    return (np.asarray(a, np.float64) @ np.asarray(b, np.float64)).astype(dtype)


# ------------------------------------------------------------ int8 inference
#
# The scheme of rnncore's int8 kernels (csrc/include/rnncore_int8.h), in
# exact integer arithmetic: int8 weights with one float32 scale per output
# row; activations quantized at every product, one scale per row (per row of
# the batch: x_t, h_{t-1}, r * h_{t-1}, the projection's input):
#   a = max |v|,  s = a / Q,  q = rint(v * (Q / a))     (float32)
# with Q = act_max: 127, or 63 on the C kernels' avx2_7bit path (7-bit
# activations where the CPU has no VNNI; Ops.qact_max() says which)
#   acc = q @ Wq^T  (exact; int64 here),  out = float32(acc) * (s * sw)
# rows with a < 2^-100 give s = 0, q = 0; rows with NaN or inf give s = NaN.
# The C kernels produce the same integers and the same float32 `out` on
# every CPU path; the cells then run on the float64 code above.

Q_TINY = np.float32(2.0 ** -100)


def quantize_rows(v, act_max=127):
    """(q int8 [M, K], s float32 [M]): each row of float32 v [M, K]
    quantized on its own to q in [-act_max, act_max], as the kernels do."""
    v = np.asarray(v, np.float32)
    with np.errstate(all="ignore"):
        a = np.abs(v).max(axis=1)
        bad = ~np.isfinite(v).all(axis=1)
        zero = ~bad & (a < Q_TINY)
        safe = np.where(bad | zero, np.float32(1), a).astype(np.float32)
        Q = np.float32(act_max)
        inv = (Q / safe).astype(np.float32)
        q = np.clip(np.rint(v * inv[:, None]), -Q, Q).astype(np.int8)
        s = (safe / Q).astype(np.float32)
    q[bad | zero] = 0
    s[zero] = 0
    s[bad] = np.nan
    return q, s


def quantize_weight(w, per_tensor=False):
    """(wq int8 [rows, K], sw float32 [rows]) with w ~ sw[:, None] * wq:
    symmetric, |wq| <= 127, one scale per row (``per_tensor``: one for the
    whole matrix, repeated per row); all-zero rows get scale 0."""
    w = np.asarray(w, np.float64)
    a = np.abs(w).max(axis=1) if w.size else np.zeros(w.shape[0])
    if per_tensor:
        a = np.full(w.shape[0], a.max() if a.size else 0.0)
    sw = (a / 127.0).astype(np.float32)
    safe = np.where(sw > 0, sw, 1.0).astype(np.float64)
    wq = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    return wq, sw


def qproduct(v, wq, sw, act_max=127):
    """(out float32 [M, J], acc int64 [M, J], s [M]) for v [M, K] and int8
    weights wq [J, K] with row scales sw [J]: the kernels' product."""
    q, s = quantize_rows(v, act_max)
    acc = q.astype(np.int64) @ wq.astype(np.int64).T
    with np.errstate(all="ignore"):
        out = acc.astype(np.float32) * (s[:, None] * np.asarray(sw, np.float32)[None, :])
    return out, acc, s


def qlinear(x, wq, sw, bias=None, act_max=127):
    """x [M, K] -> float32 [M, J]: the product plus the bias (rnc_qlinear)."""
    out = qproduct(x, wq, sw, act_max)[0]
    return out if bias is None else out + np.asarray(bias, np.float32)


class QWeight:
    """An int8 weight that the cell code above uses in place of a float one:
    ``v @ w.T`` is the kernels' product (on float32 rows of v, any leading
    dimensions, activations to q in [-act_max, act_max]), ``w[a:b]`` its
    rows, ``w.shape`` its shape."""

    def __init__(self, wq, sw, act_max=127):
        self.wq, self.sw = np.asarray(wq, np.int8), np.asarray(sw, np.float32)
        self.act_max = act_max
        self.shape = self.wq.shape

    @property
    def T(self):
        return _QTransposed(self)

    def __getitem__(self, rows):
        return QWeight(self.wq[rows], self.sw[rows], self.act_max)


class _QTransposed:
    __array_ufunc__ = None  # ndarray @ this defers to __rmatmul__

    def __init__(self, w):
        self.w = w

    def __rmatmul__(self, v):
        v = np.asarray(v)
        flat = v.reshape(-1, v.shape[-1]).astype(np.float32)
        out = qproduct(flat, self.w.wq, self.w.sw, self.w.act_max)[0].astype(np.float64)
        return out.reshape(v.shape[:-1] + (self.w.shape[0],))


def qlayer_forward(mode, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False,
                   peephole=None, input_forget=False, lengths=None, w_hr=None, act_max=127):
    """:func:`layer_forward` with int8 weights: w_ih, w_hh (and w_hr) are
    (wq, sw) pairs; every product is the kernels' int8 one (activations to
    q in [-act_max, act_max]), everything else (biases, gates, cell state)
    the float64 code of the cells above."""
    q = lambda w: None if w is None else QWeight(*w, act_max)  # noqa: E731
    return layer_forward(mode, x, h0, c0, q(w_ih), q(w_hh), b_ih, b_hh, reverse=reverse,
                         peephole=peephole, input_forget=input_forget, lengths=lengths,
                         w_hr=q(w_hr))
