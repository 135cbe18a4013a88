"""Weights from and to PyTorch modules and Keras weight lists."""
import numpy as np
import pytest

from rnncore import interop
from conftest import ATOL, RTOL, call


@pytest.mark.parametrize("kind,kw", [("RNN", {"nonlinearity": "relu"}), ("RNN", {}), ("LSTM", {}),
                                     ("GRU", {})])
@pytest.mark.parametrize("layout", [dict(num_layers=2, bidirectional=True, batch_first=True),
                                    dict(num_layers=1, bias=False)])
def test_torch_round_trip(kind, kw, layout, rng):
    torch = pytest.importorskip("torch")
    module = getattr(torch.nn, kind)(5, 9, **kw, **layout)
    layer = interop.from_torch(module)
    assert type(layer).__name__ == kind and layer.num_layers == module.num_layers
    assert layer.batch_first == module.batch_first and layer.bias == module.bias
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    with torch.no_grad():
        y_t, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(call(layer, x)[0], y_t.numpy(), rtol=RTOL, atol=ATOL)
    back = layer.to_torch()
    assert type(back) is type(module) and back.hidden_size == 9
    for (k, a), (k2, b) in zip(module.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    with torch.no_grad():
        module.weight_ih_l0.mul_(2)  # a copy: the rnncore layer does not change
    assert not np.array_equal(layer.weight_ih_l0, module.weight_ih_l0.detach().numpy())


def test_from_torch_rejects_what_it_cannot_represent():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="torch.nn.RNN, LSTM or GRU"):
        interop.from_torch(torch.nn.Linear(2, 3))
    with pytest.raises(TypeError, match="rnncore RNN, LSTM or GRU"):
        interop.to_torch(object())


def keras_lstm(x, kernel, recurrent, bias):
    """Keras LSTM (gates i, f, c, o as column blocks), batch-first x."""
    H = recurrent.shape[0]
    N, T, _ = x.shape
    h, c = np.zeros((N, H)), np.zeros((N, H))
    sig = lambda v: 1 / (1 + np.exp(-v))
    for t in range(T):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
    return h


def keras_gru(x, kernel, recurrent, bias):
    """Keras GRU, reset_after=True (gates z, r, h), bias [2, 3H]."""
    H = recurrent.shape[0]
    N, T, _ = x.shape
    h = np.zeros((N, H))
    sig = lambda v: 1 / (1 + np.exp(-v))
    for t in range(T):
        xi = x[:, t] @ kernel + bias[0]
        hr = h @ recurrent + bias[1]
        z = sig(xi[:, :H] + hr[:, :H])
        r = sig(xi[:, H:2 * H] + hr[:, H:2 * H])
        n = np.tanh(xi[:, 2 * H:] + r * hr[:, 2 * H:])
        h = z * h + (1 - z) * n
    return h


def keras_gru_reset_before(x, kernel, recurrent, bias):
    """Keras GRU, reset_after=False (gates z, r, h), bias [3H]."""
    H = recurrent.shape[0]
    N, T, _ = x.shape
    h = np.zeros((N, H))
    sig = lambda v: 1 / (1 + np.exp(-v))
    for t in range(T):
        xi = x[:, t] @ kernel + bias
        z = sig(xi[:, :H] + h @ recurrent[:, :H])
        r = sig(xi[:, H:2 * H] + h @ recurrent[:, H:2 * H])
        n = np.tanh(xi[:, 2 * H:] + (r * h) @ recurrent[:, 2 * H:])
        h = z * h + (1 - z) * n
    return h


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "GRU_reset_before", "SimpleRNN"])
def test_keras_weights_give_the_keras_result(kind, rng):
    I, H = 3, 5
    G = {"LSTM": 4, "GRU": 3, "GRU_reset_before": 3, "SimpleRNN": 1}[kind]
    kernel = rng.standard_normal((I, G * H)).astype(np.float32) * 0.5
    recurrent = rng.standard_normal((H, G * H)).astype(np.float32) * 0.5
    bias = rng.standard_normal((2, G * H) if kind == "GRU" else (G * H,)).astype(np.float32)
    x = rng.standard_normal((2, 6, I)).astype(np.float32)
    if kind == "GRU_reset_before":
        layer = interop.from_keras_weights("GRU", [kernel, recurrent, bias], reset_after=False)
        assert not layer.reset_after
    else:
        layer = interop.from_keras_weights(kind, [kernel, recurrent, bias])
    assert layer.batch_first
    if kind == "LSTM":
        expected = keras_lstm(x, kernel, recurrent, bias)
    elif kind == "GRU":
        expected = keras_gru(x, kernel, recurrent, bias)
    elif kind == "GRU_reset_before":
        expected = keras_gru_reset_before(x, kernel, recurrent, bias)
    else:
        h = np.zeros((2, H))
        for t in range(6):
            h = np.tanh(x[:, t] @ kernel + h @ recurrent + bias)
        expected = h
    np.testing.assert_allclose(call(layer, x)[1][0], expected, rtol=RTOL, atol=ATOL)


def test_keras_weight_errors():
    k, r = np.zeros((3, 20), np.float32), np.zeros((5, 20), np.float32)
    with pytest.raises(ValueError, match="kind must be"):
        interop.from_keras_weights("Dense", [k, r])
    with pytest.raises(ValueError, match="kernel must be"):
        interop.from_keras_weights("LSTM", [k, np.zeros((5, 16), np.float32)])
    with pytest.raises(ValueError, match="bias must be"):
        interop.from_keras_weights("LSTM", [k, r, np.zeros(7, np.float32)])
    with pytest.raises(ValueError, match="no PyTorch equivalent"):
        interop.from_keras_weights("GRU", [np.zeros((3, 15)), np.zeros((5, 15))],
                                   reset_after=False).to_torch()
    layer = interop.from_keras_weights("LSTM", [k, r])  # no bias
    assert not layer.bias
