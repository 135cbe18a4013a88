"""rnc_gemm (rnncore.engine.runtime.matmul): the blocked GEMM behind the language
model's decoder, against float64 NumPy for odd sizes, transposed (strided)
operands, accumulation, every CPU path and thread count."""
import numpy as np
import pytest

import rnncore
from rnncore.engine import runtime



@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (7, 3, 17), (13, 200, 33), (97, 513, 66),
                                     (200, 7, 1000)])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_float64(M, K, N, ta, tb, threads, rng):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    a, b = (a.T if ta else a), (b.T if tb else b)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    saved = rnncore.get_num_threads()
    rnncore.set_num_threads(threads)
    try:
        out = runtime.matmul(a, b)
        acc = np.ones((M, N), np.float32)
        runtime.matmul(a, b, out=acc, accumulate=True)
    finally:
        rnncore.set_num_threads(saved)
    tol = 1e-5 * np.sqrt(K) * np.abs(expected).max() + 1e-6
    np.testing.assert_allclose(out, expected, atol=tol, rtol=0)
    np.testing.assert_allclose(acc, expected + 1, atol=tol, rtol=0)


def test_same_result_for_every_thread_count(rng):
    a = rng.standard_normal((300, 700)).astype(np.float32)
    b = rng.standard_normal((700, 1000)).astype(np.float32)
    saved = rnncore.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 4):
            rnncore.set_num_threads(t)
            outs.append(runtime.matmul(a, b.T.copy().T))
    finally:
        rnncore.set_num_threads(saved)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_bad_shapes_are_rejected():
    a, b = np.ones((3, 4), np.float32), np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match="b's rows"):
        runtime.matmul(a, b)
    with pytest.raises(ValueError, match="out must have shape"):
        runtime.matmul(a, np.ones((4, 2), np.float32), out=np.ones((3, 3), np.float32))
