"""Pure-NumPy reference of the rnncore kernels: the test oracle, the fallback
backend (``RNNCORE_BACKEND=reference``) and the executable specification of
gate order and layout.

Everything computes in the dtype it is given (float64 in the tests) with an
explicit loop over time. Conventions are PyTorch's:

* Weights ``w_ih`` ``[G*H, I]``, ``w_hh`` ``[G*H, H]``, biases ``[G*H]``, gates
  stored as contiguous blocks of ``H`` rows.
* RNN (G = 1): ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``,
  ``act`` = tanh or relu.
* LSTM (G = 4), gate order **i, f, g, o**::

      i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
      g = tanh   (W_ig x + b_ig + W_hg h + b_hg)
      o = sigmoid(W_io x + b_io + W_ho h + b_ho)
      c_t = f * c_{t-1} + i * g
      h_t = o * tanh(c_t)

* GRU (G = 3), gate order **r, z, n**, reset applied after the recurrent
  product ("linear before reset")::

      r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
      n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
      h_t = (1 - z) * n + z * h_{t-1}

* GRU with the reset gate applied *before* the recurrent product (mode
  "GRU_RB": ONNX's default ``linear_before_reset=0``, Keras
  ``reset_after=False``)::

      n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)

Backward (:func:`layer_backward`) is plain BPTT over the same equations, with
the derivatives written out step by step (see its docstring).

Sequences are time-major here: ``x`` is ``[T, N, I]``; the layer wrappers in
:mod:`rnncore.layers` handle ``batch_first``, unbatched input, stacking and
directions.
"""
import numpy as np

__all__ = ["sigmoid", "rnn_forward", "lstm_forward", "gru_forward", "layer_forward",
           "layer_backward"]


