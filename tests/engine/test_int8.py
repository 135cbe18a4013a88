"""The int8 kernels (csrc/src/q*.c, rnncore_int8.h) against the NumPy int8
reference of the same scheme (rnncore.reference.quantize_rows / qproduct /
qlayer_forward):

* the integer products and activation scales bit for bit on every CPU path
  (the reference told the path's activation range: 127, or 63 on avx2_7bit),
  including inputs that saturate a u8 x s8 int16 pair sum (vpmaddubsw);
* every cell and variant, odd sizes, lengths, both directions, stacked
  layers: exactly the reference's numbers up to float32 rounding for one
  step from given states (the integers are then the same); over sequences
  within one activation quantum (a later step may round a computed h the
  other way);
* identical results at every thread count, step() identical to a sequence;
* the error against the float layer within the bound derived from the scales.
"""
import numpy as np
import pytest

import rnncore
from rnncore import reference
from rnncore.engine import quantized, runtime

from conftest import C_OPS, ISAS, MODES, call, make_layer

# float32 kernels (approximated activations, <= 2.4e-7) against the float64
# cells on the same dequantized products
TIGHT = 2e-6
# one rounding flip of a quantized h (one step of q) moves a pre-activation
# by at most sh * sw * 127 = max|h| * max|w row| / Q (< 2e-3 at these sizes
# for Q = 127; twice that on the 7-bit path)


def quantum():
    return 4e-3 * 127 / runtime.ops().qact_max()


def _int8_paths():
    """(fp32 path, int8 path) for every int8 path each fp32 path of this
    machine offers: on an AMX CPU, avx512 with amx, avx512vnni and avx2."""
    if C_OPS is None:
        return []
    saved, paths = C_OPS.isa(), []
    for fp32 in ISAS:
        C_OPS.set_isa(fp32)
        paths += [(fp32, q) for q in C_OPS.qisa_candidates()]
    C_OPS.set_isa(saved)
    return paths


@pytest.fixture(params=_int8_paths() or [None], ids=lambda p: "-".join(p) if p else "none")
def isa(request):
    """This module's tests once per int8 path (conftest's ``isa`` runs one
    int8 path per fp32 path: the default)."""
    if request.param is None:
        pytest.skip("C extension not available (reference run)")
    fp32, q = request.param
    saved = C_OPS.isa()
    C_OPS.set_isa(fp32)
    C_OPS.set_qisa(q)
    try:
        assert C_OPS.qisa() == q
        with runtime.using_backend("c"):
            yield request.param
    finally:
        C_OPS.set_qisa("")
        C_OPS.set_isa(saved)


def _c_qlinear(x, w, n_threads=2, bias=None, with_acc=True):
    wq, sw = reference.quantize_weight(w)
    packed = C_OPS.qpack(wq, sw, 1, w.shape[0])
    from rnncore import _core
    M, K = x.shape
    y = np.empty((M, w.shape[0]), np.float32)
    acc = np.empty((M, w.shape[0]), np.int32) if with_acc else None
    sx = np.empty(M, np.float32)
    ws = np.empty(_core.qlinear_workspace_bytes(M, K, n_threads=n_threads), np.uint8)
    _core.qlinear(x, packed, n_out=w.shape[0], bias=bias, y=y, acc=acc, x_scale=sx, ws=ws,
                  n_threads=n_threads)
    return y, acc, sx, wq, sw


@pytest.mark.parametrize("M,K,J", [(1, 1, 1), (1, 7, 17), (3, 17, 7), (5, 1000, 33),
                                   (70, 129, 130), (1, 512, 2048)])
