"""LSTM with a projection (PyTorch's ``proj_size``): h_t = W_hr (o * tanh(c_t)).

The C kernels (every CPU path, 1 and 4 threads) against the float64
reference and against torch.nn.LSTM(proj_size=...) on the same weights,
forward and backward; the reference against central finite differences;
padded batches, streaming, files and bad input. Tolerances: RTOL/ATOL and
G_RTOL/G_ATOL of conftest (float32 against float64; the reasons are stated
there); finite differences as in test_training.py (float64, step 1e-6,
asserted at 1e-6).
"""
import contextlib

import numpy as np
import pytest

import rnncore
from rnncore import reference
from rnncore.engine import runtime
from conftest import ATOL, G_ATOL, G_RTOL, RTOL

# (H, R): the smallest, odd sizes across panel boundaries (32), R close to H
SIZES = [(2, 1), (17, 7), (40, 33), (100, 17)]


@contextlib.contextmanager
def _threads(n):
    saved = rnncore.get_num_threads()
    rnncore.set_num_threads(n)
    try:
        yield
    finally:
        rnncore.set_num_threads(saved)


def _layer(I, H, R, **kw):
    return rnncore.LSTM(I, H, proj_size=R, seed=3, **kw)


def _case(rng, layer, T=5, N=3):
    D, L = layer.num_directions, layer.num_layers
    H, R, I = layer.hidden_size, layer.proj_size, layer.input_size
    x = rng.standard_normal((N, T, I) if layer.batch_first else (T, N, I)).astype(np.float32)
    h0 = rng.standard_normal((L * D, N, R)).astype(np.float32)
    c0 = rng.standard_normal((L * D, N, H)).astype(np.float32)
    return x, h0, c0


