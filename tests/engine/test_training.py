"""Backward (BPTT): the float64 reference against central finite differences,
the C kernels against the reference on every CPU path, and both against
torch.autograd in float64 on the same weights.

Tolerances. Finite differences: float64, step 1e-6, so truncation (~1e-12)
and cancellation (~1e-10 / 1e-6) errors stay below 1e-7 relative to the
gradient scale; asserted at 1e-6. C against float64: G_RTOL, G_ATOL of
conftest (the reason is stated there).
"""
import numpy as np
import pytest

import rnncore
from rnncore import reference
from rnncore.tools.cases import GRADIENT_GRID
from conftest import G_ATOL, G_RTOL, backend, make_layer

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU_RB", "LSTM_PEEPHOLE", "LSTM_CIFG",
         "LSTM_PEEPHOLE_CIFG"]
TORCH_MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]  # GRU_RB has no torch.nn twin


def every_configuration(modes):
    """Parametrize over cell x layers x directions x layouts x bias, on every CPU path."""
    def decorate(test):
        marks = [pytest.mark.usefixtures("isa"),
                 pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"]),
                 pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"]),
                 pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"]),
                 pytest.mark.parametrize("num_layers", [1, 2]),
                 pytest.mark.parametrize("mode", modes)]
        for mark in reversed(marks):
            test = mark(test)
        return test
    return decorate


def _state_pair(mode, h, c):
    return (h, c) if mode.startswith("LSTM") else h


def run_train(layer, x, h0, c0, d_out, dh_n, dc_n):
    """forward_train + backward; returns (out, h_n, c_n, dx, dh0, dc0, grads)."""
    layer.zero_grad()
    hx = None if h0 is None else _state_pair(layer.mode, h0, c0)
    out, hn, tape = layer.forward_train(x, hx)
    d_hn = None if dh_n is None else _state_pair(layer.mode, dh_n, dc_n)
    dx, dhx = layer.backward(tape, d_out, d_hn)
    h_n, c_n = hn if layer.mode == "LSTM" else (hn, None)
    dh0, dc0 = dhx if layer.mode == "LSTM" else (dhx, None)
    return out, h_n, c_n, dx, dh0, dc0, {k: v.copy() for k, v in layer.grads.items()}


def random_case(mode, rng, *, L=1, bi=False, bf=False, bias=True, T=4, N=3, I=5, H=7, seed=0):
    layer = make_layer(mode, I, H, num_layers=L, bidirectional=bi, batch_first=bf, bias=bias,
                       seed=seed)
    D = 2 if bi else 1
    x = rng.standard_normal((N, T, I) if bf else (T, N, I)).astype(np.float32)
    states = [rng.standard_normal((L * D, N, H)).astype(np.float32) for _ in range(4)]
    d_out = rng.standard_normal((N, T, D * H) if bf else (T, N, D * H)).astype(np.float32)
    h0, c0, dh_n, dc_n = states
    if not mode.startswith("LSTM"):
        c0 = dc_n = None
    return layer, x, h0, c0, d_out, dh_n, dc_n


# ------------------------------------------------------------ finite differences