def test_integer_products_bit_for_bit(isa, rng, M, K, J):
    x = rng.standard_normal((M, K)).astype(np.float32) * rng.uniform(0.01, 10, (M, 1)).astype(np.float32)
    w = rng.standard_normal((J, K)).astype(np.float32)
    b = rng.standard_normal(J).astype(np.float32)
    y, acc, sx, wq, sw = _c_qlinear(x, w, bias=b)
    yr, accr, sr = reference.qproduct(x, wq, sw, C_OPS.qact_max())
    np.testing.assert_array_equal(acc, accr)
    np.testing.assert_array_equal(sx, sr)
    np.testing.assert_array_equal(y, yr + b)
    # without the int32 sums asked for, one row takes the fused product and
    # dequantisation (rnc_qkernels.row_dequant) where the path has one
    for bias in (b, None):
        np.testing.assert_array_equal(_c_qlinear(x, w, bias=bias, with_acc=False)[0],
                                      yr + b if bias is not None else yr)


def test_saturating_inputs_stay_exact(isa):
    """q = +-Q activations against +-127 weights: each u8 x s8 pair of the
    8-bit paths is 255 * 127 * 2 = 64770 > 32767, which vpmaddubsw would
    clamp (the 7-bit path's q + 64 at most 127 * 127 * 2 = 32258); the sums
    (up to Q * 127 * 1000) must be exact."""
    K = 1000
    x = np.ones((3, K), np.float32)
    x[1, ::2] = -1.0
    x[2] = np.where(np.arange(K) % 3 == 0, 1.0, -1.0)
    w = np.ones((5, K), np.float32)
    w[1] = -1.0
    w[2, ::2] = -1.0
    w[3, 1::2] = -1.0
    y, acc, sx, wq, sw = _c_qlinear(x, w)
    Q = C_OPS.qact_max()
    assert np.abs(wq).max() == 127 and (sx * Q == 1).all()
    expected = (np.rint(x * Q).astype(np.int64) @ wq.astype(np.int64).T)
    assert expected[0, 0] == Q * 127 * K
    np.testing.assert_array_equal(acc, expected)


def test_special_rows(isa):
    """rows of zeros, of values below 2^-100 and with NaN / inf quantize as
    rnncore_int8.h says: scale 0 (output 0), scale NaN (output NaN)."""
    x = np.ones((5, 9), np.float32)
    x[0] = 0.0
    x[1] = 1e-35
    x[2, 3] = np.nan
    x[3, 0] = np.inf
    y, acc, sx, _, _ = _c_qlinear(x, np.ones((4, 9), np.float32))
    assert sx[0] == 0 and sx[1] == 0 and (y[:2] == 0).all()
    assert np.isnan(sx[2:4]).all() and np.isnan(y[2:4]).all()
    assert np.isfinite(y[4]).all()


def test_thread_counts_give_identical_products(rng):
    if C_OPS is None:
        pytest.skip("C extension not available (reference run)")
    x = rng.standard_normal((37, 300)).astype(np.float32)
    w = rng.standard_normal((1000, 300)).astype(np.float32)
    ys = [_c_qlinear(x, w, n_threads=n)[0] for n in (1, 2, 3, 4)]
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])


# ------------------------------------------------------------ layers

