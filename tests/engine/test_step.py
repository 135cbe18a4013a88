"""Streaming: layer.step() against the whole-sequence result, on every CPU
path and on the reference backend; argument errors."""
import numpy as np
import pytest

import rnncore
from conftest import backend, call, make_layer

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU_RB", "LSTM_PEEPHOLE_CIFG"]
# One step's input projection is summed in another order than the sequence's
# chunked GEMM (different tile heights): float32 rounding, ~1e-7 relative per
# step, compounded over 9 steps and 3 layers.
STEP_RTOL, STEP_ATOL = 1e-5, 1e-6


def stepped(layer, x, h0=None, c0=None):
    """Run layer.step over time-major x; returns (outputs [T, N, H], h, c)."""
    state = None if h0 is None else ((h0, c0) if layer.mode == "LSTM" else h0)
    outs = []
    for t in range(x.shape[0]):
        y, state = layer.step(x[t], state)
        outs.append(y)
    h, c = state if layer.mode == "LSTM" else (state, None)
    return np.stack(outs), h, c


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_steps_equal_the_whole_sequence(mode, num_layers, rng, n_threads):
    for N, H, I in [(1, 7, 3), (5, 17, 1), (4, 64, 33), (2, 1, 2)]:
        layer = make_layer(mode, I, H, num_layers=num_layers, seed=int(rng.integers(1 << 30)))
        x = rng.standard_normal((9, N, I)).astype(np.float32)
        h0 = rng.standard_normal((num_layers, N, H)).astype(np.float32)
        c0 = rng.standard_normal((num_layers, N, H)).astype(np.float32)
        with backend("c"):
            y_seq, h_seq, c_seq = call(layer, x, h0, c0)
            y, h, c = stepped(layer, x, h0, c0)
        np.testing.assert_allclose(y, y_seq, rtol=STEP_RTOL, atol=STEP_ATOL)
        np.testing.assert_allclose(h, h_seq, rtol=STEP_RTOL, atol=STEP_ATOL)
        if mode.startswith("LSTM"):
            np.testing.assert_allclose(c, c_seq, rtol=STEP_RTOL, atol=STEP_ATOL)


@pytest.mark.parametrize("mode", MODES)
def test_steps_on_each_backend_with_batch_first(ops, mode, rng):
    layer = make_layer(mode, 3, 6, num_layers=2, batch_first=True, seed=1)
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)  # (N, T, I)
    y_seq, h_seq, _ = call(layer, x)
    state, outs = None, []
    for t in range(5):
        y, state = layer.step(x[:, t], state)
        outs.append(y)
    h = state[0] if mode.startswith("LSTM") else state
    np.testing.assert_allclose(np.stack(outs, axis=1), y_seq, rtol=STEP_RTOL, atol=STEP_ATOL)
    np.testing.assert_allclose(h, h_seq, rtol=STEP_RTOL, atol=STEP_ATOL)


def test_unbatched_steps_and_state_shapes(rng):
    lstm = rnncore.LSTM(4, 8, num_layers=2, seed=0)
    x = rng.standard_normal((6, 4)).astype(np.float32)  # (T, I) unbatched
    y_seq, (h_seq, c_seq) = lstm(x)
    state = None
    for t in range(6):
        y, state = lstm.step(x[t], state)
        assert y.shape == (8,) and state[0].shape == (2, 8) and state[1].shape == (2, 8)
    np.testing.assert_allclose(y, y_seq[-1], rtol=STEP_RTOL, atol=STEP_ATOL)
    np.testing.assert_allclose(state[1], c_seq, rtol=STEP_RTOL, atol=STEP_ATOL)


def test_step_follows_parameter_and_thread_changes(rng):
    gru = rnncore.GRU(3, 40, seed=0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    before, _ = gru.step(x)
    gru.weight_ih_l0 = gru.weight_ih_l0 * 2
    after, _ = gru.step(x)
    np.testing.assert_allclose(after, gru(x[None])[0][0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(before, after)
    rnncore.set_num_threads(1)
    try:
        np.testing.assert_array_equal(gru.step(x)[0], after)
    finally:
        rnncore.set_num_threads(None)


def test_step_errors_name_the_argument():
    lstm = rnncore.LSTM(4, 8)
    with pytest.raises(ValueError, match="x_t must be"):
        lstm.step(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="x_t must be"):
        lstm.step(np.zeros((1, 2, 4), np.float32))
    with pytest.raises(TypeError, match="x_t must be float32"):
        lstm.step(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="h0|h must have shape"):
        lstm.step(np.zeros((2, 4), np.float32), (np.zeros((1, 3, 8), np.float32),
                                                 np.zeros((1, 2, 8), np.float32)))
    with pytest.raises(ValueError, match="hx must be a pair"):
        lstm.step(np.zeros((2, 4), np.float32), np.zeros((1, 2, 8), np.float32))
    with pytest.raises(ValueError, match="bidirectional"):
        rnncore.GRU(4, 8, bidirectional=True).step(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="empty batch"):
        lstm.step(np.zeros((0, 4), np.float32))
    y, (h, c) = lstm.step(np.zeros((2, 4)))  # float64 is converted
    assert y.dtype == np.float32 and h.shape == (1, 2, 8)
