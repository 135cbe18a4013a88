"""pytest-benchmark regression suite of rnncore training steps (forward_train +
backward of 2 stacked layers, as in ``rnncore bench --train``); not part of the
default test run:

    pip install ".[bench]"
    pytest benchmarks --benchmark-only
"""
import numpy as np
import pytest

import rnncore
from rnncore.tools.cases import case_name

pytest.importorskip("pytest_benchmark")

CASES = [(cell, 35, 64, h) for cell in ("RNN", "LSTM", "GRU") for h in (256, 512)]


@pytest.mark.parametrize("cell, T, N, H", CASES, ids=[case_name(*c, "train", 2) for c in CASES])
def test_train_step(benchmark, cell, T, N, H):
    layer = getattr(rnncore, cell)(H, H, num_layers=2, seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, N, H)).astype(np.float32)
    d_out = rng.standard_normal((T, N, H)).astype(np.float32)

    def step():
        layer.zero_grad()
        out, _, tape = layer.forward_train(x)
        layer.backward(tape, d_out, input_grad=False)

    benchmark.extra_info["threads"] = rnncore.get_num_threads()
    benchmark(step)
    assert all(np.isfinite(g).all() and g.any() for g in layer.grads.values())
