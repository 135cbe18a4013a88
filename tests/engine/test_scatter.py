"""runtime.scatter_add_rows (rnc_scatter_add_rows): the embedding layers'
backward, the sums of np.add.at bit for bit on every backend and thread
count, and its argument checks."""
import numpy as np
import pytest

import rnncore
from rnncore.engine.runtime import scatter_add_rows
from conftest import _need_c, backend


def expected(dst, index, src):
    out = dst.copy()
    np.add.at(out, np.asarray(index).reshape(-1), src.reshape(-1, dst.shape[1]))
    return out


# E = 1, 7, 17, 1000; M = 1, and repeats of a few rows; 600 x 512 rows is past
# the size from which the C loop splits the rows over threads
@pytest.mark.parametrize("M, V, E", [(1, 1, 1), (5, 3, 7), (40, 9, 17), (33, 2000, 1000),
                                     (600, 50, 512)])
@pytest.mark.parametrize("name", ["c", "reference"])
def test_the_sums_of_np_add_at(M, V, E, name, rng):
    dst = rng.standard_normal((V, E)).astype(np.float32)
    index = rng.integers(0, V, M)
    src = (rng.standard_normal((M, E)) * 10).astype(np.float32)
    want = expected(dst, index, src)
    with backend(name):
        for n in (1, 2, 3):
            rnncore.set_num_threads(n)
            got = dst.copy()
            assert scatter_add_rows(got, index, src) is got
            np.testing.assert_array_equal(got, want)
    rnncore.set_num_threads(None)


def test_shapes_of_index_and_src_are_flattened(rng):
    """(T, N) ids and (T, N, E) gradients, as the language model passes them;
    src of any strides (a transposed view is copied, not misread)."""
    dst = np.zeros((6, 4), np.float32)
    ids = rng.integers(0, 6, (3, 5)).astype(np.int32)
    src = rng.standard_normal((5, 3, 4)).astype(np.float32).transpose(1, 0, 2)
    np.testing.assert_array_equal(scatter_add_rows(dst.copy(), ids, src), expected(dst, ids, src))
    empty = scatter_add_rows(dst.copy(), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    np.testing.assert_array_equal(empty, dst)


@pytest.mark.parametrize("dst, index, src, error, match", [
    (np.zeros((3, 2), np.float32), [0, 3], np.zeros((2, 2), np.float32), ValueError, r"\[0, 3\)"),
    (np.zeros((3, 2), np.float32), [-1], np.zeros((1, 2), np.float32), ValueError, "index"),
    (np.zeros((3, 2), np.float32), [0.5], np.zeros((1, 2), np.float32), TypeError, "integers"),
    (np.zeros((3, 2), np.float32), [0, 1], np.zeros((3, 2), np.float32), ValueError, "src"),
    (np.zeros((3, 2), np.float32), [0], np.zeros((1, 2), np.float64), ValueError, "src"),
    (np.zeros((3, 2), np.float64), [0], np.zeros((1, 2), np.float32), ValueError, "dst"),
    (np.zeros((2, 3), np.float32).T, [0], np.zeros((1, 2), np.float32), ValueError, "dst"),
    (np.zeros((0, 2), np.float32), [], np.zeros((0, 2), np.float32), ValueError, "dst"),
])
def test_bad_arguments_are_refused_before_anything_is_written(dst, index, src, error, match):
    before = dst.copy()
    with pytest.raises(error, match=match):
        scatter_add_rows(dst, index, src)
    np.testing.assert_array_equal(dst, before)


def test_read_only_dst_is_refused():
    dst = np.zeros((3, 2), np.float32)
    dst.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        scatter_add_rows(dst, [0], np.ones((1, 2), np.float32))


def test_the_c_call_checks_the_index_itself():
    """Out-of-range rows never reach memory even past the Python checks."""
    _need_c()
    from rnncore import _core
    dst = np.zeros((3, 2), np.float32)
    for bad in ([3], [-1], [0, 1, 7]):
        with pytest.raises(ValueError):
            _core.scatter_add_rows(np.array(bad, np.int64), np.ones((len(bad), 2), np.float32),
                                   dst, n_threads=1)
    np.testing.assert_array_equal(dst, 0)
