"""The buffers the kernels stream (packed weights, workspaces, layer
outputs, tapes) start on 64-byte boundaries (engine/buffers.py says why)."""
import numpy as np
import pytest

import rnncore
from rnncore.engine import buffers, runtime

needs_c = pytest.mark.skipif(runtime.c_ops() is None, reason="needs the C extension")


def aligned(a):
    return a.ctypes.data % 64 == 0


@pytest.mark.parametrize("shape", [1, 7, (3,), (4, 5), (0, 9), (1000, 17), 100_003])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int8, np.float64])
def test_aligned_empty(shape, dtype):
    a = buffers.aligned_empty(shape, dtype)
    assert a.shape == tuple(np.atleast_1d(shape)) and a.dtype == dtype
    assert (a.size == 0 or aligned(a)) and a.flags.c_contiguous and a.flags.writeable
    a[...] = 1  # every byte its own: no overlap with a second array
    b = buffers.aligned_empty(shape, dtype)
    b[...] = 2
    assert (a == 1).all()


@needs_c
@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_kernel_buffers_are_aligned(cell):
    rng = np.random.default_rng(0)
    # big enough for NumPy to map each array (so 16 bytes past a page start)
    layer = getattr(rnncore, cell)(33, 300, num_layers=2, bidirectional=True)
    assert layer._packed and all(aligned(p) for p in layer._packed.values())
    x = rng.standard_normal((5, 3, 33)).astype(np.float32)
    assert aligned(layer(x)[0])
    assert aligned(buffers.workspace(1000, "test"))
    q = rnncore.quantize(layer, dtype="int8")
    assert all(aligned(w.packed) for w in q._qparams.values() if hasattr(w, "packed"))
    uni = getattr(rnncore, cell)(33, 300, num_layers=2)
    uni.step(x[0])
    _, plan = uni._plans.plan
    assert aligned(plan.ws_array)
