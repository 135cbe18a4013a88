"""rnc_softmax (rnncore.engine.runtime.softmax_rows): softmax and
log-softmax over rows, against float64 on every CPU path and thread count,
NumPy's answers for NaN / Inf rows, in place and strided, and the argument
checks."""
import numpy as np
import pytest

import rnncore
from rnncore import reference
from rnncore.engine import runtime
from rnncore.engine.runtime import softmax_rows
from conftest import backend


def check_close(y, x, log):
    """y within float32 rounding of the float64 answer. The float32
    algorithm (NumPy's too) rounds z = x - max(x) first: 2^-24 |z| absolute,
    so exp(z) carries a relative error up to 6e-8 |z| and z - log(s) an
    absolute one of 6e-8 |z| (plus a few ulp of the result); s, a float sum
    of V terms in 16 or more partials, a relative one below 2^-24 V / 16
    (4e-9 V; 1e-9 V allowed: the rounding errors of random terms cancel in
    part)."""
    ref = reference.softmax(x, log)
    z = np.abs(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    with np.errstate(over="ignore"):
        ref32 = ref.astype(np.float32)  # beyond float32's range: -inf, as NumPy's float32
    same_inf = np.isinf(ref32) & (y == ref32)
    ref = np.where(same_inf, 0.0, ref)
    y = np.where(same_inf, 0.0, y)
    err = np.abs(y - ref)
    s_err = 1e-9 * x.shape[1]
    if log:
        bound = 1e-6 + s_err + 2.5e-7 * (np.abs(ref) + z)
    else:
        bound = (1e-6 + s_err + 1.2e-7 * z) * ref + 1e-37
    assert (err <= bound).all(), (err / bound).max()


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("M, V", [(1, 1), (1, 7), (3, 17), (5, 64), (7, 65), (35, 1000),
                                  (2, 10007), (9, 33)])
@pytest.mark.parametrize("log", [True, False])
def test_matches_float64(M, V, log, rng, n_threads):
    x = (rng.standard_normal((M, V)) * 4).astype(np.float32)
    y = softmax_rows(x, log=log)
    assert y.dtype == np.float32 and y.shape == (M, V)
    check_close(y, x, log)
    if not log:
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    z = x.copy()
    assert softmax_rows(z, z, log=log) is z  # in place: the same bits
    np.testing.assert_array_equal(z, y)
    wide = np.full((M, V + 3), 7.0, np.float32)
    wide[:, :V] = x
    out = np.full((M, V + 5), 9.0, np.float32)
    softmax_rows(wide[:, :V], out[:, :V], log=log)  # rows of any stride
    np.testing.assert_array_equal(out[:, :V], y)
    assert (out[:, V:] == 9.0).all() and (wide[:, V:] == 7.0).all()


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("log", [True, False])
def test_huge_and_tiny_values(log):
    x = np.array([[3e38, -3e38, 0.0, 1e-45],
                  [1e-40, -1e-40, 0.0, 1e-38],
                  [-1e30, -1e30 - 1e24, -1e30, -1e31],
                  [88.0, -88.0, 100.0, -100.0]], np.float32)
    for V in (4, 40, 41):  # vector body and tail
        xv = np.tile(x, (1, V // 4 + 1))[:, :V]
        check_close(softmax_rows(np.ascontiguousarray(xv), log=log), xv, log)


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("log", [True, False])
@pytest.mark.parametrize("V", [1, 5, 16, 33, 100])
def test_nan_inf_rows_as_numpy(log, V, rng):
    """NumPy's float32 answer: rows holding NaN or +inf, and rows all -inf,
    are NaN; -inf entries give 0 / -inf; the rest is unaffected."""
    x = rng.standard_normal((6, V)).astype(np.float32)
    x[0, V // 2] = np.nan
    x[1, V - 1] = np.inf
    x[2] = -np.inf
    x[3, 0] = -np.inf
    x[5, :] = np.nan
    y = softmax_rows(x, log=log)
    assert np.isnan(y[[0, 1, 2, 5]]).all()
    assert not np.isnan(y[4]).any()
    if V > 1:  # (with V = 1 row 3 is all -inf)
        assert not np.isnan(y[3]).any()
        assert y[3, 0] == (-np.inf if log else 0.0)
        check_close(y[4:5], x[4:5], log)
        rest = x[3:4, 1:]
        ref = softmax_rows(rest, log=log)  # the -inf entry does not count
        np.testing.assert_allclose(y[3:4, 1:], ref, rtol=1e-6, atol=1e-6)
    with np.errstate(all="ignore"):
        z = x - x.max(axis=1, keepdims=True)
        npy = z - np.log(np.exp(z).sum(axis=1, keepdims=True)) if log else \
            np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(npy))


@pytest.mark.usefixtures("isa")
def test_same_result_for_every_thread_count(rng):
    x = (rng.standard_normal((67, 3001)) * 5).astype(np.float32)
    outs = []
    for n in (1, 2, 3, 4):
        rnncore.set_num_threads(n)
        outs.append(softmax_rows(x, log=True))
    rnncore.set_num_threads(None)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_reference_backend(rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    with backend("reference"):
        for log in (True, False):
            check_close(softmax_rows(x, log=log), x, log)


@pytest.mark.parametrize("name", ["reference", "c"])
def test_bad_arguments(name, rng):
    x = rng.standard_normal((3, 8)).astype(np.float32)
    with backend(name):
        with pytest.raises(TypeError, match="float32"):
            softmax_rows(x.astype(np.float64))
        with pytest.raises(TypeError, match="float32"):
            softmax_rows([[1.0, 2.0]])
        with pytest.raises(ValueError, match="2-D"):
            softmax_rows(x[0])
        with pytest.raises(ValueError, match="contiguous columns"):
            softmax_rows(np.asfortranarray(rng.standard_normal((3, 8)).astype(np.float32)))
        with pytest.raises(ValueError, match="out"):
            softmax_rows(x, np.empty((3, 7), np.float32))
        with pytest.raises(ValueError, match="out"):
            softmax_rows(x, np.empty((3, 8), np.float64))
        ro = np.empty((3, 8), np.float32)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="out"):
            softmax_rows(x, ro)
        big = rng.standard_normal((4, 8)).astype(np.float32)
        with pytest.raises(ValueError, match="overlaps"):
            softmax_rows(big[:3], big[1:])
        assert softmax_rows(np.empty((0, 5), np.float32)).shape == (0, 5)
        assert softmax_rows(np.empty((2, 0), np.float32)).shape == (2, 0)


def test_core_rejects_bad_views(rng):
    """The Cython layer's own checks, below softmax_rows: clear errors."""
    if runtime.c_ops() is None:
        pytest.skip("no extension")
    from rnncore import _core
    x = rng.standard_normal((3, 8)).astype(np.float32)
    with pytest.raises(ValueError):
        _core.softmax(x, np.empty((3, 7), np.float32), log=True, n_threads=1)
    with pytest.raises(ValueError):
        _core.softmax(x[:, ::2], np.empty((3, 4), np.float32), log=True, n_threads=1)
    with pytest.raises(ValueError, match="rejected"):  # partial overlap: the C check
        big = rng.standard_normal((4, 8)).astype(np.float32)
        _core.softmax(big[:3], big[1:], log=True, n_threads=1)
    with pytest.raises(TypeError):
        _core.softmax(None, x, log=True, n_threads=1)
