"""rnc_linear (rnncore.engine.runtime.Linear): a linear layer with weights
packed once, against float64 on every CPU path, identical for every thread
count, and its argument checks."""
import numpy as np
import pytest

import rnncore
from rnncore.engine import runtime
from conftest import backend

# float32 products over K <= 513 terms, weights scaled by 1/sqrt(K) so that
# outputs are O(1) (as a layer's initialisation): rounding grows like
# sqrt(K) * 6e-8 relative to the terms, under 1e-5 here
TOL = dict(rtol=2e-5, atol=2e-5)


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (1, 7, 17), (35, 512, 1000), (49, 33, 65),
                                     (200, 17, 31), (3, 513, 32), (97, 64, 33),
                                     (193, 9, 1), (250, 1100, 47), (401, 64, 545)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_float64(M, K, N, bias, rng, n_threads):
    w = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    x = rng.standard_normal((M, K)).astype(np.float32)
    y = runtime.Linear(w, b)(x)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
    assert y.dtype == np.float32 and y.shape == (M, N)
    np.testing.assert_allclose(y, ref, **TOL)
    strided = np.zeros((M, K + 5), np.float32)
    strided[:, :K] = x
    np.testing.assert_array_equal(runtime.Linear(w, b)(strided[:, :K]), y)  # rows of any stride


@pytest.mark.usefixtures("isa")
def test_same_result_for_every_thread_count(rng):
    w = rng.standard_normal((1000, 96)).astype(np.float32)
    x = rng.standard_normal((150, 96)).astype(np.float32)
    lin = runtime.Linear(w, rng.standard_normal(1000).astype(np.float32))
    outs = []
    for n in (1, 2, 3, 4):
        rnncore.set_num_threads(n)
        outs.append(lin(x))
    rnncore.set_num_threads(None)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


def test_reference_backend_and_errors(rng):
    w = rng.standard_normal((5, 3)).astype(np.float32)
    lin = runtime.Linear(w)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    with backend("reference"):
        np.testing.assert_allclose(lin(x), x @ w.T, **TOL)
    assert lin(np.zeros((0, 3), np.float32)).shape == (0, 5)
    with pytest.raises(ValueError, match=r"x must be \(M, 3\)"):
        lin(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="bias must have shape"):
        runtime.Linear(w, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        runtime.Linear(np.zeros((0, 3), np.float32))


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("K", [40, 513, 1100])
@pytest.mark.parametrize("bias", [True, False])
def test_row_blocks_and_gemm_order_agree_bit_for_bit(K, bias, rng, n_threads):
    """Beyond 192 rows rnc_linear runs in the GEMM's blocking on the same
    packed weights: every output is the same float32 sum as in 48-row blocks
    (rows of whole tiles; K over several GEMM blocks at 1100)."""
    w = (rng.standard_normal((70, K)) / np.sqrt(K)).astype(np.float32)
    lin = runtime.Linear(w, rng.standard_normal(70).astype(np.float32) if bias else None)
    x = rng.standard_normal((420, K)).astype(np.float32)
    np.testing.assert_array_equal(lin(x)[:192], lin(x[:192]))


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("M", [5, 300])
def test_out_argument(M, rng):
    w = rng.standard_normal((33, 20)).astype(np.float32)
    lin = runtime.Linear(w, rng.standard_normal(33).astype(np.float32))
    x = rng.standard_normal((M, 20)).astype(np.float32)
    out = np.full((M, 33), np.nan, np.float32)
    assert lin(x, out) is out
    np.testing.assert_array_equal(out, lin(x))
    for bad in (np.empty((M, 33), np.float64), np.empty((M, 32), np.float32),
                np.empty((33, M), np.float32).T, [[0.0] * 33] * M):
        with pytest.raises(ValueError, match="out"):
            lin(x, bad)
    ro = np.empty((M, 33), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        lin(x, ro)


def test_out_argument_reference(rng):
    w = rng.standard_normal((9, 4)).astype(np.float32)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    out = np.empty((3, 9), np.float32)
    with backend("reference"):
        assert runtime.Linear(w)(x, out) is out
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-5, atol=1e-5)
