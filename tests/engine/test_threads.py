"""Threads: results identical for every thread count, concurrent calls from
Python threads on one model are correct (the GIL is released), and the thread
setting is validated."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import rnncore
from rnncore.engine import runtime
from conftest import ATOL, RTOL, call, make_layer, oracle


MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


@pytest.fixture
def restore_threads():
    saved = runtime._num_threads
    yield
    runtime._num_threads = saved


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_every_thread_count_gives_identical_results(mode, batch_first, rng, restore_threads):
    # large enough that the kernels really split the work (H = 200 -> 13 unit tiles)
    layer = make_layer(mode, 33, 200, num_layers=2, bidirectional=True,
                       batch_first=batch_first, seed=7)
    x = rng.standard_normal((7, 9, 33) if batch_first else (9, 7, 33)).astype(np.float32)
    h0 = rng.standard_normal((4, 7, 200)).astype(np.float32)
    results = []
    for n in (1, 2, 3, 4, 8):
        rnncore.set_num_threads(n)
        results.append(call(layer, x, h0, h0))
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            if b is not None:
                np.testing.assert_array_equal(a, b)
    y_ref = oracle(layer, x, h0, h0)[0]
    np.testing.assert_allclose(results[0][0], y_ref, rtol=RTOL, atol=ATOL)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_concurrent_calls_on_one_model(rng):
    lstm = rnncore.LSTM(32, 96, num_layers=2, seed=0)
    inputs = [rng.standard_normal((20, 4, 32)).astype(np.float32) for _ in range(8)]
    expected = [lstm(x)[0] for x in inputs]
    results = [None] * len(inputs)
    errors = []

    def worker(i):
        try:
            for _ in range(5):
                results[i] = lstm(inputs[i])[0]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def run_in_threads(worker, n):
    errors = []

    def guarded(i):
        try:
            worker(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_concurrent_streaming_steps_on_one_model(rng):
    """8 threads stepping their own streams through one layer (each thread
    gets its own compiled plan and workspace)."""
    gru = rnncore.GRU(16, 200, num_layers=2, seed=0)
    streams = [rng.standard_normal((30, 3, 16)).astype(np.float32) for _ in range(8)]

    def run(x):
        state, ys = None, []
        for t in range(x.shape[0]):
            y, state = gru.step(x[t], state)
            ys.append(y)
        return np.stack(ys)

    expected = [run(x) for x in streams]
    results = [None] * 8

    def worker(i):
        for _ in range(3):
            results[i] = run(streams[i])

    run_in_threads(worker, 8)
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_concurrent_training_on_separate_models_and_inference_on_one(rng):
    """Training passes of different layers and inference calls of a shared
    one, from 8 threads at once, equal the serial results."""
    shared = rnncore.LSTM(8, 64, num_layers=2, seed=1)
    x = rng.standard_normal((12, 4, 8)).astype(np.float32)
    d_out = rng.standard_normal((12, 4, 64)).astype(np.float32)

    def train(seed):
        layer = rnncore.GRU(8, 64, num_layers=2, bidirectional=True, seed=seed)
        out, _, tape = layer.forward_train(x)
        layer.backward(tape, np.concatenate([d_out, d_out], axis=2))
        return {k: v.copy() for k, v in layer.grads.items()}

    expected_grads = [train(i) for i in range(8)]
    expected_y = shared(x)[0]
    grads, ys = [None] * 8, [None] * 8

    def worker(i):
        grads[i] = train(i)
        ys[i] = shared(x)[0]

    run_in_threads(worker, 8)
    for i in range(8):
        np.testing.assert_array_equal(ys[i], expected_y)
        for k in expected_grads[i]:
            np.testing.assert_array_equal(grads[i][k], expected_grads[i][k])


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_absurd_thread_count_is_capped(restore_threads, rng):
    rnncore.set_num_threads(10 ** 6)
    lstm = rnncore.LSTM(16, 300, seed=0)
    x = rng.standard_normal((3, 8, 16)).astype(np.float32)
    y = lstm(x)[0]
    rnncore.set_num_threads(1)
    np.testing.assert_array_equal(y, lstm(x)[0])


def test_set_num_threads_validation(restore_threads):
    rnncore.set_num_threads(3)
    assert rnncore.get_num_threads() == 3
    with pytest.raises(ValueError, match="n must be >= 1"):
        rnncore.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        rnncore.set_num_threads(2.5)
    assert rnncore.get_num_threads() == 3


needs_openmp = pytest.mark.skipif(not rnncore.config()["openmp"], reason="serial build: always 1 thread")


@needs_openmp
def test_default_threads_follow_openmp_and_threadpoolctl(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rnncore.set_num_threads(None)
    info = threadpoolctl.threadpool_info()
    assert any(p["user_api"] == "openmp" for p in info)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert rnncore.get_num_threads() == 1
        lstm = rnncore.LSTM(8, 300, seed=0)
        x = np.ones((3, 20, 8), np.float32)
        y_limited = lstm(x)[0]
    rnncore.set_num_threads(2)
    np.testing.assert_array_equal(lstm(x)[0], y_limited)


@needs_openmp
def test_omp_num_threads_is_respected():
    out = subprocess.run([sys.executable, "-c", "import rnncore; print(rnncore.get_num_threads())"],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OMP_NUM_THREADS="3"), cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_set_num_threads_during_concurrent_calls(rng, restore_threads):
    """8 threads running forward passes, the fused loss, the GEMM and a
    language model while another changes the thread count all the time:
    every result equals the serial one (results do not depend on the thread
    count)."""
    from rnncore.engine import runtime
    lstm = rnncore.LSTM(16, 64, num_layers=2, seed=0)
    vocab = rnncore.Vocabulary.build("the quick brown fox\n", "char")
    lm = rnncore.LanguageModel(vocab, "gru", 8, 32, 2, seed=0)
    x = rng.standard_normal((10, 4, 16)).astype(np.float32)
    z = rng.standard_normal((50, 300)).astype(np.float32)
    t = rng.integers(0, 300, 50)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in ((70, 90), (90, 130)))
    ids = vocab.encode("the quick brown fox jumps\n" * 3)
    expected = (lstm(x)[0], rnncore.softmax_cross_entropy(z, t)[1], runtime.matmul(a, b),
                lm.evaluate(ids)["loss"])
    stop = threading.Event()

    def churn():
        n = 0
        while not stop.is_set():
            rnncore.set_num_threads(1 + n % 4)
            n += 1

    changer = threading.Thread(target=churn)
    changer.start()
    results = [None] * 8

    def worker(i):
        for _ in range(10):
            results[i] = (lstm(x)[0], rnncore.softmax_cross_entropy(z, t)[1], runtime.matmul(a, b),
                          lm.evaluate(ids)["loss"])

    try:
        run_in_threads(worker, 8)
    finally:
        stop.set()
        changer.join()
    for got in results:
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
