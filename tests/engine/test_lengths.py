"""Padded batches with per-sequence lengths: the result of PyTorch's
pack_padded_sequence -> layer -> pad_packed_sequence, forward and backward, on
every CPU path and on the reference backend."""
import numpy as np
import pytest

import rnncore
from rnncore.engine import runtime, stack
from conftest import G_ATOL, G_RTOL, backend, make_layer

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]
TOL = dict(rtol=G_RTOL, atol=G_ATOL)  # outputs and gradients alike (conftest states why)


def case(mode, rng, *, L=2, bi=True, bf=False, T=7, N=5, I=4, H=9):
    layer = make_layer(mode, I, H, num_layers=L, bidirectional=bi, batch_first=bf, seed=3)
    D = 2 if bi else 1
    x = rng.standard_normal((N, T, I) if bf else (T, N, I)).astype(np.float32)
    lengths = np.array([3, 7, 1, 5, 7][:N])
    states = [rng.standard_normal((L * D, N, H)).astype(np.float32) for _ in range(4)]
    d_out = rng.standard_normal((N, T, D * H) if bf else (T, N, D * H)).astype(np.float32)
    return layer, x, lengths, states, d_out


def ours(layer, x, lengths, h0, c0, d_out, dh_n, dc_n, rng=None):
    lstm = layer.mode == "LSTM"
    layer.zero_grad()
    out, hn, tape = layer.forward_train(x, (h0, c0) if lstm else h0, lengths=lengths, rng=rng)
    dx, dhx = layer.backward(tape, d_out, (dh_n, dc_n) if lstm else dh_n)
    h, c = hn if lstm else (hn, None)
    dh0, dc0 = dhx if lstm else (dhx, None)
    return out, h, c, dx, dh0, dc0, {k: v.copy() for k, v in layer.grads.items()}


def theirs(torch, layer, x, lengths, h0, c0, d_out, dh_n, dc_n):
    module = layer.to_torch().double()
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    th0 = torch.tensor(h0, dtype=torch.float64, requires_grad=True)
    tc0 = torch.tensor(c0, dtype=torch.float64, requires_grad=True)
    bf = layer.batch_first
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=bf,
                                                     enforce_sorted=False)
    lstm = layer.mode == "LSTM"
    out_p, state = module(packed, (th0, tc0) if lstm else th0)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=bf, total_length=x.shape[1 if bf else 0])
    hn, cn = state if lstm else (state, None)
    loss = (out * torch.from_numpy(d_out.astype(np.float64))).sum() \
        + (hn * torch.from_numpy(dh_n.astype(np.float64))).sum()
    if lstm:
        loss = loss + (cn * torch.from_numpy(dc_n.astype(np.float64))).sum()
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in module.named_parameters()}
    return (out.detach().numpy(), hn.detach().numpy(), None if cn is None else cn.detach().numpy(),
            tx.grad.numpy(), th0.grad.numpy(), tc0.grad.numpy() if lstm else None, grads)


def assert_same(a, b, where):
    names = ["out", "h_n", "c_n", "dx", "dh0", "dc0"]
    for name, u, v in zip(names, a[:6], b[:6]):
        if v is not None:
            np.testing.assert_allclose(u, v, err_msg=f"{where} {name}", **TOL)
    for k in b[6]:
        np.testing.assert_allclose(a[6][k], b[6][k], err_msg=f"{where} {k}", **TOL)


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", MODES)
def test_lengths_match_torch_packed_sequences(mode, bidirectional, batch_first, rng, n_threads):
    torch = pytest.importorskip("torch")
    layer, x, lengths, (h0, c0, dh_n, dc_n), d_out = case(mode, rng, bi=bidirectional,
                                                          bf=batch_first)
    with backend("c"):
        got = ours(layer, x, lengths, h0, c0, d_out, dh_n, dc_n)
    assert_same(got, theirs(torch, layer, x, lengths, h0, c0, d_out, dh_n, dc_n), mode)


@pytest.mark.parametrize("mode", MODES + ["GRU_RB", "LSTM_PEEPHOLE_CIFG"])
def test_reference_backend_with_lengths_and_dropout(mode, rng):
    layer, x, lengths, (h0, c0, dh_n, dc_n), d_out = case(mode, rng, bf=True)
    layer = make_layer(mode, 4, 9, num_layers=2, bidirectional=True, batch_first=True,
                       dropout=0.3, seed=3)
    with backend("c"):
        got = ours(layer, x, lengths, h0, c0, d_out, dh_n, dc_n, np.random.default_rng(5))
    with backend("reference"):
        ref = ours(layer, x, lengths, h0, c0, d_out, dh_n, dc_n, np.random.default_rng(5))
    assert_same(got, ref, mode)


