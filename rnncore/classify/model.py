"""Recurrent sequence classifiers: embedding -> stacked (bi)RNN/LSTM/GRU ->
pooling over time -> dense -> softmax (one label per text) or a sigmoid per
class (multi-label), trained with cross-entropy.

A batch of texts of different lengths is padded and run with the recurrent
layer's ``lengths=``, so every text is read exactly as it would be alone.
Pooling turns the top layer's outputs y_t (t < T_n, the text's own steps;
D*H wide, D = 2 when bidirectional) into one feature vector f:

* ``last``: the final state of each direction, h_n: the forward direction's
  h at step T_n - 1 and the backward direction's at step 0 (which has read
  the whole text);
* ``mean``: f = (1 / T_n) sum_{t < T_n} y_t;
* ``max``: f_j = max_{t < T_n} y_{t,j}.

Logits z = f W^T + b (C classes). Loss, the mean over the N texts of: the
softmax cross-entropy -log softmax(z)_y; multi-label: the sum over the
classes of the binary cross-entropy softplus(z_c) - y_c z_c (y_c in {0, 1}).
Dropout (training only, inverted): on the embeddings, between stacked layers
(the recurrent layer's own) and on f.

Arrays are time-major: token ids ``(T, N)`` with ``lengths (N,)``.

Pretrained word vectors (``init_embedding``, rnncore.classify.vectors) set
the embedding's rows of the words they cover; the other rows keep their
random initial values, scaled to the pretrained vectors' standard deviation
(Kim 2014: random rows of the same variance as the pretrained ones).
``freeze_embedding=True`` keeps the embedding fixed during training: it gets
no gradient and is not among ``trainable()``'s parameters (so no optimizer
step, weight decay included, touches it).

>>> vocab = build_vocab(["a good film", "a bad film"])
>>> clf = SequenceClassifier(vocab, ["neg", "pos"], "gru", 16, 16, seed=0)
>>> clf.predict(["good"])   # doctest: +SKIP
['pos']
"""
import math

import numpy as np

from ..engine import cells
from ..engine.checks import check_bool, check_int, make_rng, shape_str
from ..engine.layers import make_layer
from ..engine.losses import rows_xent
from ..engine.params import ParameterModel
from ..engine.runtime import matmul, scatter_add_rows
from ..engine.stack import dropout_mask
from ..lm.text import Vocabulary
from . import metrics
from .data import encode, pad_batch
from .vectors import match

__all__ = ["SequenceClassifier", "POOLINGS"]

POOLINGS = ("last", "mean", "max")