def _layer(mode, I, H, **kw):
    if mode == "LSTM_PROJ":  # hidden_size >= 2: proj_size < hidden_size
        return rnncore.LSTM(I, max(H, 2), proj_size=max(1, H // 2), **kw)
    return make_layer(mode, I, H, **kw)


def _states(layer, N, rng, batched=True):
    LD, R, H = layer.num_layers * layer.num_directions, layer.state_size, layer.hidden_size
    h0 = rng.uniform(-1, 1, (LD, N, R)).astype(np.float32)
    c0 = rng.uniform(-1, 1, (LD, N, H)).astype(np.float32) if layer.mode == "LSTM" else None
    return h0, c0


def _both(q, x, h0, c0, **kw):
    """(C result, reference result) of the int8 layer q, the reference told
    the C path's activation range."""
    out = call(q, x, h0, c0, **kw)
    Q = runtime.ops().qact_max()
    with runtime.using_backend("reference"):
        ops = runtime.ops()
        ops.qact_max = lambda: Q
        try:
            ref = call(q, x, h0, c0, **kw)
        finally:
            del ops.qact_max
    return out, ref


ALL_MODES = MODES + ["LSTM_PROJ"]


def _assert_same(outs):
    """Every (y, h, c) of outs bit for bit the first's."""
    for o in outs[1:]:
        for a, b in zip(o, outs[0]):
            if a is not None:
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("H", [1, 7, 17])
def test_one_step_matches_reference(isa, rng, mode, H):
    """T = 1 from given states: the products' inputs are the test's own
    float32 arrays, so the integers agree exactly and the outputs to float32
    rounding."""
    layer = _layer(mode, 5, H, num_layers=2, bidirectional=True, seed=3)
    q = rnncore.quantize(layer)
    x = rng.standard_normal((1, 3, 5)).astype(np.float32)
    h0, c0 = _states(layer, 3, rng)
    (y, h, c), (yr, hr, cr) = _both(q, x, h0, c0)
    # layer 1 reads layer 0's computed output: a rounding flip there is one quantum
    np.testing.assert_allclose(h[:2], hr[:2], atol=TIGHT, rtol=0)
    np.testing.assert_allclose(y, yr, atol=quantum(), rtol=0)
    if c is not None:
        np.testing.assert_allclose(c[:2], cr[:2], atol=TIGHT, rtol=0)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_sequences_match_reference(isa, rng, mode):
    layer = _layer(mode, 6, 17, num_layers=2, bidirectional=True, seed=5)
    q = rnncore.quantize(layer)
    x = rng.standard_normal((5, 4, 6)).astype(np.float32)
    h0, c0 = _states(layer, 4, rng)
    for kw in ({}, {"lengths": [5, 2, 4, 1]}):
        (y, h, c), (yr, hr, cr) = _both(q, x, h0, c0, **kw)
        np.testing.assert_allclose(y, yr, atol=quantum(), rtol=0)
        np.testing.assert_allclose(h, hr, atol=quantum(), rtol=0)
        if kw:
            assert (y[2:, 1] == 0).all() and (y[1:, 3] == 0).all()


@pytest.mark.parametrize("mode", ["GRU", "LSTM", "RNN_RELU"])
def test_batch_first_unbatched_and_large_h(isa, rng, mode):
    layer = _layer(mode, 3, 1000, batch_first=True, seed=1)
    q = rnncore.quantize(layer)
    x = rng.standard_normal((1, 2, 3)).astype(np.float32)
    (y, h, c), (yr, hr, cr) = _both(q, x, None, None)
    np.testing.assert_allclose(y, yr, atol=quantum(), rtol=0)
    y1 = call(q, x[0], None, None)[0]  # unbatched (T, I)
    np.testing.assert_array_equal(y1, y[0])


@pytest.mark.parametrize("mode", ["LSTM", "GRU_RB", "LSTM_PROJ"])
def test_thread_counts_identical(rng, mode):
    if C_OPS is None:
        pytest.skip("C extension not available (reference run)")
    layer = _layer(mode, 40, 200, bidirectional=True, seed=2)
    q = rnncore.quantize(layer)
    x = rng.standard_normal((6, 8, 40)).astype(np.float32)
    outs = []
    for n in (1, 2, 4):
        with runtime.num_threads(n):
            outs.append(call(q, x, *_states(layer, 8, np.random.default_rng(0)),
                             lengths=[6, 6, 5, 5, 3, 3, 2, 1]))
    _assert_same(outs)


@pytest.mark.parametrize("mode", ["LSTM", "GRU_RB", "LSTM_PROJ", "RNN_TANH"])
def test_int8_paths_of_one_fp32_path_agree_bit_for_bit(rng, mode):
    """With the fp32 path fixed, every 8-bit int8 path gives the same bits:
    the integer sums are exact and the dequantisation is one formula, fused
    into the one-row product (N = 1: the recurrent products on VNNI) or not
    (AVX2, generic)."""
    if C_OPS is None:
        pytest.skip("C extension not available (reference run)")
    layer = _layer(mode, 40, 200, bidirectional=True, seed=7)
    q = rnncore.quantize(layer)
    x = rng.standard_normal((5, 1, 40)).astype(np.float32)
    h0, c0 = _states(layer, 1, rng)
    saved, compared = C_OPS.isa(), 0
    try:
        for fp32 in ISAS:
            C_OPS.set_isa(fp32)
            outs = []
            for qisa in C_OPS.qisa_candidates():
                C_OPS.set_qisa(qisa)
                if C_OPS.qact_max() == 127:  # not the 7-bit path's integers
                    with runtime.using_backend("c"):
                        outs.append(call(q, x, h0, c0))
            _assert_same(outs)
            compared += len(outs) - 1
    finally:
        C_OPS.set_qisa("")
        C_OPS.set_isa(saved)
    if compared == 0:
        pytest.skip("one 8-bit int8 path per fp32 path on this CPU: nothing to compare")


@pytest.mark.parametrize("mode", ["LSTM", "GRU_RB", "LSTM_PROJ", "LSTM_PEEPHOLE", "RNN_TANH"])
def test_workspace_contents_do_not_matter(rng, mode, monkeypatch):
    """rnc_qforward reads no part of its workspace it has not written in the
    same call (it clears none of its sums): a workspace of NaN bytes and one
    of zeros give the same bits, with lengths, a projection, the split GRU
    cell, given and zero initial states, at 1 and 2 threads."""
    if C_OPS is None:
        pytest.skip("C extension not available (reference run)")
    from rnncore.engine import buffers
    layer = _layer(mode, 20, 70, bidirectional=True, seed=6)
    q = rnncore.quantize(layer)
    x = rng.standard_normal((4, 3, 20)).astype(np.float32)
    h0, c0 = _states(layer, 3, rng)
    real = buffers.workspace
    outs = []
    for fill, n in ((0x00, 1), (0xFF, 1), (0xFF, 2)):
        def filled(floats, what, fill=fill):
            ws = real(floats, what)
            ws.view(np.uint8)[:] = fill
            return ws
        monkeypatch.setattr(buffers, "workspace", filled)
        with runtime.num_threads(n):
            outs.append(call(q, x, h0, c0, lengths=[4, 2, 3]) + call(q, x, None, None))
    _assert_same(outs)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "LSTM_PEEPHOLE"])
