"""No leaks: resident memory stays flat (under 4 MB of growth, after a
warm-up that fills the caches) over 20,000 forward calls, 10,000 streaming
steps, 1,000 training steps, language-model steps and 2,000 rejected calls."""
import os

import numpy as np
import pytest

import rnncore

try:
    from rnncore import _build_info
    SANITIZED = getattr(_build_info, "sanitize", False)
except ImportError:  # no extension built
    SANITIZED = False

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc"),
    # ASan quarantines freed memory (256 MB by default): RSS measures nothing there
    pytest.mark.skipif(SANITIZED, reason="AddressSanitizer build: its allocator holds freed memory"),
]
LIMIT = 4 << 20


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def growth(fn, n, warmup=200):
    for _ in range(warmup):
        fn()
    before = rss()
    for _ in range(n):
        fn()
    return rss() - before


def test_forward_calls(rng):
    lstm = rnncore.LSTM(8, 16, num_layers=2, bidirectional=True, seed=0)
    x = rng.standard_normal((5, 2, 8)).astype(np.float32)
    h = np.zeros((4, 2, 16), np.float32)
    assert growth(lambda: lstm(x, (h, h)), 20000) < LIMIT


def test_streaming_steps(rng):
    gru = rnncore.GRU(8, 16, num_layers=2, seed=0)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    state = [None]

    def step():
        _, state[0] = gru.step(x, state[0])
    assert growth(step, 10000) < LIMIT


def test_training_steps(rng):
    layer = rnncore.RNN(8, 16, num_layers=2, dropout=0.1, seed=0)
    opt = rnncore.optim.Adam(layer, lr=1e-3)
    x = rng.standard_normal((6, 3, 8)).astype(np.float32)
    d_out = rng.standard_normal((6, 3, 16)).astype(np.float32)

    def train():
        _, _, tape = layer.forward_train(x)
        layer.backward(tape, d_out)
        opt.step()
        layer.zero_grad()
    assert growth(train, 1000) < LIMIT


def test_language_model_steps_and_generation(rng):
    vocab = rnncore.Vocabulary.build("abcdefghij klmnop\n", "char")
    lm = rnncore.LanguageModel(vocab, "lstm", 8, 16, 2, dropout=0.1, seed=0)
    x, y = rng.integers(0, len(vocab), (2, 10, 4))

    def step():
        lm.train_step(x, y)
        lm.zero_grad()
        lm.generate("ab", 3, seed=0)
    assert growth(step, 1000, warmup=50) < LIMIT


def test_rejected_calls(rng):
    lstm = rnncore.LSTM(8, 16, seed=0)
    bad = rng.standard_normal((5, 2, 7)).astype(np.float32)

    def fail():
        with pytest.raises(ValueError):
            lstm(bad)
        with pytest.raises(ValueError):
            rnncore.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 5]))
    assert growth(fail, 2000) < LIMIT