def _reference(layer, x, h0, c0, lengths=None):
    """The float64 oracle of a whole stack (time-major)."""
    sd = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    layers = [[{"w_ih": sd["weight_ih" + s], "w_hh": sd["weight_hh" + s],
                "b_ih": sd.get("bias_ih" + s), "b_hh": sd.get("bias_hh" + s),
                "w_hr": sd["weight_hr" + s], "peephole": sd.get("peephole" + s),
                "input_forget": layer.input_forget}
               for s in [f"_l{k}", f"_l{k}_reverse"][:layer.num_directions]]
              for k in range(layer.num_layers)]
    xt = x.transpose(1, 0, 2) if layer.batch_first else x
    y, h, c = reference.stack_forward("LSTM", xt.astype(np.float64), h0.astype(np.float64),
                                      c0.astype(np.float64), layers, lengths=lengths)
    return (y.transpose(1, 0, 2) if layer.batch_first else y), h, c


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("H,R", SIZES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.usefixtures("n_threads")
def test_forward_matches_the_reference(H, R, batch_first, bidirectional, num_layers, rng):
    layer = _layer(5, H, R, num_layers=num_layers, batch_first=batch_first,
                   bidirectional=bidirectional)
    x, h0, c0 = _case(rng, layer)
    y, (h, c) = layer(x, (h0, c0))
    ry, rh, rc = _reference(layer, x, h0, c0)
    D = layer.num_directions
    assert y.shape[-1] == D * R and h.shape == h0.shape and c.shape == c0.shape
    for a, b in ((y, ry), (h, rh), (c, rc)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("variant", [{}, {"peephole": True}, {"input_forget": True}])
def test_variants_and_padded_batches_match_the_reference(variant, rng):
    layer = _layer(4, 40, 9, num_layers=2, bidirectional=True, **variant)
    x, h0, c0 = _case(rng, layer, T=6, N=4)
    lengths = np.array([3, 6, 1, 5])
    y, (h, c) = layer(x, (h0, c0), lengths=lengths)
    ry, rh, rc = _reference(layer, x, h0, c0, lengths=lengths)
    for a, b in ((y, ry), (h, rh), (c, rc)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def _train(layer, x, h0, c0, d_out, dh, dc, lengths=None):
    layer.zero_grad()
    y, (h, c), tape = layer.forward_train(x, (h0, c0), lengths=lengths)
    dx, (dh0, dc0) = layer.backward(tape, d_out, (dh, dc))
    return [y, h, c, dx, dh0, dc0], {k: g.copy() for k, g in layer.grads.items()}


@pytest.mark.parametrize("H,R", SIZES)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [None, [4, 2, 5]], ids=["full", "padded"])
def test_gradients_match_the_reference_on_every_path(H, R, bidirectional, lengths, rng):
    """The C backend on every CPU path and thread count against the float64
    reference backend (whose own gradients finite differences check below)."""
    ref_layer = _layer(3, H, R, num_layers=2, bidirectional=bidirectional)
    x, h0, c0 = _case(rng, ref_layer)
    y_shape = x.shape[:2] + (ref_layer.num_directions * R,)
    d_out = rng.standard_normal(y_shape).astype(np.float32)
    dh, dc = rng.standard_normal(h0.shape).astype(np.float32), rng.standard_normal(c0.shape).astype(np.float32)
    with runtime.using_backend("reference"):
        want, want_g = _train(ref_layer, x, h0, c0, d_out, dh, dc, lengths)
    c_ops = runtime.c_ops()
    if c_ops is None:
        pytest.skip("C extension not available (reference run)")
    saved = c_ops.isa()
    try:
        for isa in [i for i in c_ops.compiled_isas() if c_ops.isa_available(i)]:
            c_ops.set_isa(isa)
            for n_threads in (1, 4):
                with runtime.using_backend("c"), _threads(n_threads):
                    got, got_g = _train(ref_layer, x, h0, c0, d_out, dh, dc, lengths)
                for a, b in zip(got, want):
                    np.testing.assert_allclose(a, b, rtol=G_RTOL, atol=G_ATOL, err_msg=isa)
                for k in want_g:
                    np.testing.assert_allclose(got_g[k], want_g[k], rtol=G_RTOL, atol=G_ATOL,
                                               err_msg=f"{isa} {n_threads} threads {k}")
    finally:
        c_ops.set_isa(saved)


def test_results_do_not_depend_on_the_thread_count(rng):
    if runtime.c_ops() is None:
        pytest.skip("C extension not available (reference run)")
    layer = _layer(6, 200, 70, num_layers=2)
    x, h0, c0 = _case(rng, layer, T=7, N=8)
    d_out = rng.standard_normal(x.shape[:2] + (70,)).astype(np.float32)
    runs = []
    for n_threads in (1, 2, 3, 4):
        with runtime.using_backend("c"), _threads(n_threads):
            runs.append(_train(layer, x, h0, c0, d_out, None, None))
    for outs, grads in runs[1:]:
        for a, b in zip(outs, runs[0][0]):
            assert np.array_equal(a, b)
        for k in grads:
            assert np.array_equal(grads[k], runs[0][1][k]), k


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_gradients_match_finite_differences(reverse):
    rng = np.random.default_rng(7)
    T, N, I, H, R = 4, 2, 3, 5, 2
    w = {"w_ih": rng.standard_normal((4 * H, I)) * 0.5, "w_hh": rng.standard_normal((4 * H, R)) * 0.5,
         "b_ih": rng.standard_normal(4 * H) * 0.5, "b_hh": rng.standard_normal(4 * H) * 0.5,
         "w_hr": rng.standard_normal((R, H)) * 0.5}
    x, h0, c0 = rng.standard_normal((T, N, I)), rng.standard_normal((N, R)), rng.standard_normal((N, H))
    dy, dh_n, dc_n = rng.standard_normal((T, N, R)), rng.standard_normal((N, R)), rng.standard_normal((N, H))

    def loss(x, h0, c0, w):
        y, h, c = reference.layer_forward("LSTM", x, h0, c0, w["w_ih"], w["w_hh"], w["b_ih"],
                                          w["b_hh"], reverse=reverse, w_hr=w["w_hr"])
        return (y * dy).sum() + (h * dh_n).sum() + (c * dc_n).sum()

    g = reference.layer_backward("LSTM", x, h0, c0, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"],
                                 dy, dh_n, dc_n, reverse=reverse, w_hr=w["w_hr"])
    eps = 1e-6

    def numeric(arr, rebuild):
        out = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            plus, minus = arr.copy(), arr.copy()
            plus[i] += eps
            minus[i] -= eps
            out[i] = (rebuild(plus) - rebuild(minus)) / (2 * eps)
        return out

    for name in w:
        fd = numeric(w[name], lambda a, name=name: loss(x, h0, c0, {**w, name: a}))
        np.testing.assert_allclose(g["d" + name], fd, rtol=1e-6, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(g["dx"], numeric(x, lambda a: loss(a, h0, c0, w)), atol=1e-6)
    np.testing.assert_allclose(g["dh0"], numeric(h0, lambda a: loss(x, a, c0, w)), atol=1e-6)
    np.testing.assert_allclose(g["dc0"], numeric(c0, lambda a: loss(x, h0, a, w)), atol=1e-6)


def test_torch_parity_forward_and_backward(rng):
    """torch.nn.LSTM(proj_size) on the same weights: outputs, states, input
    and state gradients and every parameter gradient (weight_hr_l{k}
    included), with a padded batch."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.LSTM(5, 17, num_layers=2, bidirectional=True, batch_first=True, proj_size=7)
    layer = rnncore.from_torch(module)
    assert layer.proj_size == 7 and "weight_hr_l1_reverse" in layer.state_dict()
    assert list(layer.state_dict()) == list(module.state_dict())
    x, h0, c0 = _case(rng, layer, T=6, N=3)
    lengths = [6, 2, 4]
    d_out = rng.standard_normal((3, 6, 14)).astype(np.float32)
    for n in range(3):
        d_out[n, lengths[n]:] = 0  # torch's padded outputs do not depend on anything
    dh, dc = rng.standard_normal(h0.shape).astype(np.float32), rng.standard_normal(c0.shape).astype(np.float32)
    outs, grads = _train(layer, x, h0, c0, d_out, dh, dc, lengths)

    xt = torch.from_numpy(x).requires_grad_()
    h0t, c0t = torch.from_numpy(h0).requires_grad_(), torch.from_numpy(c0).requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, lengths, batch_first=True,
                                                     enforce_sorted=False)
    yp, (ht, ct) = module(packed, (h0t, c0t))
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, batch_first=True, total_length=6)
    ((yt * torch.from_numpy(d_out)).sum() + (ht * torch.from_numpy(dh)).sum()
     + (ct * torch.from_numpy(dc)).sum()).backward()
    want = [yt.detach().numpy(), ht.detach().numpy(), ct.detach().numpy(), xt.grad.numpy(),
            h0t.grad.numpy(), c0t.grad.numpy()]
    for a, b in zip(outs, want):
        np.testing.assert_allclose(a, b, rtol=G_RTOL, atol=G_ATOL)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=G_RTOL, atol=G_ATOL,
                                   err_msg=name)
    back = rnncore.interop.to_torch(layer)
    assert back.proj_size == 7
    for (k, a), (k2, b) in zip(module.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_step_equals_the_sequence(ops, rng):
    layer = _layer(4, 33, 5, num_layers=2)
    x, h0, c0 = _case(rng, layer, T=4, N=2)
    y, (h, c) = layer(x, (h0, c0))
    state = (h0, c0)
    for t in range(4):
        y_t, state = layer.step(x[t], state)
        np.testing.assert_allclose(y_t, y[t], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(state[0], h, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(state[1], c, rtol=RTOL, atol=ATOL)
    y1, (h1, c1) = layer.step(x[0, 0])  # unbatched, zero state
    assert y1.shape == (5,) and h1.shape == (2, 5) and c1.shape == (2, 33)


def test_save_and_load_keep_the_projection(tmp_path, rng):
    layer = _layer(3, 9, 4, num_layers=2, bidirectional=True)
    rnncore.save(layer, tmp_path / "p.safetensors")
    back = rnncore.load(tmp_path / "p.safetensors")
    assert back.proj_size == 4 and repr(back) == repr(layer)
    x, h0, c0 = _case(rng, layer)
    for a, b in zip(layer(x, (h0, c0))[1], back(x, (h0, c0))[1]):
        assert np.array_equal(a, b)


def test_bad_projections_are_refused_clearly():
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size"):
        rnncore.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="proj_size"):
        rnncore.LSTM(3, 4, proj_size=-1)
    with pytest.raises(TypeError):
        rnncore.GRU(3, 4, proj_size=2)
    layer = _layer(3, 6, 2)
    with pytest.raises(ValueError, match=r"weight_hr_l0.*\(2, 6\)"):
        layer.weight_hr_l0 = np.zeros((6, 2), np.float32)
    with pytest.raises(ValueError, match="weight_hh_l0"):
        layer.weight_hh_l0 = np.zeros((24, 6), np.float32)
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(ValueError, match=r"h0.*proj_size"):
        layer(x, (np.zeros((1, 1, 6), np.float32), np.zeros((1, 1, 6), np.float32)))
    with pytest.raises(ValueError, match=r"c0.*hidden_size"):
        layer(x, (np.zeros((1, 1, 2), np.float32), np.zeros((1, 1, 2), np.float32)))
    with pytest.raises(AttributeError, match="fixed at construction"):
        layer.proj_size = 3