@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_reference_backward_matches_finite_differences(mode, reverse):
    rng = np.random.default_rng(7)
    T, N, I, H = 4, 2, 3, 5
    base = "LSTM" if mode.startswith("LSTM") else mode
    variant = {"peephole": "PEEP" in mode, "input_forget": "CIFG" in mode}
    G = {"LSTM": 4, "GRU": 3, "GRU_RB": 3}.get(base, 1)
    args = {
        "x": rng.standard_normal((T, N, I)), "h0": rng.standard_normal((N, H)),
        "c0": rng.standard_normal((N, H)), "w_ih": rng.standard_normal((G * H, I)) * 0.5,
        "w_hh": rng.standard_normal((G * H, H)) * 0.5, "b_ih": rng.standard_normal(G * H),
        "b_hh": rng.standard_normal(G * H), "peephole": rng.standard_normal(3 * H),
    }
    if mode == "RNN_RELU":  # keep pre-activations away from the kink at 0
        args["b_ih"] += 0.3
    dy, dh_n, dc_n = rng.standard_normal((T, N, H)), rng.standard_normal((N, H)), rng.standard_normal((N, H))

    def extra(a):
        return dict(peephole=a["peephole"] if variant["peephole"] else None,
                    input_forget=variant["input_forget"]) if base == "LSTM" else {}

    def loss(a):
        y, h, c = reference.layer_forward(base, a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"],
                                          a["b_ih"], a["b_hh"], reverse=reverse, **extra(a))
        return (y * dy).sum() + (h * dh_n).sum() + ((c * dc_n).sum() if c is not None else 0.0)

    grads = reference.layer_backward(base, args["x"], args["h0"], args["c0"], args["w_ih"],
                                     args["w_hh"], args["b_ih"], args["b_hh"], dy, dh_n,
                                     dc_n if base == "LSTM" else None, reverse=reverse,
                                     **extra(args))
    names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"] + (["c0"] if base == "LSTM" else [])
    names += ["peephole"] if variant["peephole"] else []
    eps = 1e-6
    for name in names:
        analytic = grads["d" + name]
        flat = args[name].reshape(-1)
        for idx in rng.choice(flat.size, size=min(12, flat.size), replace=False):
            saved = flat[idx]
            flat[idx] = saved + eps
            up = loss(args)
            flat[idx] = saved - eps
            down = loss(args)
            flat[idx] = saved
            numeric = (up - down) / (2 * eps)
            got = analytic.reshape(-1)[idx]
            assert abs(got - numeric) <= 1e-6 * max(1.0, abs(numeric)), (name, idx, got, numeric)


# ------------------------------------------------------------ C against the reference

def compare(a, b, where):
    out_a, hn_a, cn_a, dx_a, dh0_a, dc0_a, g_a = a
    out_b, hn_b, cn_b, dx_b, dh0_b, dc0_b, g_b = b
    for name, u, v in [("out", out_a, out_b), ("h_n", hn_a, hn_b), ("c_n", cn_a, cn_b),
                       ("dx", dx_a, dx_b), ("dh0", dh0_a, dh0_b), ("dc0", dc0_a, dc0_b)] + \
            [(k, g_a[k], g_b[k]) for k in g_b]:
        if v is None:
            assert u is None, (where, name)
            continue
        assert u.shape == v.shape and u.dtype == np.float32, (where, name)
        np.testing.assert_allclose(u, v, rtol=G_RTOL, atol=G_ATOL, err_msg=f"{where} {name}")


@every_configuration(MODES)
def test_c_backward_matches_reference(mode, num_layers, bidirectional, batch_first, bias):
    rng = np.random.default_rng(11)
    for N, T, H, I in GRADIENT_GRID:
        case = random_case(mode, rng, L=num_layers, bi=bidirectional, bf=batch_first, bias=bias,
                           T=T, N=N, I=I, H=H, seed=int(rng.integers(1 << 30)))
        layer, rest = case[0], case[1:]
        with backend("c"):
            ours = run_train(layer, *rest)
        with backend("reference"):
            ref = run_train(layer, *rest)
        compare(ours, ref, f"N={N} T={T} H={H}")


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "GRU_RB", "LSTM_PEEPHOLE_CIFG"])
def test_c_backward_large_hidden(mode):
    """H = 1000 (31 full panels and a partial one), I = 33, without initial states."""
    rng = np.random.default_rng(3)
    layer, x, _, _, d_out, _, _ = random_case(mode, rng, T=3, N=2, I=33, H=1000)
    with backend("c"):
        ours = run_train(layer, x, None, None, d_out, None, None)
    with backend("reference"):
        ref = run_train(layer, x, None, None, d_out, None, None)
    compare(ours, ref, "H=1000")