def test_step_equals_sequence(ops, rng, mode):
    """The int8 input product of one step is the same integer sum as the
    sequence's, so stepping gives exactly the sequence's outputs. H = 200:
    several blocks of columns, which steps walk in alternate directions."""
    for I, H in [(4, 9), (130, 200)]:
        layer = _layer(mode, I, H, num_layers=2, seed=4)
        q = rnncore.quantize(layer)
        x = rng.standard_normal((5, 2, I)).astype(np.float32)
        y_seq = call(q, x)[0]
        state = None
        for t in range(5):
            y_t, state = q.step(x[t], state)
            np.testing.assert_allclose(y_t, y_seq[t], atol=1e-6 if ops.name == "reference" else 0,
                                       rtol=0)


# ------------------------------------------------------------ the error bound vs fp32

def _product_bound(v, w, wq, sw):
    """|deq(q(v) Wq^T) - v W^T| <= (sv/2) sum|w| + (sw/2) sum|v| + K sv sw / 4
    per output (|v - sv q| <= sv/2, |w - sw wq| <= sw/2)."""
    q, sv = reference.quantize_rows(v, runtime.ops().qact_max())
    K = v.shape[1]
    return (sv[:, None] / 2 * np.abs(w).sum(1)[None] + sw[None] / 2 * np.abs(v).sum(1)[:, None]
            + K * sv[:, None] * sw[None] / 4)


