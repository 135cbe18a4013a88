"""A fixed grid of results through the public API only: outputs, final
states and gradients of every cell kind and variant, both layouts, stacked
and bidirectional layers, padded batches, dropout, streaming steps, the
fused loss and a language-model training step.

``tests/golden/record.py`` ran it on the code before the package layout
change and kept each array's hash per backend and CPU path (``hashes.json``);
``tests/engine/test_golden.py`` runs it on today's code and requires every
array to be bit-identical. It must therefore keep computing exactly what it
computed then: change a case and the recordings are void.
"""
import hashlib

import numpy as np

import rnncore

# name -> (layer class, constructor variant)
CELLS = {
    "rnn_tanh": (rnncore.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnncore.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnncore.LSTM, {}),
    "lstm_peephole": (rnncore.LSTM, {"peephole": True}),
    "lstm_cifg": (rnncore.LSTM, {"input_forget": True}),
    "lstm_peephole_cifg": (rnncore.LSTM, {"peephole": True, "input_forget": True}),
    "gru": (rnncore.GRU, {}),
    "gru_reset_before": (rnncore.GRU, {"reset_after": False}),
}

# (name, I, H, L, bidirectional, batch_first, T, N, lengths, dropout)
SHAPES = [
    ("bi_tm", 5, 7, 2, True, False, 6, 3, None, 0.0),
    ("uni_bf_h17", 17, 17, 2, False, True, 4, 5, None, 0.0),
    ("bi_lengths", 6, 33, 2, True, True, 5, 4, [5, 2, 5, 1], 0.0),
    ("uni_dropout", 4, 9, 3, False, False, 3, 2, None, 0.4),
    ("uni_lengths_dropout", 3, 16, 2, False, False, 4, 3, [2, 4, 3], 0.3),
]


def _state(layer, N, rng):
    shape = (layer.num_layers * (2 if layer.bidirectional else 1), N, layer.hidden_size)
    h = rng.standard_normal(shape).astype(np.float32) * 0.5
    if isinstance(layer, rnncore.LSTM):
        return (h, rng.standard_normal(shape).astype(np.float32) * 0.5)
    return h


def layer_cases():
    """(case name, function returning {key: array})."""
    for cell, (cls, variant) in CELLS.items():
        for shape in SHAPES:
            yield f"{cell}/{shape[0]}", lambda cls=cls, variant=variant, shape=shape: _layer_case(
                cls, variant, *shape[1:])


def _layer_case(cls, variant, I, H, L, bidirectional, batch_first, T, N, lengths, dropout):
    rng = np.random.default_rng(7)
    layer = cls(I, H, num_layers=L, bidirectional=bidirectional, batch_first=batch_first,
                dropout=dropout, seed=3, **variant)
    shape = (N, T, I) if batch_first else (T, N, I)
    x = rng.standard_normal(shape).astype(np.float32)
    hx = _state(layer, N, rng)
    out = {}
    y, hn = layer(x, hx, lengths=lengths)
    out["y"] = y
    out.update(_flat("h_n", hn))
    y2, hn2, tape = layer.forward_train(x, hx, lengths=lengths)
    out["train_y"] = y2
    d_out = rng.standard_normal(y2.shape).astype(np.float32)
    d_hn = _state(layer, N, rng)
    dx, dh0 = layer.backward(tape, d_out, d_hn)
    out["dx"] = dx
    out.update(_flat("dh0", dh0))
    for name, g in layer.grads.items():
        out["grad." + name] = g.copy()
    if not bidirectional:
        state = hx
        steps = []
        xt = x.transpose(1, 0, 2) if batch_first else x
        for t in range(min(T, 3)):
            y_t, state = layer.step(xt[t], state)
            steps.append(y_t)
        out["step_y"] = np.stack(steps)
        out.update(_flat("step_state", state))
    return out


def _flat(prefix, state):
    if isinstance(state, tuple):
        return {prefix + ".h": state[0], prefix + ".c": state[1]}
    return {prefix: state}


def other_cases():
    def loss():
        rng = np.random.default_rng(11)
        z = rng.standard_normal((7, 13, 29)).astype(np.float32) * 3
        t = rng.integers(-1, 29, size=(7, 13))
        out = {}
        for reduction in ("mean", "sum", "none"):
            value, dz = rnncore.softmax_cross_entropy(z, t, reduction=reduction)
            out[f"{reduction}.loss"] = np.asarray(value, np.float64)
            out[f"{reduction}.dz"] = dz
        return out

    def language_model():
        text = "the quick brown fox jumps over the lazy dog\n" * 6
        vocab = rnncore.Vocabulary.build(text, "char")
        out = {}
        for cell in ("lstm", "gru", "rnn_tanh"):
            lm = rnncore.LanguageModel(vocab, cell, embed_size=12, hidden_size=24, num_layers=2,
                                       dropout=0.2, seed=5)
            ids = vocab.encode(text)
            data = rnncore.text.batchify(ids, 4)
            state = None
            for k, (x, y) in enumerate(rnncore.text.bptt_batches(data, 9)):
                loss, state = lm.train_step(x, y, state)
                out[f"{cell}.loss{k}"] = np.asarray(loss, np.float64)
                if k == 2:
                    break
            for name, g in lm.grads.items():
                out[f"{cell}.grad.{name}"] = g.copy()
            out[f"{cell}.eval"] = np.asarray(lm.evaluate(ids[:120])["loss"], np.float64)
        return out

    yield "loss", loss
    yield "lm", language_model


def run_grid():
    """{case/key: array} over the whole grid."""
    result = {}
    for case, fn in list(layer_cases()) + list(other_cases()):
        for key, value in fn().items():
            result[f"{case}/{key}"] = np.asarray(value)
    return result


def digest(a):
    """sha256 of an array's dtype, shape and bytes (16 hex digits)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]
