"""C kernels against the float64 reference over the shape grid of the
foundation issue: every cell x num_layers 1-3 x both directions x both layouts
x N in {1, 5} x T in {1, 9} x H in {1, 7, 17, 64} x I in {1, 3, 33}, with
non-zero initial states."""
import numpy as np
import pytest

import rnncore
from conftest import ATOL, RTOL, backend, call, make_layer, oracle


MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU_RB", "LSTM_PEEPHOLE", "LSTM_CIFG", "LSTM_PEEPHOLE_CIFG"]
from rnncore.tools.cases import KERNEL_GRID as GRID  # (N, T, H, I)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_parity_grid(mode, num_layers, bidirectional, batch_first, rng):
    D = 2 if bidirectional else 1
    for N, T, H, I in GRID:
        layer = make_layer(mode, I, H, num_layers=num_layers, bidirectional=bidirectional,
                           batch_first=batch_first, seed=int(rng.integers(1 << 30)))
        shape = (N, T, I) if batch_first else (T, N, I)
        x = rng.standard_normal(shape).astype(np.float32)
        h0 = rng.standard_normal((num_layers * D, N, H)).astype(np.float32)
        c0 = rng.standard_normal((num_layers * D, N, H)).astype(np.float32)
        with backend("c"):
            y, h, c = call(layer, x, h0, c0)
        y_ref, h_ref, c_ref = oracle(layer, x, h0, c0)
        where = f"N={N} T={T} H={H} I={I}"
        assert y.dtype == np.float32 and y.shape == y_ref.shape, where
        np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL, err_msg=where)
        np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=ATOL, err_msg=where)
        if mode.startswith("LSTM"):
            np.testing.assert_allclose(c, c_ref, rtol=RTOL, atol=ATOL, err_msg=where)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bias", [True, False])
def test_parity_without_bias_and_zero_state(mode, bias, rng):
    assert rnncore.backend() == "c"  # the isa fixture puts every test here on the kernels
    layer = make_layer(mode, 6, 11, num_layers=2, bias=bias, bidirectional=True, seed=3)
    x = rng.standard_normal((4, 3, 6)).astype(np.float32)
    y, h, c = call(layer, x)
    y_ref, h_ref, c_ref = oracle(layer, x)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=ATOL)
    if mode.startswith("LSTM"):
        np.testing.assert_allclose(c, c_ref, rtol=RTOL, atol=ATOL)
    else:
        assert c is None and c_ref is None
    extra = 4 if "PEEP" in mode else 0  # a peephole vector per layer and direction
    assert len(layer.state_dict()) == (16 if bias else 8) + extra  # 2 layers x 2 directions


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_equals_batch_of_one(mode, batch_first, rng):
    layer = make_layer(mode, 5, 9, num_layers=2, bidirectional=True,
                       batch_first=batch_first, seed=1)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    h0 = rng.standard_normal((4, 9)).astype(np.float32)
    c0 = rng.standard_normal((4, 9)).astype(np.float32)
    y, h, c = call(layer, x, h0, c0)
    xb = x[:, None] if not batch_first else x[None]
    yb, hb, cb = call(layer, xb, h0[:, None], c0[:, None])
    assert y.shape == (7, 18) and h.shape == (4, 9)
    np.testing.assert_array_equal(y, yb[:, 0] if not batch_first else yb[0])
    np.testing.assert_array_equal(h, hb[:, 0])
    if mode.startswith("LSTM"):
        np.testing.assert_array_equal(c, cb[:, 0])


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", MODES)
def test_large_hidden_multi_tile(mode, rng):
    """H = 1000 (not a multiple of the 16-unit tile) and I = 130, several threads."""
    layer = make_layer(mode, 130, 1000, seed=5)
    x = rng.standard_normal((3, 6, 130)).astype(np.float32)
    h0 = rng.standard_normal((1, 6, 1000)).astype(np.float32)
    c0 = rng.standard_normal((1, 6, 1000)).astype(np.float32)
    y, h, c = call(layer, x, h0, c0)
    y_ref, h_ref, c_ref = oracle(layer, x, h0, c0)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    if mode.startswith("LSTM"):
        np.testing.assert_allclose(c, c_ref, rtol=RTOL, atol=ATOL)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", MODES)
def test_reference_backend_matches_c(mode, rng):
    layer = make_layer(mode, 8, 12, num_layers=2, bidirectional=True, batch_first=True, seed=2)
    x = rng.standard_normal((3, 5, 8)).astype(np.float32)
    with backend("c"):
        y_c, h_c, _ = call(layer, x)
    with backend("reference"):
        y_r, h_r, _ = call(layer, x)
    assert y_r.dtype == np.float32
    np.testing.assert_allclose(y_c, y_r, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h_c, h_r, rtol=RTOL, atol=ATOL)


def test_backend_name():
    assert rnncore.backend() in ("c", "reference")


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("N, T", [(40, 13), (3, 200), (100, 5)])
def test_input_projection_chunks(mode, batch_first, N, T, rng):
    """The input projection runs in chunks of about 192 rows: several chunks,
    a partial last one, and in batch-first layout both job shapes (per step
    when N >= steps per chunk, per sequence otherwise), in both directions."""
    layer = make_layer(mode, 6, 9, bidirectional=True, batch_first=batch_first, seed=4)
    x = rng.standard_normal((N, T, 6) if batch_first else (T, N, 6)).astype(np.float32)
    h0 = rng.standard_normal((2, N, 9)).astype(np.float32)
    y, h, c = call(layer, x, h0, h0)
    y_ref, h_ref, c_ref = oracle(layer, x, h0, h0)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=ATOL)