def test_backward_identical_for_every_thread_count():
    rng = np.random.default_rng(5)
    for mode in MODES:
        layer, *rest = random_case(mode, rng, L=2, bi=True, T=7, N=9, I=70, H=96)
        results = []
        for n in (1, 2, 3, 4):
            rnncore.set_num_threads(n)
            try:
                with backend("c"):
                    results.append(run_train(layer, *rest))
            finally:
                rnncore.set_num_threads(None)
        for r in results[1:]:
            for u, v in zip(r[:6], results[0][:6]):
                if v is not None:
                    np.testing.assert_array_equal(u, v)
            for k in r[6]:
                np.testing.assert_array_equal(r[6][k], results[0][6][k], err_msg=f"{mode} {k}")


# ------------------------------------------------------------ torch.autograd

@every_configuration(TORCH_MODES)
def test_backward_matches_torch_autograd(mode, num_layers, bidirectional, batch_first, bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    layer, x, h0, c0, d_out, dh_n, dc_n = random_case(
        mode, rng, L=num_layers, bi=bidirectional, bf=batch_first, bias=bias, T=5, N=3, I=4, H=17)
    with backend("c"):
        _, _, _, dx, dh0, dc0, grads = run_train(layer, x, h0, c0, d_out, dh_n, dc_n)

    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(mode, torch.nn.RNN)
    extra = {"nonlinearity": "relu" if mode == "RNN_RELU" else "tanh"} if mode.startswith("RNN") else {}
    module = cls(4, 17, num_layers=num_layers, bidirectional=bidirectional,
                 batch_first=batch_first, bias=bias, **extra).double()
    module.load_state_dict({k: torch.from_numpy(v.astype(np.float64))
                            for k, v in layer.state_dict().items()})

    def leaf(a):
        return torch.tensor(a, dtype=torch.float64, requires_grad=True)

    tx, th0 = leaf(x), leaf(h0)
    if mode == "LSTM":
        tc0 = leaf(c0)
        out, (hn, cn) = module(tx, (th0, tc0))
        loss = (cn * torch.from_numpy(dc_n.astype(np.float64))).sum()
    else:
        out, hn = module(tx, th0)
        loss = 0
    loss = loss + (out * torch.from_numpy(d_out.astype(np.float64))).sum() \
        + (hn * torch.from_numpy(dh_n.astype(np.float64))).sum()
    loss.backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=G_RTOL, atol=G_ATOL)
    np.testing.assert_allclose(dh0, th0.grad.numpy(), rtol=G_RTOL, atol=G_ATOL)
    if mode == "LSTM":
        np.testing.assert_allclose(dc0, tc0.grad.numpy(), rtol=G_RTOL, atol=G_ATOL)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=G_RTOL, atol=G_ATOL,
                                   err_msg=name)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dropout_gradients_match_torch_with_the_same_masks(mode):
    """Stacked layers with inter-layer dropout = single torch layers with our
    masks multiplied in between."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    layer = make_layer(mode, 4, 9, num_layers=3, bidirectional=True, dropout=0.4, seed=2)
    x = rng.standard_normal((6, 2, 4)).astype(np.float32)
    out, _, tape = layer.forward_train(x)
    masks = tape._masks
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    layer.zero_grad()
    dx, _ = layer.backward(tape, d_out)

    cls = torch.nn.LSTM if mode == "LSTM" else torch.nn.GRU
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    inp, modules = tx, []
    for li in range(3):
        m = cls(4 if li == 0 else 18, 9, bidirectional=True).double()
        m.load_state_dict({k.replace(f"_l{li}", "_l0"): torch.from_numpy(v.astype(np.float64))
                           for k, v in layer.state_dict().items() if f"_l{li}" in k})
        if masks[li] is not None:
            inp = inp * torch.from_numpy(masks[li].astype(np.float64))
        inp, _ = m(inp)
        modules.append(m)
    np.testing.assert_allclose(out, inp.detach().numpy(), rtol=1e-4, atol=1e-5)
    (inp * torch.from_numpy(d_out.astype(np.float64))).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=G_RTOL, atol=G_ATOL)
    for li, m in enumerate(modules):
        for name, p in m.named_parameters():
            ours = layer.grads[name.replace("_l0", f"_l{li}")]
            np.testing.assert_allclose(ours, p.grad.numpy(), rtol=G_RTOL, atol=G_ATOL, err_msg=name)


# ------------------------------------------------------------ semantics of the API

def test_forward_train_without_dropout_equals_forward(rng):
    for mode in MODES:
        layer, x, h0, c0, *_ = random_case(mode, rng, L=2, bi=True, H=33)
        hx = _state_pair(mode, h0, c0)
        out, hn, _ = layer.forward_train(x, hx)
        ref_out, ref_hn = layer(x, hx)
        np.testing.assert_array_equal(out, ref_out)
        lstm = mode.startswith("LSTM")
        for a, b in zip(hn if lstm else [hn], ref_hn if lstm else [ref_hn]):
            np.testing.assert_array_equal(a, b)


def test_dropout_masks_are_inverted_seeded_and_train_only(rng):
    x = rng.standard_normal((50, 20, 8)).astype(np.float32)
    a = rnncore.LSTM(8, 64, num_layers=2, dropout=0.25, seed=3)
    b = rnncore.LSTM(8, 64, num_layers=2, dropout=0.25, seed=3)
    out_a, _, tape = a.forward_train(x)
    out_b, _, _ = b.forward_train(x)
    np.testing.assert_array_equal(out_a, out_b)  # same seed, same masks
    mask = tape._masks[1]
    assert tape._masks[0] is None and mask.shape == (50, 20, 64)
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert abs((mask == 0).mean() - 0.25) < 0.01
    assert not np.array_equal(a.forward_train(x)[0], out_a)  # fresh masks per call
    out_c, _, _ = a.forward_train(x, rng=np.random.default_rng(9))
    out_d, _, _ = b.forward_train(x, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(out_c, out_d)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])  # inference: no dropout


def test_gradients_accumulate_until_zero_grad(rng):
    layer, x, h0, _, d_out, _, _ = random_case("GRU", rng, L=2)
    for _ in range(2):
        _, _, tape = layer.forward_train(x, h0)
        layer.backward(tape, d_out)
    twice = {k: v.copy() for k, v in layer.grads.items()}
    layer.zero_grad()
    assert all(not v.any() for v in layer.grads.values())
    _, _, tape = layer.forward_train(x, h0)
    layer.backward(tape, d_out)
    for k in twice:
        np.testing.assert_allclose(twice[k], 2 * layer.grads[k], rtol=1e-6, atol=1e-6)
    assert list(layer.grads) == list(layer.state_dict())
    assert all(layer.grads[k].shape == v.shape for k, v in layer.state_dict().items())


def test_unbatched_training_matches_batched(rng):
    for mode in MODES:
        for bf in (False, True):
            layer, x, h0, c0, d_out, dh_n, dc_n = random_case(mode, rng, L=2, bi=True, bf=bf, N=1)
            batched = run_train(layer, x, h0, c0, d_out, dh_n, dc_n)
            sq = (lambda a, axis: None if a is None else a.squeeze(axis))
            t_axis = 0 if bf else 1
            single = run_train(layer, sq(x, t_axis), sq(h0, 1), sq(c0, 1), sq(d_out, t_axis),
                               sq(dh_n, 1), sq(dc_n, 1))
            for name, u, v, axis in [("out", single[0], batched[0], t_axis),
                                     ("dx", single[3], batched[3], t_axis),
                                     ("dh0", single[4], batched[4], 1)]:
                np.testing.assert_array_equal(u, v.squeeze(axis), err_msg=f"{mode} {name}")
            for k in batched[6]:
                np.testing.assert_array_equal(single[6][k], batched[6][k])


def test_tape_misuse_is_a_clear_error(rng):
    layer, x, h0, _, d_out, _, _ = random_case("RNN_TANH", rng)
    other = make_layer("RNN_TANH", 5, 7)
    _, _, tape = layer.forward_train(x, h0)
    with pytest.raises(ValueError, match="another layer"):
        other.backward(tape, d_out)
    with pytest.raises(ValueError, match="d_out must have shape"):
        layer.backward(tape, d_out[:-1])
    with pytest.raises(TypeError, match="d_out must be float32"):
        layer.backward(tape, d_out.astype(np.int32))
    layer.backward(tape, d_out)
    with pytest.raises(ValueError, match="already used"):
        layer.backward(tape, d_out)
    with pytest.raises(TypeError, match="tape must be the Tape"):
        layer.backward("tape", d_out)
    _, _, tape = layer.forward_train(x, h0)
    layer.weight_hh_l0 = layer.weight_hh_l0 * 0.5
    with pytest.raises(ValueError, match="parameters changed"):
        layer.backward(tape, d_out)
    lstm = make_layer("LSTM", 5, 7)
    out, _, tape = lstm.forward_train(x)
    with pytest.raises(ValueError, match="d_hn must be a pair"):
        lstm.backward(tape, out, np.zeros((1, 3, 7), np.float32))
    with pytest.raises(ValueError, match="dh_n must have shape"):
        lstm.backward(tape, out, (np.zeros((2, 3, 7), np.float32), None))
    with pytest.raises(TypeError, match="rng must be"):
        lstm.forward_train(x, rng=0)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("mode", MODES)
def test_stacked_reference_backward_matches_finite_differences(mode, batch_first, bias):
    """The reference backend's backward of a 2-layer bidirectional layer
    against central differences of conftest.oracle (float64, written
    independently of rnncore's stacking). Weights are float32, so a
    perturbation is the float32 step actually taken (about 1e-3): the
    truncation error O(step^2) stays under 1e-5 of these gradients."""
    from conftest import oracle
    rng = np.random.default_rng(17)
    layer, x, h0, c0, d_out, dh_n, dc_n = random_case(mode, rng, L=2, bi=True, bf=batch_first,
                                                      bias=bias, T=3, N=2, I=3, H=4)
    if mode == "RNN_RELU":  # every pre-activation > 0: no kink within a step of 1e-3
        layer.load_state_dict({k: np.abs(v) + 0.05 for k, v in layer.state_dict().items()})
        x, h0 = np.abs(x), np.abs(h0)
    with backend("reference"):
        _, _, _, dx, dh0, dc0, grads = run_train(layer, x, h0, c0, d_out, dh_n, dc_n)

    def loss(x_, h0_, c0_):
        lstm = mode.startswith("LSTM")
        y, h, c = oracle(layer, x_, h0_, c0_ if lstm else None)
        total = (y * d_out).sum() + (h * dh_n).sum()
        return total + ((c * dc_n).sum() if lstm else 0.0)

    def check(name, analytic, get, put):
        flat = get().reshape(-1)
        for idx in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            base = flat.copy()
            up, down = base.copy(), base.copy()
            up[idx] = np.float32(base[idx] + np.float32(1e-3))
            down[idx] = np.float32(base[idx] - np.float32(1e-3))
            put(up.reshape(get().shape))
            l_up = loss(x, h0, c0)
            put(down.reshape(get().shape))
            l_down = loss(x, h0, c0)
            put(base.reshape(get().shape))
            numeric = (l_up - l_down) / (float(up[idx]) - float(down[idx]))
            got = float(analytic.reshape(-1)[idx])
            assert abs(got - numeric) <= 1e-4 * max(1.0, abs(numeric)), (name, idx, got, numeric)

    for name in layer.state_dict():
        check(name, grads[name], lambda n=name: np.array(layer.state_dict()[n]),
              lambda v, n=name: layer.load_state_dict({n: v}, strict=False))
    state = {"x": x, "h0": h0, "c0": c0}
    lstm = mode.startswith("LSTM")
    for name, analytic in (("x", dx), ("h0", dh0)) + ((("c0", dc0),) if lstm else ()):
        def put(v, n=name):
            state[n][...] = v
        check(name, analytic, lambda n=name: state[n].copy(), put)
