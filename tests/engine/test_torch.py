"""Parity with torch.nn.RNN/LSTM/GRU on the same weights (skipped without
torch). This pins gate order, bias placement and the state-dict contract."""
import numpy as np
import pytest

import rnncore
from rnncore import reference
from conftest import ATOL, RTOL, call, make_layer

torch = pytest.importorskip("torch")


TORCH = {"RNN_TANH": (torch.nn.RNN, {"nonlinearity": "tanh"}),
         "RNN_RELU": (torch.nn.RNN, {"nonlinearity": "relu"}),
         "LSTM": (torch.nn.LSTM, {}), "GRU": (torch.nn.GRU, {})}


def torch_module(mode, I, H, **kw):
    cls, extra = TORCH[mode]
    torch.manual_seed(0)
    return cls(I, H, **extra, **kw)


def torch_call(module, x, h0=None, c0=None, dtype=torch.float32):
    module = module.to(dtype)
    xt = torch.from_numpy(np.asarray(x)).to(dtype)
    hx = None
    if h0 is not None:
        h = torch.from_numpy(h0).to(dtype)
        hx = (h, torch.from_numpy(c0).to(dtype)) if isinstance(module, torch.nn.LSTM) else h
    with torch.no_grad():
        y, state = module(xt, hx)
    if isinstance(module, torch.nn.LSTM):
        return y.numpy(), state[0].numpy(), state[1].numpy()
    return y.numpy(), state.numpy(), None


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("mode", list(TORCH))
def test_torch_weights_load_unchanged(mode, num_layers, bidirectional, batch_first, bias, rng):
    I, H, N, T = 7, 17, 3, 6
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    module = torch_module(mode, I, H, **kw)
    layer = make_layer(mode, I, H, **kw)
    sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    assert list(layer.state_dict()) == list(sd)  # names and order
    layer.load_state_dict(sd)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(np.float32)
    h0 = rng.standard_normal((num_layers * D, N, H)).astype(np.float32)
    c0 = rng.standard_normal((num_layers * D, N, H)).astype(np.float32)
    ours = call(layer, x, h0, c0)
    theirs = torch_call(module, x, h0, c0)
    for a, b in zip(ours, theirs):
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", list(TORCH))
def test_torch_unbatched_and_default_state(mode, rng):
    module = torch_module(mode, 4, 5, num_layers=2, bidirectional=True)
    layer = make_layer(mode, 4, 5, num_layers=2, bidirectional=True)
    layer.load_state_dict({k: v.detach().numpy() for k, v in module.state_dict().items()})
    x = rng.standard_normal((6, 4)).astype(np.float32)
    ours, theirs = call(layer, x), torch_call(module, x)
    assert ours[0].shape == theirs[0].shape == (6, 10)
    for a, b in zip(ours, theirs):
        if b is not None:
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", list(TORCH))
def test_our_weights_load_into_torch(mode, rng):
    layer = make_layer(mode, 3, 8, num_layers=2, seed=11)
    module = torch_module(mode, 3, 8, num_layers=2)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(call(layer, x)[0], torch_call(module, x)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", list(TORCH))
def test_reference_float64_matches_torch_float64(mode, rng):
    """The reference alone against torch in float64: gate order and equations
    agree to rounding, independently of the C kernels."""
    module = torch_module(mode, 5, 6)
    sd = {k: v.detach().double().numpy() for k, v in module.state_dict().items()}
    x = rng.standard_normal((4, 2, 5))
    h0, c0 = rng.standard_normal((2, 6)), rng.standard_normal((2, 6))
    y, h, c = reference.layer_forward(mode, x, h0, c0, sd["weight_ih_l0"], sd["weight_hh_l0"],
                                      sd["bias_ih_l0"], sd["bias_hh_l0"])
    ty, th, tc = torch_call(module, x, h0[None], c0[None], dtype=torch.float64)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, th[0], rtol=1e-12, atol=1e-12)
    if c is not None:
        np.testing.assert_allclose(c, tc[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", list(TORCH))
def test_initialisation_matches_torch_distribution(mode):
    """Same names, shapes and U(-1/sqrt(H), 1/sqrt(H)) bounds as torch."""
    H = 64
    layer = make_layer(mode, 10, H, num_layers=2, bidirectional=True, seed=0)
    module = torch_module(mode, 10, H, num_layers=2, bidirectional=True)
    bound = 1 / np.sqrt(H)
    for (name, ours), (tname, theirs) in zip(layer.named_parameters(), module.named_parameters()):
        assert name == tname and ours.shape == tuple(theirs.shape) and ours.dtype == np.float32
        assert np.abs(ours).max() <= bound and np.abs(ours).max() > 0.9 * bound
    again = make_layer(mode, 10, H, num_layers=2, bidirectional=True, seed=0)
    other = make_layer(mode, 10, H, num_layers=2, bidirectional=True, seed=1)
    np.testing.assert_array_equal(again.weight_hh_l1, layer.weight_hh_l1)
    assert not np.array_equal(other.weight_hh_l1, layer.weight_hh_l1)
    assert rnncore.RNN(3, 4, seed=np.random.default_rng(5)).weight_ih_l0.shape == (4, 3)