def sigmoid(x):
    """Logistic function, written through tanh so it never overflows."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


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


def rnn_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", reverse=False):
    """Elman RNN over a sequence.

    ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, act = tanh or relu.

    Parameters: x ``[T, N, I]``, h0 ``[N, H]``, w_ih ``[H, I]``, w_hh ``[H, H]``,
    b_ih, b_hh ``[H]`` or None. ``reverse`` runs from t = T-1 down to 0.
    Returns ``y [T, N, H]`` and ``h_n [N, H]``.
    """
    act = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0)}[nonlinearity]
    T = x.shape[0]
    H = w_hh.shape[1]
    gx = _gate_input(x, w_ih, b_ih, b_hh, H)
    y = np.empty(x.shape[:2] + (H,), dtype=gx.dtype)
    h = h0
    for t in _steps(T, reverse):
        # 1. h_t = act(gx_t + W_hh h_{t-1})
        h = act(gx[t] + h @ w_hh.T)
        y[t] = h
    return y, h


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False,
                 peephole=None, input_forget=False):
    """LSTM over a sequence, gate order i, f, g, o (equations in the module
    docstring). ONNX's variants: ``peephole`` [3H] (p_i, p_f, p_o) adds
    p_i*c_{t-1}, p_f*c_{t-1} and p_o*c_t to the i, f and o pre-activations;
    ``input_forget`` couples f = 1 - i.

    Parameters: x ``[T, N, I]``, h0, c0 ``[N, H]``, w_ih ``[4H, I]``,
    w_hh ``[4H, H]``, b_ih, b_hh ``[4H]`` or None.
    Returns ``y [T, N, H]``, ``h_n [N, H]``, ``c_n [N, H]``.
    """
    T = x.shape[0]
    H = w_hh.shape[1]
    gx = _gate_input(x, w_ih, b_ih, b_hh, 4 * H)
    y = np.empty(x.shape[:2] + (H,), dtype=gx.dtype)
    h, c = h0, c0
    p = np.zeros(3 * H) if peephole is None else peephole
    for t in _steps(T, reverse):
        # 1. gates = gx_t + W_hh h_{t-1} (+ peepholes)
        a = gx[t] + h @ w_hh.T
        i = sigmoid(a[:, 0 * H:1 * H] + p[:H] * c)
        f = 1.0 - i if input_forget else sigmoid(a[:, 1 * H:2 * H] + p[H:2 * H] * c)
        g = np.tanh(a[:, 2 * H:3 * H])
        # 2. c_t = f * c_{t-1} + i * g
        c = f * c + i * g
        # 3. h_t = o * tanh(c_t)
        o = sigmoid(a[:, 3 * H:4 * H] + p[2 * H:] * c)
        h = o * np.tanh(c)
        y[t] = h
    return y, h, c


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False):
    """GRU over a sequence, gate order r, z, n, reset after the recurrent
    product (equations in the module docstring).

    Parameters: x ``[T, N, I]``, h0 ``[N, H]``, w_ih ``[3H, I]``,
    w_hh ``[3H, H]``, b_ih, b_hh ``[3H]`` or None.
    Returns ``y [T, N, H]`` and ``h_n [N, H]``.
    """
    T = x.shape[0]
    H = w_hh.shape[1]
    gx = _gate_input(x, w_ih, b_ih, b_hh, 2 * H)  # b_hn stays inside the reset product
    b_hn = b_hh[2 * H:] if b_hh is not None else 0.0
    y = np.empty(x.shape[:2] + (H,), dtype=gx.dtype)
    h = h0
    for t in _steps(T, reverse):
        # 1. a = W_hh h_{t-1}
        a = h @ w_hh.T
        r = sigmoid(gx[t][:, 0 * H:1 * H] + a[:, 0 * H:1 * H])
        z = sigmoid(gx[t][:, 1 * H:2 * H] + a[:, 1 * H:2 * H])
        # 2. n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        n = np.tanh(gx[t][:, 2 * H:3 * H] + r * (a[:, 2 * H:3 * H] + b_hn))
        # 3. h_t = (1 - z) * n + z * h_{t-1}
        h = (1.0 - z) * n + z * h
        y[t] = h
    return y, h


def gru_rb_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False):
    """GRU with the reset gate before the recurrent product (module
    docstring). Same parameters and results as :func:`gru_forward`."""
    T = x.shape[0]
    H = w_hh.shape[1]
    gx = _gate_input(x, w_ih, b_ih, b_hh, 3 * H)  # every recurrent bias is outside a product
    y = np.empty(x.shape[:2] + (H,), dtype=gx.dtype)
    h = h0
    for t in _steps(T, reverse):
        # 1. r, z from W_h{r,z} h_{t-1}
        a = h @ w_hh[:2 * H].T
        r = sigmoid(gx[t][:, :H] + a[:, :H])
        z = sigmoid(gx[t][:, H:2 * H] + a[:, H:])
        # 2. n = tanh(W_in x + b_in + b_hn + W_hn (r * h_{t-1}))
        n = np.tanh(gx[t][:, 2 * H:] + (r * h) @ w_hh[2 * H:].T)
        # 3. h_t = (1 - z) * n + z * h_{t-1}
        h = (1.0 - z) * n + z * h
        y[t] = h
    return y, h


def layer_forward(mode, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False,
                  peephole=None, input_forget=False):
    """One layer-direction of any cell: ``mode`` is 'RNN_TANH', 'RNN_RELU',
    'LSTM', 'GRU' or 'GRU_RB'. Returns ``(y, h_n, c_n)`` with ``c_n`` None unless LSTM.

    IEEE semantics: NaN and Inf propagate as they would in exact arithmetic, so
    floating-point warnings are silenced here rather than raised.
    """
    with np.errstate(all="ignore"):
        if mode == "LSTM":
            return lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                                peephole=peephole, input_forget=input_forget)
        if mode == "GRU":
            return gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse) + (None,)
        if mode == "GRU_RB":
            return gru_rb_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse) + (None,)
        nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[mode]
        return rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh,
                           nonlinearity=nonlinearity, reverse=reverse) + (None,)


def _forward_steps(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, peephole=None,
                   input_forget=False):
    """The forward pass keeping, per step in processing order, what BPTT
    needs: (t, h_prev, c_prev, gates) with gates the activated values (LSTM
    i, f, g, o and c_t; GRU r, z, n and hn = W_hn h_prev + b_hn; GRU_RB r, z,
    n and rh = r * h_prev; RNN h_t)."""
    H = w_hh.shape[1]
    bi = b_ih if b_ih is not None else np.zeros(w_ih.shape[0])
    bh = b_hh if b_hh is not None else np.zeros(w_hh.shape[0])
    h, c, steps = h0, c0, []
    for t in _steps(x.shape[0], reverse):
        gi = x[t] @ w_ih.T + bi
        gh = h @ w_hh.T + bh
        if mode == "LSTM":
            a = gi + gh
            p = np.zeros(3 * H) if peephole is None else peephole
            i = sigmoid(a[:, :H] + p[:H] * c)
            f = 1.0 - i if input_forget else sigmoid(a[:, H:2 * H] + p[H:2 * H] * c)
            g = np.tanh(a[:, 2 * H:3 * H])
            c_new = f * c + i * g
            o = sigmoid(a[:, 3 * H:] + p[2 * H:] * c_new)
            steps.append((t, h, c, (i, f, g, o, c_new)))
            c, h = c_new, o * np.tanh(c_new)
        elif mode == "GRU_RB":
            r = sigmoid(gi[:, :H] + gh[:, :H])
            z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            rh = r * h
            n = np.tanh(gi[:, 2 * H:] + bh[2 * H:] + rh @ w_hh[2 * H:].T)
            steps.append((t, h, None, (r, z, n, rh)))
            h = (1.0 - z) * n + z * h
        elif mode == "GRU":
            r = sigmoid(gi[:, :H] + gh[:, :H])
            z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            hn = gh[:, 2 * H:]
            n = np.tanh(gi[:, 2 * H:] + r * hn)
            steps.append((t, h, None, (r, z, n, hn)))
            h = (1.0 - z) * n + z * h
        else:
            pre = gi + gh
            h_new = np.tanh(pre) if mode == "RNN_TANH" else np.maximum(pre, 0)
            steps.append((t, h, None, (h_new,)))
            h = h_new
    return steps


def layer_backward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dy, dh_n=None, dc_n=None, *,
                   reverse=False, peephole=None, input_forget=False):
    """Gradients of one layer-direction by backpropagation through time.

    Same arguments as :func:`layer_forward` (c0 is ignored unless LSTM), plus
    dy ``[T, N, H]`` (gradient of the loss with respect to y), dh_n and dc_n
    ``[N, H]`` or None. The forward pass is recomputed here. Per step, from the
    last processed to the first, with dh = dy_t + the gradient from step t+1
    and dA the gradient of a gate's pre-activation (input plus recurrent
    part, biases included)::

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
        steps = _forward_steps(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, peephole,
                               input_forget)
        H = w_hh.shape[1]
        p = np.zeros(3 * H) if peephole is None else peephole
        dp = np.zeros(3 * H)
        dx = np.zeros_like(x)
        dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
        db_ih, db_hh = np.zeros(w_ih.shape[0]), np.zeros(w_hh.shape[0])
        dh = np.zeros_like(h0) if dh_n is None else np.array(dh_n, dtype=h0.dtype)
        dc = np.zeros_like(h0) if dc_n is None else np.array(dc_n, dtype=h0.dtype)
        for t, h_prev, c_prev, gates in reversed(steps):
            dh = dh + dy[t]
            if mode == "LSTM":
                i, f, g, o, c = gates
                tc = np.tanh(c)
                ao = dh * tc * o * (1 - o)
                dc = dc + dh * o * (1.0 - tc * tc) + ao * p[2 * H:]
                if input_forget:
                    ai, af = dc * (g - c_prev) * i * (1 - i), np.zeros_like(dc)
                else:
                    ai, af = dc * g * i * (1 - i), dc * c_prev * f * (1 - f)
                da = np.concatenate([ai, af, dc * i * (1 - g * g), ao], axis=1)
                da_x = da_h = da
                dp += np.concatenate([(ai * c_prev).sum(0), (af * c_prev).sum(0), (ao * c).sum(0)])
                dc = dc * f + ai * p[:H] + af * p[H:2 * H]
                direct = 0.0
            elif mode == "GRU_RB":
                r, z, n, rh = gates
                dn = dh * (1 - z) * (1 - n * n)
                dz = dh * (h_prev - n) * z * (1 - z)
                q = dn @ w_hh[2 * H:]
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
                dn = dh * (1 - z) * (1 - n * n)
                dr = dn * hn * r * (1 - r)
                dz = dh * (h_prev - n) * z * (1 - z)
                da_x = np.concatenate([dr, dz, dn], axis=1)
                da_h = np.concatenate([dr, dz, dn * r], axis=1)
                direct = dh * z
            else:
                (h_t,) = gates
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
                "dpeephole": dp if peephole is not None else None}
