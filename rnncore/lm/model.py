"""Recurrent language models: embedding -> stacked RNN/LSTM/GRU -> linear ->
softmax, trained with cross-entropy and truncated BPTT (Zaremba, Sutskever &
Vinyals 2014).

Dropout, as in that paper, is applied to the non-recurrent connections only:
the embedding output, between the stacked layers (the recurrent layer's own
``dropout``) and the top layer's output before the decoder. With
``tied=True`` the decoder's weight is the embedding matrix (Press & Wolf
2017; needs embed_size == hidden_size).

Arrays are time-major: token ids ``(T, N)``, logits ``(T, N, V)``.

>>> vocab = rnncore.Vocabulary.build("hello world\\n", "char")
>>> lm = rnncore.LanguageModel(vocab, "lstm", embed_size=16, hidden_size=32, seed=0)
>>> print(lm.generate("he", max_tokens=5, seed=1))   # doctest: +SKIP
"""
import math

import numpy as np

from ..engine import buffers, cells
from ..engine.checks import check_bool, check_int, make_rng, shape_str
from ..engine.layers import make_layer
from ..engine.losses import rows_xent
from ..engine.params import ParameterModel
from ..engine.runtime import Linear, matmul, scatter_add_rows
from ..engine.stack import dropout_mask
from .sampling import pick
from .text import Vocabulary, batchify, bptt_batches

__all__ = ["LanguageModel"]


def _dropout_mask(shape, p, rng):
    """The embedding and output dropout (uniform draws in float32)."""
    return dropout_mask(shape, p, rng, draw_dtype=np.float32)