class SequenceClassifier(ParameterModel):
    """A recurrent classifier of texts over `vocab` (a word-level
    :class:`rnncore.Vocabulary`, see rnncore.classify.build_vocab) into
    `classes` (a list of distinct label strings).

    cell: 'lstm', 'gru', 'rnn_tanh', ...; pooling: 'last', 'mean' or 'max';
    multi_label: a sigmoid per class (each text has any number of labels)
    instead of one softmax; freeze_embedding: train everything but the
    embedding. Initialisation: embedding U(-0.1, 0.1), the
    recurrent layer PyTorch's, dense layer U(-1/sqrt(F), 1/sqrt(F)).

    Parameters (``named_parameters()``): ``embedding.weight`` (V, E),
    ``rnn.<name>`` (the recurrent layer's, PyTorch names), ``fc.weight``
    (C, D*H) and ``fc.bias`` (C,); ``grads`` holds one gradient array per
    parameter (the model plugs into rnncore.optim).
    """

    def __init__(self, vocab, classes, cell="lstm", embed_size=128, hidden_size=128,
                 num_layers=1, bidirectional=False, pooling="last", dropout=0.0,
                 multi_label=False, freeze_embedding=False, *, seed=None):
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"vocab must be an rnncore.Vocabulary, got {type(vocab).__name__}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.multi_label = check_bool("multi_label", multi_label)
        self.freeze_embedding = check_bool("freeze_embedding", freeze_embedding)
        self.frozen = {"embedding.weight"} if self.freeze_embedding else set()
        self.classes = self._check_classes(classes)
        kind = cells.by_name(cell)
        self.vocab, self.cell, self.pooling = vocab, cell, pooling
        self.embed_size = check_int("embed_size", embed_size, minimum=1)
        rng = make_rng(seed)
        self.rnn = make_layer(kind, self.embed_size, hidden_size, num_layers=num_layers,
                              dropout=dropout, bidirectional=check_bool("bidirectional",
                                                                        bidirectional), seed=rng)
        V, E, C, F = len(vocab), self.embed_size, len(self.classes), self.features
        self._own = {"embedding.weight": (V, E), "fc.weight": (C, F), "fc.bias": (C,)}
        s = 1.0 / math.sqrt(F)
        self.params = {
            "embedding.weight": rng.uniform(-0.1, 0.1, (V, E)).astype(np.float32),
            "fc.weight": rng.uniform(-s, s, (C, F)).astype(np.float32),
            "fc.bias": rng.uniform(-s, s, (C,)).astype(np.float32)}
        self.generator = np.random.default_rng(rng.integers(2**63))  # dropout masks
        self._init_grads()  # one gradient array per parameter

    def _check_classes(self, classes):
        if isinstance(classes, str):
            raise TypeError("classes must be a list of label strings, got a str")
        classes = list(classes)
        if not all(isinstance(c, str) and c and c == c.strip() for c in classes):
            raise ValueError("classes must be non-empty strings without surrounding spaces")
        if any(ch in c for c in classes for ch in "\t\n\r"):
            raise ValueError("classes must not contain tabs or line ends")
        if self.multi_label and any("," in c for c in classes):
            raise ValueError("multi-label classes must not contain commas (the TSV separator)")
        if len(set(classes)) != len(classes):
            raise ValueError("classes must be distinct")
        if len(classes) < (1 if self.multi_label else 2):
            raise ValueError(f"a classifier needs at least {1 if self.multi_label else 2} "
                             f"classes, got {len(classes)}")
        return classes

    # ------------------------------------------------------------ configuration

    @property
    def hidden_size(self):
        return self.rnn.hidden_size

    @property
    def num_layers(self):
        return self.rnn.num_layers

    @property
    def bidirectional(self):
        return self.rnn.bidirectional

    @property
    def dropout(self):
        return self.rnn.dropout

    @property
    def features(self):
        """Width F of the pooled features: D * hidden_size."""
        return self.rnn.num_directions * self.rnn.hidden_size

    def config(self):
        """The constructor arguments (without vocab, classes and seed), as
        saved in model files."""
        return {"cell": self.cell, "embed_size": self.embed_size,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "bidirectional": self.bidirectional, "pooling": self.pooling,
                "dropout": self.dropout, "multi_label": self.multi_label,
                "freeze_embedding": self.freeze_embedding}

    def __repr__(self):
        c = self.config()
        return (f"SequenceClassifier({self.vocab!r}, {len(self.classes)} classes, {c['cell']!r}, "
                f"embed_size={c['embed_size']}, hidden_size={c['hidden_size']}, "
                f"num_layers={c['num_layers']}, bidirectional={c['bidirectional']}, "
                f"pooling={c['pooling']!r}, dropout={c['dropout']}"
                f"{', multi_label=True' if self.multi_label else ''}"
                f"{', freeze_embedding=True' if self.freeze_embedding else ''})")

    # ------------------------------------------------------------ parameters

    def _layout(self):
        return ["embedding.weight", ("rnn.", self.rnn), "fc.weight", "fc.bias"]

    def init_embedding(self, words, vectors):
        """Set the embedding rows of the vocabulary words that (words,
        vectors) cover (see rnncore.classify.vectors.match: the word, its
        lower-cased form, or the mean of its parts): their first D columns
        (D = the vectors' dimension, at most embed_size) are the vectors.
        Every other value (the rows of <unk> and of the words not covered,
        the columns past D) is its initial U(-0.1, 0.1) value scaled to
        U(-a, a), a = sqrt(3) * the standard deviation of the vectors used.
        vectors: float (len(words), D), finite. Returns the number of
        vocabulary words covered."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.dtype.kind != "f":
            raise ValueError(f"vectors must be a 2-D float array, got {vectors.dtype} "
                             f"{shape_str(vectors.shape)}")
        if vectors.shape[1] > self.embed_size:
            raise ValueError(f"the vectors have dimension {vectors.shape[1]}, more than the "
                             f"model's embedding ({self.embed_size})")
        if len(words) != vectors.shape[0]:
            raise ValueError(f"{len(words)} words but {vectors.shape[0]} vectors")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors must be finite (a value is NaN or infinite)")
        rows, found = match(self.vocab.tokens, words, vectors)
        found[self.vocab.unk] = False  # <unk> stands for every unknown word: kept random
        emb = self.params["embedding.weight"]
        if found.any():
            emb *= math.sqrt(3.0) * float(rows[found].std()) / 0.1
            emb[found, :rows.shape[1]] = rows[found]
        return int(found.sum())

    # ------------------------------------------------------------ inputs

    def encode(self, texts):
        """Token-id arrays of `texts` (see rnncore.classify.data.encode)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of str, got a single str")
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
            out.append(encode(self.vocab, t))
        return out

    def targets(self, labels):
        """Labels (str; multi-label: a collection of str each) -> class
        indices (N,) int64, or indicators (N, C) float32 when multi-label.
        ValueError naming the first unknown label."""
        index = {c: i for i, c in enumerate(self.classes)}

        def idx(label, n):
            if label not in index:
                raise ValueError(f"labels[{n}]: unknown label {label!r} (classes: "
                                 f"{', '.join(self.classes)})")
            return index[label]

        if not self.multi_label:
            return np.array([idx(lab, n) for n, lab in enumerate(labels)], np.int64)
        y = np.zeros((len(labels), len(self.classes)), np.float32)
        for n, labs in enumerate(labels):
            if isinstance(labs, str):
                raise TypeError(f"labels[{n}]: a multi-label example's labels are a list of "
                                f"str, got a str")
            for lab in labs:
                y[n, idx(lab, n)] = 1.0
        return y

    def _check_batch(self, ids, lengths):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integer token ids, got dtype {ids.dtype}")
        if ids.ndim != 2 or 0 in ids.shape:
            raise ValueError(f"ids must be (T, N) token ids with T, N >= 1, got shape "
                             f"{shape_str(ids.shape)}")
        T, N = ids.shape
        lengths = np.full(N, T, np.int64) if lengths is None else np.asarray(lengths)
        if lengths.dtype.kind not in "iu" or lengths.shape != (N,):
            raise ValueError(f"lengths must be integers of shape ({N},), got {lengths.dtype} "
                             f"{shape_str(lengths.shape)}")
        if lengths.min() < 1 or lengths.max() > T:
            raise ValueError(f"lengths must be in [1, T] = [1, {T}], got values from "
                             f"{lengths.min()} to {lengths.max()}")
        real = np.arange(T)[:, None] < lengths[None, :]  # (T, N): not padding
        if ids[real].min() < 0 or ids[real].max() >= len(self.vocab):
            raise ValueError(f"ids must be in [0, {len(self.vocab)}), got values "
                             f"{ids[real].min()}..{ids[real].max()}")
        ids = np.where(real, ids, 0)  # padding reads row 0; nothing of it is used
        return np.ascontiguousarray(ids, dtype=np.int64), lengths.astype(np.int64), real

    # ------------------------------------------------------------ running

    def _pool(self, y, h_n, lengths, real):
        """Features f (N, F) of the top layer's outputs y (T, N, F) and final
        states h_n (L*D, N, H), and what _unpool needs."""
        if self.pooling == "last":
            D = self.rnn.num_directions
            return np.concatenate(list(h_n[-D:]), axis=1), None
        if self.pooling == "mean":  # y is 0 past each text's end
            return y.sum(axis=0) / lengths[:, None].astype(np.float32), None
        masked = np.where(real[:, :, None], y, -np.inf)
        arg = masked.argmax(axis=0)  # (N, F): the step holding each maximum
        return np.take_along_axis(y, arg[None], axis=0)[0], arg

    def _unpool(self, df, y_shape, h_shape, lengths, real, arg):
        """(dy, dh_n) of the loss from df (N, F), the adjoint of _pool."""
        dy = np.zeros(y_shape, np.float32)
        dh = None
        if self.pooling == "last":
            D, H = self.rnn.num_directions, self.rnn.hidden_size
            dh = np.zeros(h_shape, np.float32)
            for d in range(D):
                dh[h_shape[0] - D + d] = df[:, d * H:(d + 1) * H]
        elif self.pooling == "mean":  # d f / d y_t = 1 / T_n on the text's own steps
            dy[...] = (df / lengths[:, None].astype(np.float32))[None]
            dy *= real[:, :, None]
        else:  # the gradient goes to the step of each maximum
            np.put_along_axis(dy, arg[None], df[None], axis=0)
        return dy, dh

    def _run(self, x, lengths, train, rng):
        if not train:
            y, h_n = self.rnn(x, None, lengths=lengths)
            return y, h_n, None
        return self.rnn.forward_train(x, None, rng=rng, lengths=lengths)

    def forward(self, ids, lengths=None):
        """Logits (N, C) float32 of a padded batch: ids (T, N), lengths (N,)
        (None: every text T long). No dropout."""
        ids, lengths, real = self._check_batch(ids, lengths)
        x = self.params["embedding.weight"][ids]
        y, h_n, _ = self._run(x, lengths, False, None)
        h = h_n[0] if isinstance(h_n, tuple) else h_n
        f, _ = self._pool(y, h, lengths, real)
        z = matmul(np.ascontiguousarray(f), self.params["fc.weight"].T)
        z += self.params["fc.bias"]
        return z

    def _loss(self, z, targets, grad):
        """Mean loss over the N rows of logits z (N, C) and, with grad, dz =
        d loss / dz (float32)."""
        N = z.shape[0]
        if not self.multi_label:
            losses, dz = rows_xent(np.ascontiguousarray(z), targets, 1.0 / N, grad,
                                   in_place=grad)  # dz over z, which is not needed after
            return float(losses.sum(dtype=np.float64)) / N, dz
        z64 = z.astype(np.float64)
        # softplus(z) - y z, the binary cross-entropy of sigmoid(z)
        loss = float((np.logaddexp(0.0, z64) - targets * z64).sum()) / N
        dz = ((1.0 / (1.0 + np.exp(-z64)) - targets) / N).astype(np.float32) if grad else None
        return loss, dz

    def _check_targets(self, targets, N):
        t = np.asarray(targets)
        if self.multi_label:
            if t.shape != (N, len(self.classes)):
                raise ValueError(f"targets must be indicators of shape {(N, len(self.classes))}"
                                 f", got {shape_str(t.shape)}")
            return t.astype(np.float64)
        if t.dtype.kind not in "iu" or t.shape != (N,):
            raise ValueError(f"targets must be class indices of shape ({N},), got {t.dtype} "
                             f"{shape_str(t.shape)}")
        if t.min() < 0 or t.max() >= len(self.classes):
            raise ValueError(f"targets must be in [0, {len(self.classes)})")
        return np.ascontiguousarray(t, dtype=np.int64)

    def loss(self, ids, lengths, targets):
        """The loss of a padded batch without dropout (no gradient)."""
        z = self.forward(ids, lengths)
        return self._loss(z, self._check_targets(targets, z.shape[0]), False)[0]

    def train_step(self, ids, lengths, targets, *, rng=None):
        """Forward and backward over one padded batch (ids (T, N), lengths
        (N,) or None, targets: class indices (N,), or indicators (N, C) when
        multi-label), with dropout; gradients are added to ``grads``. Returns
        the loss (the mean over the batch, nats)."""
        ids, lengths, real = self._check_batch(ids, lengths)
        T, N = ids.shape
        targets = self._check_targets(targets, N)
        rng = self.generator if rng is None else rng
        p = self.dropout
        x = self.params["embedding.weight"][ids]
        mask_in = dropout_mask(x.shape, p, rng, draw_dtype=np.float32)
        if mask_in is not None:
            x *= mask_in
        y, h_n, tape = self._run(x, lengths, True, rng)
        lstm = isinstance(h_n, tuple)
        h = h_n[0] if lstm else h_n
        f, arg = self._pool(y, h, lengths, real)
        mask_out = dropout_mask(f.shape, p, rng, draw_dtype=np.float32)
        if mask_out is not None:
            f = f * mask_out
        f = np.ascontiguousarray(f, dtype=np.float32)
        w = self.params["fc.weight"]
        z = matmul(f, w.T)
        z += self.params["fc.bias"]
        loss, dz = self._loss(z, targets, True)
        # z = f W^T + b: dW = dz^T f, db = sum_n dz, df = dz W
        matmul(dz.T, f, out=self.grads["fc.weight"], accumulate=True)
        self.grads["fc.bias"] += dz.sum(axis=0)
        df = matmul(dz, w)
        if mask_out is not None:
            df *= mask_out
        dy, dh = self._unpool(df, y.shape, h.shape, lengths, real, arg)
        dx, _ = self.rnn.backward(tape, dy, (dh, None) if lstm else dh)
        if mask_in is not None:
            dx *= mask_in
        if not self.freeze_embedding:
            scatter_add_rows(self.grads["embedding.weight"], ids[real], dx[real])
        return loss

    # ------------------------------------------------------------ prediction

    def _batches(self, seqs, batch_size):
        """Index arrays of `seqs` sorted by length, batch_size at a time."""
        order = np.argsort([len(s) for s in seqs], kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def logits(self, texts, batch_size=256):
        """Logits (N, C) of a list of texts, in their order (batched by
        length; each text read as alone)."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        seqs = self.encode(texts)
        out = np.zeros((len(seqs), len(self.classes)), np.float32)
        for idx in self._batches(seqs, batch_size):
            out[idx] = self.forward(*pad_batch([seqs[i] for i in idx]))
        return out

    def _proba(self, z):
        if self.multi_label:
            return (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)
        e = np.exp(z.astype(np.float64) - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict_proba(self, texts, batch_size=256):
        """Class probabilities (N, C) float32, columns in ``classes`` order:
        softmax rows summing to 1, or per-class sigmoids when multi-label."""
        return self._proba(self.logits(texts, batch_size))

    def _decide(self, proba):
        """Class indices (N,) of probabilities (N, C), or indicators (N, C)
        bool when multi-label (probability > 0.5)."""
        return proba > 0.5 if self.multi_label else proba.argmax(axis=1)

    def labels_of(self, proba):
        """The predicted labels of probabilities (N, C) (predict_proba's)."""
        d = self._decide(proba)
        if self.multi_label:
            return [[c for c, on in zip(self.classes, row) if on] for row in d]
        return [self.classes[i] for i in d]

    def predict(self, texts, batch_size=256):
        """The label of each text (a str), or for multi-label a list of its
        labels (those of probability > 0.5, in classes order)."""
        return self.labels_of(self.predict_proba(texts, batch_size))

    def evaluate(self, texts, labels, batch_size=256):
        """``{"accuracy", "macro_f1", "loss", "examples"}`` of the model on
        labelled texts (see rnncore.classify.metrics; loss: the mean
        training loss without dropout)."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if not texts:
            raise ValueError("nothing to evaluate (no texts)")
        y = self.targets(labels)
        z = self.logits(texts, batch_size)
        loss = self._loss(z, y.astype(np.float64) if self.multi_label else y, False)[0]
        result = metrics.scores(y, self._decide(self._proba(z)), len(self.classes))
        result["loss"] = loss
        return result
