"""Accuracy of the kernels' vectorised tanh and sigmoid (csrc/src/isa/kernels_simd.inc),
measured through the public layers on a dense sweep against float64."""
import numpy as np
import pytest

import rnncore
from conftest import backend

pytestmark = pytest.mark.usefixtures("isa")  # every CPU path

SWEEP = np.concatenate([np.linspace(-20, 20, 400001), [-100.0, -88.5, -87.0, 0.0, 87.0, 89.0,
                                                       1e-30, -1e-30, 1e30, -1e30]])


def _as_sequence(v):
    return v.astype(np.float32).reshape(-1, 1, 1)  # T = len(v), N = 1, I = 1


def test_tanh_max_error():
    """RNN(1, 1) with w_ih = 1 and no recurrence is exactly tanh(x)."""
    rnn = rnncore.RNN(1, 1, bias=False)
    rnn.weight_ih_l0 = np.ones((1, 1), np.float32)
    rnn.weight_hh_l0 = np.zeros((1, 1), np.float32)
    x = _as_sequence(SWEEP)
    with backend("c"):
        y = rnn(x)[0].ravel().astype(np.float64)
    err = np.abs(y - np.tanh(x.ravel().astype(np.float64)))
    assert err.max() <= 2.4e-7, err.max()
    assert y[np.abs(x.ravel()) > 10].tolist() == np.sign(x.ravel()[np.abs(x.ravel()) > 10]).tolist()


def test_sigmoid_max_error():
    """GRU(1, 1) with only W_iz = 1 and h0 = 1 gives h = z = sigmoid(x)."""
    gru = rnncore.GRU(1, 1, bias=False)
    gru.weight_ih_l0 = np.array([[0.0], [1.0], [0.0]], np.float32)
    gru.weight_hh_l0 = np.zeros((3, 1), np.float32)
    x = _as_sequence(SWEEP)
    with backend("c"):
        # T steps of a 1-unit GRU: feed each value as its own batch row instead
        y = gru(x.reshape(1, -1, 1), np.ones((1, x.size, 1), np.float32))[0].ravel()
    xs = x.ravel().astype(np.float64)
    with np.errstate(over="ignore"):
        exact = 1.0 / (1.0 + np.exp(-xs))
    err = np.abs(y.astype(np.float64) - exact)
    assert err.max() <= 1.2e-7, err.max()
    assert (y[xs < -88.5] == 0).all() and (y[xs > 20] == 1).all()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_special_values(value):
    rnn = rnncore.RNN(1, 1, bias=False)
    rnn.weight_ih_l0 = np.ones((1, 1), np.float32)
    rnn.weight_hh_l0 = np.zeros((1, 1), np.float32)
    with backend("c"):
        y = rnn(np.full((1, 1, 1), value, np.float32))[0].item()
    expected = np.tanh(value)
    assert (np.isnan(y) and np.isnan(expected)) or y == expected