class LanguageModel(ParameterModel):
    """A recurrent language model over `vocab` (a :class:`rnncore.Vocabulary`).

    cell: 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu'. init_scale: draw every
    parameter from U(-s, s) (Zaremba's init, 0.1 for the small PTB model);
    None: the recurrent layer's PyTorch-style init, embedding and decoder
    U(-0.1, 0.1), decoder bias 0 (PyTorch's word_language_model).

    Parameters (``named_parameters()``): ``encoder.weight`` (V, E),
    ``rnn.<name>`` (the recurrent layer's, PyTorch names), ``decoder.weight``
    (V, H; absent when tied) and ``decoder.bias`` (V,). ``grads`` holds one
    gradient array per parameter; the model plugs into rnncore.optim.
    """

    def __init__(self, vocab, cell="lstm", embed_size=200, hidden_size=200, num_layers=2,
                 dropout=0.0, tied=False, *, init_scale=None, seed=None):
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"vocab must be an rnncore.Vocabulary, got {type(vocab).__name__}")
        kind = cells.by_name(cell)
        self.vocab, self.cell = vocab, cell
        self.embed_size = check_int("embed_size", embed_size, minimum=1)
        self.tied = check_bool("tied", tied)
        if init_scale is not None:
            init_scale = float(init_scale)
            if not init_scale > 0 or not math.isfinite(init_scale):
                raise ValueError(f"init_scale must be a positive number, got {init_scale}")
        rng = make_rng(seed)
        self.rnn = make_layer(kind, self.embed_size, hidden_size, num_layers=num_layers,
                              dropout=dropout, seed=rng)
        H = self.rnn.hidden_size
        if self.tied and self.embed_size != H:
            raise ValueError(f"tied embeddings need embed_size == hidden_size, got "
                             f"{self.embed_size} and {H}")
        V, E = len(vocab), self.embed_size
        self._own = {"encoder.weight": (V, E), "decoder.bias": (V,)}
        if not self.tied:
            self._own["decoder.weight"] = (V, H)
        self.params = {}
        s = 0.1 if init_scale is None else init_scale
        for name, shape in self._own.items():
            r = 0.0 if name == "decoder.bias" and init_scale is None else s
            self.params[name] = rng.uniform(-r, r, size=shape).astype(np.float32)
        if init_scale is not None:
            self.rnn.load_state_dict({k: rng.uniform(-s, s, size=v.shape).astype(np.float32)
                                      for k, v in self.rnn.named_parameters()})
        self.init_scale = init_scale
        self.generator = np.random.default_rng(rng.integers(2**63))  # dropout masks
        self._init_grads()  # one gradient array per parameter
        self._logits_pool = []  # train_step's logits buffer, kept for the next step

    # ------------------------------------------------------------ configuration

    @property
    def hidden_size(self):
        return self.rnn.hidden_size

    @property
    def num_layers(self):
        return self.rnn.num_layers

    @property
    def dropout(self):
        return self.rnn.dropout

    def config(self):
        """The constructor arguments (without vocab and seed), as saved in
        model files."""
        return {"cell": self.cell, "embed_size": self.embed_size,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "dropout": self.dropout, "tied": self.tied, "init_scale": self.init_scale}

    def __repr__(self):
        c = self.config()
        return (f"LanguageModel({self.vocab!r}, {c['cell']!r}, embed_size={c['embed_size']}, "
                f"hidden_size={c['hidden_size']}, num_layers={c['num_layers']}, "
                f"dropout={c['dropout']}, tied={c['tied']})")

    # ------------------------------------------------------------ parameters

    def _decoder_weight(self):
        return self.params["encoder.weight" if self.tied else "decoder.weight"]

    def _layout(self):
        return ["encoder.weight", ("rnn.", self.rnn)] + \
            ([] if self.tied else ["decoder.weight"]) + ["decoder.bias"]

    # ------------------------------------------------------------ running

    def _ids(self, name, ids):
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integer token ids, got dtype {arr.dtype}")
        if arr.ndim != 2 or 0 in arr.shape:
            raise ValueError(f"{name} must be (T, N) token ids with T, N >= 1, got shape "
                             f"{shape_str(arr.shape)}")
        if arr.min() < 0 or arr.max() >= len(self.vocab):
            raise ValueError(f"{name} must be in [0, {len(self.vocab)}), got values "
                             f"{arr.min()}..{arr.max()}")
        return np.ascontiguousarray(arr, dtype=np.int64)

    def _embed(self, ids):
        """The embedding rows of token ids (any shape) -> ids.shape + (E,)."""
        return self.params["encoder.weight"][ids]

    def _step_decoder(self):
        """The decoder as a callable y (M, H) -> logits (M, V) for a run of
        generation steps."""
        # the decoder's weights packed once for this call's steps: a step's
        # product of a few rows with a 10k x 512 decoder took 2.0 ms on the
        # GEMM (which packs its B every call), 0.37 ms packed (AMD Zen 5)
        return Linear(self._decoder_weight(), self.params["decoder.bias"])

    def _logits(self, y, out=None):
        """y (M, H) -> logits (M, V) = y W_d^T + b_d (into `out` if given)."""
        z = matmul(y, self._decoder_weight().T, out=out)
        z += self.params["decoder.bias"]
        return z

    def forward(self, ids, state=None):
        """``logits, state = lm.forward(ids, state)``: ids (T, N), logits
        (T, N, V) float32, state carried (None: zeros). No dropout."""
        ids = self._ids("ids", ids)
        T, N = ids.shape
        x = self._embed(ids)
        y, state = self.rnn(x, state)
        return self._logits(y.reshape(T * N, -1)).reshape(T, N, -1), state

    def train_step(self, inputs, targets, state=None, *, rng=None):
        """Forward and backward over one BPTT window; gradients are added to
        ``grads``. Returns ``(loss, state)``: loss = sum over the T steps of
        the mean over the N streams of the negative log-likelihood in nats
        (Zaremba's training loss; divide by T for the per-token mean), and
        the final state to carry into the next window."""
        inputs, targets = self._ids("inputs", inputs), self._ids("targets", targets)
        if inputs.shape != targets.shape:
            raise ValueError(f"targets must have the shape of inputs {inputs.shape}, got "
                             f"{targets.shape}")
        rng = self.generator if rng is None else rng
        T, N = inputs.shape
        H, p = self.hidden_size, self.dropout
        enc = self.params["encoder.weight"]
        x = enc[inputs]
        mask_in = _dropout_mask(x.shape, p, rng)
        if mask_in is not None:
            x *= mask_in
        y, state, tape = self.rnn.forward_train(x, state, rng=rng)
        mask_out = _dropout_mask(y.shape, p, rng)
        if mask_out is not None:
            y = y * mask_out
        y2 = y.reshape(T * N, H)
        # the logits, then dz over them, in a buffer kept for the next step: a
        # fresh one (90 MB at V = 10k, T * N = 2240) took 105 ms of page
        # faults in a 1.5 s step (benchmarks/bench_lm.py, Zen 4, 1 thread)
        zbuf = buffers.take(self._logits_pool, T * N * len(self.vocab))
        z = self._logits(y2, out=zbuf.reshape(T * N, -1))
        # dz = d(sum_t mean_n nll) / dz, written over the logits
        losses, dz = rows_xent(z, targets.reshape(-1), 1.0 / N, True, in_place=True)
        loss = float(losses.sum(dtype=np.float64)) / N
        wd = self._decoder_weight()
        gd = self.grads["encoder.weight" if self.tied else "decoder.weight"]
        matmul(dz.T, y2, out=gd, accumulate=True)
        self.grads["decoder.bias"] += dz.sum(axis=0)
        dy = matmul(dz, wd).reshape(T, N, H)
        del z, dz
        buffers.give_back([zbuf], self._logits_pool, 1)
        if mask_out is not None:
            dy *= mask_out
        dx, _ = self.rnn.backward(tape, dy)
        if mask_in is not None:
            dx *= mask_in
        scatter_add_rows(self.grads["encoder.weight"], inputs, dx)
        return loss, state

    def evaluate(self, ids, *, batch_size=1, chunk=256):
        """Mean negative log-likelihood of a token stream: `ids` cut into
        batch_size continuous streams (1: the whole stream with state
        carried throughout), each token predicted from all before it in its
        stream. Returns ``{"loss", "perplexity", "bits_per_token",
        "tokens"}`` (nats per token, exp(loss), loss / ln 2, tokens
        predicted)."""
        data = batchify(ids, batch_size)
        state, total, count = None, 0.0, 0
        for inputs, targets in bptt_batches(data, chunk):
            logits, state = self.forward(inputs, state)
            z = logits.reshape(-1, logits.shape[-1])
            losses, _ = rows_xent(z, targets.reshape(-1), 1.0, False)
            total += float(losses.sum(dtype=np.float64))
            count += losses.size
        loss = total / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
                "bits_per_token": loss / math.log(2), "tokens": count}

    # ------------------------------------------------------------ generation

    def generate(self, prompt="", max_tokens=200, *, temperature=1.0, top_k=None, top_p=None,
                 seed=None, num_samples=1, on_token=None):
        """Text continuing `prompt`: greedy with ``temperature=0``, else sampled
        from softmax(logits / temperature), restricted to the top_k most
        likely tokens and/or to the smallest set whose probability reaches
        top_p (nucleus sampling). num_samples > 1 draws that many samples in
        one batch and returns a list. on_token(ids) is called with the (N,)
        ids of every step as it is produced (for streamed output)."""
        max_tokens = check_int("max_tokens", max_tokens, minimum=0)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        temperature = float(temperature)
        if not temperature >= 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None:
            top_k = check_int("top_k", top_k, minimum=1)
        if top_p is not None:
            top_p = float(top_p)
            if not 0.0 < top_p <= 1.0:
                raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        rng = np.random.default_rng(seed)
        ids = self.vocab.encode(prompt)
        if self.vocab.level == "word" and len(ids) and prompt and not prompt.endswith("\n"):
            ids = ids[:-1]  # a prompt that does not end its line does not end the sentence
        if len(ids) == 0:  # start of a text: after a line end (<eos>, or a newline for chars)
            start = self.vocab.index.get("<eos>", self.vocab.index.get("\n", 0))
            context = np.array([start], np.int64)
        else:
            context = ids
        state = None
        if len(context) > 1:
            _, state = self.rnn(self._embed(context[:-1])[:, None, :], None)
        if state is not None and num_samples > 1:
            state = (tuple(np.repeat(s, num_samples, axis=1) for s in state)
                     if isinstance(state, tuple) else np.repeat(state, num_samples, axis=1))
        last = np.full(num_samples, context[-1], np.int64)
        out = np.empty((max_tokens, num_samples), np.int64)
        decoder = self._step_decoder()
        for t in range(max_tokens):
            y, state = self.rnn.step(self._embed(last), state)
            z = decoder(y)
            last = pick(z, temperature, top_k, top_p, rng)
            out[t] = last
            if on_token is not None:
                on_token(last)
        texts = [self.vocab.decode(np.concatenate([ids, out[:, n]])) for n in range(num_samples)]
        return texts if num_samples > 1 else texts[0]