@pytest.mark.parametrize("mode", ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"])
def test_error_against_float_within_derived_bound(ops, rng, mode):
    """One step of a random-weight layer: the int8 output is within the bound
    that the product bound gives through each cell's equations (sigmoid is
    1/4-Lipschitz, tanh and relu 1-Lipschitz); and the bound is not vacuous."""
    I, H, N = 24, 40, 3
    layer = make_layer(mode, I, H, seed=7)
    q = rnncore.quantize(layer)
    x = rng.standard_normal((1, N, I)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (1, N, H)).astype(np.float32)
    c0 = rng.uniform(-1, 1, (1, N, H)).astype(np.float32) if mode == "LSTM" else None
    y_q = call(q, x, h0, c0)[0][0].astype(np.float64)
    y_f = call(layer, x, h0, c0)[0][0].astype(np.float64)
    w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
    e_in = _product_bound(x[0], w_ih, q.weight_ih_l0, q.weight_ih_l0_scale)
    e_rec = _product_bound(h0[0], w_hh, q.weight_hh_l0, q.weight_hh_l0_scale)
    e = e_in + e_rec + 1e-5  # + float32 rounding of both paths
    Hs = slice(0, H)
    gate = lambda k: slice(k * H, (k + 1) * H)  # noqa: E731
    if mode.startswith("RNN"):
        bound = e
    elif mode == "LSTM":
        a = (x[0] @ w_ih.T + layer.bias_ih_l0 + h0[0] @ w_hh.T + layer.bias_hh_l0).astype(np.float64)
        s = reference.sigmoid
        di, df, dg, do = e[:, gate(0)] / 4, e[:, gate(1)] / 4, e[:, gate(2)], e[:, gate(3)] / 4
        i, g = s(a[:, gate(0)]) + di, np.minimum(np.abs(np.tanh(a[:, gate(2)])) + dg, 1)
        dc = np.abs(c0[0]) * df + g * di + np.minimum(i, 1) * dg
        bound = do + dc
    else:  # GRU
        a_n = (h0[0] @ w_hh.T + layer.bias_hh_l0)[:, gate(2)].astype(np.float64)
        a = (x[0] @ w_ih.T + layer.bias_ih_l0 + h0[0] @ w_hh.T + layer.bias_hh_l0).astype(np.float64)
        dr, dz = e[:, gate(0)] / 4, e[:, gate(1)] / 4
        r = reference.sigmoid(a[:, gate(0)])
        dn = e_in[:, gate(2)] + dr * (np.abs(a_n) + e_rec[:, gate(2)]) + (r + dr) * e_rec[:, gate(2)]
        bound = dz * 2 + dn * (1 + dz)
    err = np.abs(y_q - y_f)
    assert (err <= bound[:, Hs] + 1e-6).all(), (err - bound[:, Hs]).max()
    assert err.max() > 0 and bound.max() < 0.5


# ------------------------------------------------------------ what is refused

def test_quantize_refuses_bad_input():
    layer = rnncore.GRU(3, 4, seed=0)
    with pytest.raises(ValueError, match="dtype"):
        rnncore.quantize(layer, "int4")
    with pytest.raises(ValueError, match="bf16 is not offered"):
        rnncore.quantize(layer, "bf16")
    q = rnncore.quantize(layer)
    with pytest.raises(ValueError, match="already quantized"):
        rnncore.quantize(q)
    w = layer.weight_hh_l0.copy()
    w[1, 2] = np.nan
    layer.weight_hh_l0 = w
    with pytest.raises(ValueError, match="weight_hh_l0 has 1 NaN or Inf"):
        rnncore.quantize(layer)
    with pytest.raises(TypeError, match="RNN, LSTM, GRU or LanguageModel"):
        rnncore.quantize(np.zeros(3))


def test_training_calls_raise():
    q = rnncore.quantize(rnncore.LSTM(3, 4, seed=0))
    x = np.zeros((2, 1, 3), np.float32)
    for call_ in (lambda: q.forward_train(x), lambda: q.backward(None, x), q.zero_grad,
                  lambda: q.grads, lambda: q.load_state_dict({}), q.reset_parameters):
        with pytest.raises(TypeError, match="inference only|read-only"):
            call_()
    with pytest.raises(TypeError, match="read-only"):
        q.weight_ih_l0 = np.zeros((16, 3), np.float32)
    assert q.weight_ih_l0.dtype == np.int8 and q.weight_ih_l0_scale.shape == (16,)


def test_per_tensor_and_weight_bytes():
    layer = rnncore.LSTM(256, 256, num_layers=2, seed=0)
    q = rnncore.quantize(layer)
    qt = rnncore.quantize(layer, per_tensor=True)
    assert (qt.weight_ih_l0_scale == qt.weight_ih_l0_scale[0]).all() and qt.per_tensor
    fp32 = sum(p.nbytes for p in layer.parameters())
    assert 0.25 <= q.weight_bytes() / fp32 < 0.28  # int8 + a scale and a column sum a row
    y = call(q, np.ones((2, 1, 256), np.float32))[0]
    yt = call(qt, np.ones((2, 1, 256), np.float32))[0]
    assert np.abs(y - yt).max() < 0.05
    sd = q.dequantized_state_dict()
    f = rnncore.LSTM(256, 256, num_layers=2, seed=1)
    f.load_state_dict(sd)
    assert np.abs(f.weight_ih_l0 - layer.weight_ih_l0).max() <= q.weight_ih_l0_scale.max() / 2 + 1e-7


@pytest.mark.parametrize("mode", ["GRU", "LSTM"])
def test_large_batches_fall_back_to_fp32_on_the_generic_path(rng, mode):
    """On the generic int8 path (plain C loops, slower than its fp32 kernels)
    copies run N >= 48 rows on the fp32 kernels with the dequantized
    weights, and show_config says so; the AVX2 int8 paths (faster than fp32
    at every batch) do not fall back."""
    if C_OPS is None:
        pytest.skip("C extension not available (reference run)")
    layer = getattr(rnncore, mode)(8, 16, seed=0)
    q = rnncore.quantize(layer)
    f = getattr(rnncore, mode)(8, 16, seed=1)
    f.load_state_dict(q.dequantized_state_dict())
    x = rng.standard_normal((3, 48, 8)).astype(np.float32)
    saved = C_OPS.isa()
    try:
        C_OPS.set_isa("generic")
        with runtime.using_backend("c"):
            np.testing.assert_array_equal(q(x)[0], f(x)[0])
            assert not np.array_equal(q(x[:, :47])[0], f(x[:, :47])[0])  # int8 below 48 rows
            assert "fp32 kernels" in rnncore.config()["int8_fp32_fallback"]
            y_step, _ = q.step(x[0])
            np.testing.assert_array_equal(y_step, f.step(x[0])[0])
        if C_OPS.isa_available("avx2"):
            C_OPS.set_isa("avx2")
            with runtime.using_backend("c"):
                assert not np.array_equal(q(x)[0], f(x)[0])
                assert rnncore.config()["int8_fp32_fallback"].startswith("none (avx2")
    finally:
        C_OPS.set_isa(saved)


def test_int8_path_follows_the_fp32_path():
    if C_OPS is None:
        pytest.skip("C extension not available (reference run)")
    saved = C_OPS.isa()
    try:
        for isa in [i for i in C_OPS.compiled_isas() if C_OPS.isa_available(i)]:
            C_OPS.set_isa(isa)
            offered = {"avx512": ("amx", "avx512vnni", "avx2_7bit", "avx2"),
                       "avx2": ("avx2_7bit", "avx2"),
                       "neon": ("neon_dotprod", "neon"), "generic": ("generic",)}[isa]
            candidates = C_OPS.qisa_candidates()
            assert C_OPS.qisa() == candidates[0] and set(candidates) <= set(offered)
            assert [c for c in offered if c in candidates] == candidates  # best first
            C_OPS.set_qisa(candidates[-1])
            assert C_OPS.qisa() == candidates[-1]
            C_OPS.set_qisa("")
            assert C_OPS.qisa() == candidates[0]
            with pytest.raises(NotImplementedError):
                C_OPS.set_qisa("no-such-path")
        if "avx512" in ISAS and "avx2" in ISAS:  # a choice holds while the fp32 path offers it
            C_OPS.set_isa("avx512")
            C_OPS.set_qisa("avx2")
            C_OPS.set_isa("avx2")
            assert C_OPS.qisa() == "avx2"
            C_OPS.set_isa("generic")
            assert C_OPS.qisa() == "generic"
    finally:
        C_OPS.set_qisa("")
        C_OPS.set_isa(saved)
    assert quantized.DTYPES == ("int8",)
