"""pytest-benchmark regression suite of the rnncore forward pass (not part of
the default test run):

    pip install ".[bench]"
    pytest benchmarks --benchmark-only [--benchmark-autosave | --benchmark-compare]

Thread count: all available cores unless OMP_NUM_THREADS says otherwise.
"""
import numpy as np
import pytest

import rnncore
from rnncore.tools.bench import state_dict
from rnncore.tools.cases import REGRESSION, case_name

pytest.importorskip("pytest_benchmark")

CASES = REGRESSION


@pytest.mark.parametrize("cell, T, N, H", CASES, ids=[case_name(*c) for c in CASES])
def test_forward(benchmark, cell, T, N, H):
    layer = getattr(rnncore, cell)(H, H)
    layer.load_state_dict(state_dict(cell, H))
    x = np.random.default_rng(1).standard_normal((T, N, H)).astype(np.float32)
    benchmark.extra_info["threads"] = rnncore.get_num_threads()
    benchmark.extra_info["cpu_path"] = rnncore.config()["cpu_path"]
    y = benchmark(layer, x)[0]
    assert y.shape == (T, N, H) and np.isfinite(y).all()