def test_padding_never_leaks(rng):
    """NaN in the padded steps changes nothing: they are never read."""
    layer, x, lengths, (h0, c0, dh_n, dc_n), d_out = case("LSTM", rng)
    clean = ours(layer, x, lengths, h0, c0, d_out, dh_n, dc_n)
    dirty_x, dirty_d = x.copy(), d_out.copy()
    for n, ln in enumerate(lengths):
        dirty_x[ln:, n] = np.nan
        dirty_d[ln:, n] = np.nan
    dirty = ours(layer, dirty_x, lengths, h0, c0, dirty_d, dh_n, dc_n)
    for n, ln in enumerate(lengths):
        assert not clean[0][ln:, n].any() and not clean[3][ln:, n].any()
    for u, v in zip(clean[:6], dirty[:6]):
        if v is not None:
            np.testing.assert_array_equal(u, v)
    for k in clean[6]:
        np.testing.assert_array_equal(clean[6][k], dirty[6][k])


@pytest.mark.parametrize("stacked", [False, True], ids=["1x1", "2x2"])
@pytest.mark.parametrize("bf", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_full_lengths_equal_no_lengths(ops, mode, bf, stacked, rng, n_threads):
    """The padded-batch path with every length = T gives the plain path's
    answer, forward and backward. layer() hands all-full lengths to the plain
    path itself, so the padded path is forced here through the engine's loop.

    Bit for bit, except where the float32 summation order differs by design:
    the kernels' plain path adds the reverse direction's input gradient
    inside its GEMM (per K block) while the padded path adds each direction's
    finished product, so below a bidirectional layer the gradients agree to
    float32 rounding; the padded path is time-major, so for a batch-first
    input the weight gradients sum the same rows in another order; the
    reference sums a padded batch's parameter
    gradients one sequence at a time; and where the CPU path's tile height
    mr leaves a tail of 1-3 rows in the plain path's input GEMM (over all
    T * N rows; batch-first: over each sequence's T rows) or in the padded
    path's per-step GEMMs over N rows, the rows of that tail sum in
    interleaved accumulator sets (kernels_simd.inc, TILE_KS) where the other
    path sums them in one, and agree to float32 rounding (the generic
    path's mr = 4 at T * N = 35: a 3-row tail; AVX2's mr = 6, batch-first at
    T = 7: a 1-row tail)."""
    L, bi = (2, True) if stacked else (1, False)
    layer, x, _, (h0, c0, dh_n, dc_n), d_out = case(mode, rng, bf=bf, L=L, bi=bi)
    c0 = c0 if mode == "LSTM" else None
    dc_n = dc_n if mode == "LSTM" else None
    params = layer._layer_params()
    full = np.full(x.shape[0 if bf else 1], x.shape[1 if bf else 0], np.int64)
    results = []
    for lengths in (None, full):
        grads = [[{k: (None if v is None else np.zeros_like(v)) for k, v in g.items()}
                  for g in per_layer] for per_layer in layer._layer_grads()]
        y, h_n, c_n, record = stack.forward(ops, layer.cell, x, h0, c0, params, batch_first=bf,
                                            n_threads=runtime.get_num_threads(),
                                            lengths=lengths, train=True)
        assert (record.sorted is not None) == (lengths is not None and ops.sorts_lengths)
        dx, dh0, dc0 = stack.backward(layer.cell, record, params, grads, d_out, dh_n, dc_n,
                                      input_grad=True, n_threads=runtime.get_num_threads())
        flat = [g[k] for per_layer in grads for g in per_layer for k in sorted(g)
                if g[k] is not None]
        results.append([y, h_n, c_n, dx, dh0, dc0] + flat)
    T, N = (x.shape[1], x.shape[0]) if bf else x.shape[:2]
    same_tails = True
    if ops.name == "c":
        mr = int(rnncore.config()["gemm_tile"].split("x")[0])
        plain_rows = T if bf else T * N  # batch-first: one GEMM per sequence
        same_tails = not 1 <= plain_rows % mr <= 3 and not 1 <= N % mr <= 3
    exact_backward = not stacked and not bf and ops.name == "c" and same_tails
    for i, (plain, padded) in enumerate(zip(*results)):
        if plain is None:
            continue
        if (i < 3 and same_tails) or exact_backward:
            np.testing.assert_array_equal(plain, padded)
        else:
            np.testing.assert_allclose(plain, padded, rtol=1e-5, atol=1e-6)


def test_lengths_errors_name_the_argument(rng):
    layer, x, lengths, _, _ = case("GRU", rng)
    with pytest.raises(ValueError, match=r"lengths must have shape \(N,\) = \(5,\)"):
        layer(x, lengths=lengths[:3])
    with pytest.raises(ValueError, match=r"lengths must be in \[1, T\] = \[1, 7\]"):
        layer(x, lengths=[0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"lengths must be in \[1, T\]"):
        layer(x, lengths=[8, 1, 2, 3, 4])
    with pytest.raises(TypeError, match="lengths must be integers"):
        layer(x, lengths=np.array([1.0, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match="batched"):
        layer(x[:, 0], lengths=[3])
