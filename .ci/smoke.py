"""One call of every public kernel, small: the workload of the valgrind
memcheck smoke run (.ci/valgrind)."""
import os
import tempfile

import numpy as np

import rnncore
from rnncore.engine import runtime

rng = np.random.default_rng(0)
for cls, kw in ((rnncore.LSTM, {"peephole": True}), (rnncore.GRU, {"reset_after": False}),
                (rnncore.GRU, {}), (rnncore.RNN, {"nonlinearity": "relu"})):
    layer = cls(5, 7, num_layers=2, bidirectional=True, **kw)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    layer(x, lengths=np.array([6, 2, 4]))
    out, _, tape = layer.forward_train(x)
    layer.backward(tape, np.ones_like(out))
    uni = cls(5, 7, num_layers=2, **kw)
    uni.step(x[0])
rnncore.softmax_cross_entropy(rng.standard_normal((4, 33)).astype(np.float32), np.array([0, 5, -1, 32]))
runtime.matmul(rng.standard_normal((13, 9)).astype(np.float32), rng.standard_normal((9, 40)).astype(np.float32))
runtime.Linear(rng.standard_normal((37, 9)).astype(np.float32), np.ones(37, np.float32))(
    rng.standard_normal((50, 9)).astype(np.float32))
vocab = rnncore.Vocabulary.build("to be or not to be\n", "char")
lm = rnncore.LanguageModel(vocab, "lstm", 8, 16, 2, seed=0)
lm.train_step(*rng.integers(0, len(vocab), (2, 5, 2)))
lm.generate("to", 5, seed=0)
with tempfile.TemporaryDirectory() as tmp:
    path = rnncore.save(lm, os.path.join(tmp, "lm.safetensors"))
    rnncore.load(path)
print("smoke: ok")
