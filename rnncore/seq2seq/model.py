"""``rnncore.Seq2Seq``: an encoder-decoder with attention (Luong, Pham &
Manning 2015), trained with teacher forcing and decoded greedily, by
sampling or by beam search.

    source ids -> embedding -> encoder (bidirectional by default, H/2 units per
    direction so that its outputs K are H wide) -> K [N, S, H]
    decoder state 0 = the encoder's final states (for a bidirectional encoder
    the two directions' halves side by side, layer by layer)
    target ids (BOS y_1 .. y_n) -> embedding -> decoder -> h [N, T, H]
    attention over K (rnncore.seq2seq.attention; None: h~ = h) -> h~
    logits = h~ W_o^T + b_o (tied_decoder: W_o = the target embedding) -> softmax

The decoder reads only its own previous tokens (no input feeding), so
during training all target steps run in one call of the recurrent kernels
and the attention of all steps is one batched product. Batches hold
sentences of different lengths: the encoder runs with ``lengths``, the
attention gives source padding weight 0 and the loss skips target padding,
so a batch trains and decodes as its sentences one at a time would.

Arrays are batch first: ids ``[N, T]``; 0 is padding (tokenizers.PAD).
"""
import math

import numpy as np

from ..engine import cells
from ..engine.checks import check_bool, check_int, make_rng
from ..engine.layers import make_layer
from ..engine.losses import rows_xent
from ..engine.params import ParameterModel
from ..engine.runtime import Linear, matmul, one_blas_thread, scatter_add_rows, softmax_rows
from ..engine.stack import dropout_mask
from ..lm.sampling import pick
from . import attention as attention_ops
from .tokenizers import BOS, EOS, PAD

__all__ = ["Seq2Seq", "pad_batch"]

ATTENTION = attention_ops.KINDS + (None,)


def pad_batch(sequences, add_bos=False, add_eos=False):
    """``(ids [N, L] int64 padded with PAD, lengths [N])`` of lists of ids."""
    seqs = [([BOS] if add_bos else []) + list(s) + ([EOS] if add_eos else []) for s in sequences]
    lengths = np.array([len(s) for s in seqs], np.int64)
    if len(seqs) == 0 or lengths.min() < 1:
        raise ValueError("a batch needs at least one sentence, each with at least one token")
    ids = np.full((len(seqs), int(lengths.max())), PAD, np.int64)
    for n, s in enumerate(seqs):
        ids[n, :len(s)] = s
    return ids, lengths


class Seq2Seq(ParameterModel):
    """Sequence to sequence with attention (see the module docstring).

    src_vocab, tgt_vocab: tokenizers (rnncore.seq2seq.tokenizers). cell:
    'lstm' or 'gru' (or 'rnn_tanh', 'rnn_relu'). attention: 'general',
    'dot', 'additive' or None. Parameters (``named_parameters()``):
    ``src_embed.weight``, ``tgt_embed.weight``, ``encoder.<PyTorch names>``,
    ``decoder.<PyTorch names>``, ``attn.*`` and ``out.weight`` (absent when
    tied), ``out.bias``. ``grads`` holds one gradient array per parameter;
    the model plugs into rnncore.optim.
    """

    def __init__(self, src_vocab, tgt_vocab, cell="lstm", embed_size=256, hidden_size=256,
                 num_layers=1, bidirectional_encoder=True, attention="general", dropout=0.0,
                 tied_decoder=False, *, seed=None):
        kind = cells.by_name(cell)
        self.src_vocab, self.tgt_vocab, self.cell = src_vocab, tgt_vocab, cell
        E = self.embed_size = check_int("embed_size", embed_size, minimum=1)
        H = self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        L = self.num_layers = check_int("num_layers", num_layers, minimum=1)
        self.bidirectional_encoder = check_bool("bidirectional_encoder", bidirectional_encoder)
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        self.attention = attention
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        self.tied_decoder = check_bool("tied_decoder", tied_decoder)
        if self.tied_decoder and E != H:
            raise ValueError(f"tied_decoder needs embed_size == hidden_size, got {E} and {H}")
        D = 2 if self.bidirectional_encoder else 1
        if H % D:
            raise ValueError(f"a bidirectional encoder has hidden_size / 2 units per direction: "
                             f"hidden_size must be even, got {H}")
        rng = make_rng(seed)
        self.encoder = make_layer(kind, E, H // D, num_layers=L, bidirectional=D == 2,
                                  batch_first=True, dropout=dropout, seed=rng)
        self.decoder = make_layer(kind, E, H, num_layers=L, batch_first=True, dropout=dropout,
                                  seed=rng)
        Vs, Vt = len(src_vocab), len(tgt_vocab)
        own = {"src_embed.weight": (Vs, E), "tgt_embed.weight": (Vt, E)}
        if attention is not None:
            own.update(attention_ops.shapes(attention, H))
        if not self.tied_decoder:
            own["out.weight"] = (Vt, H)
        own["out.bias"] = (Vt,)
        self._own = own
        bound = 1.0 / math.sqrt(H)
        self.params = {}
        for name, shape in own.items():
            scale = 0.1 if name.endswith("embed.weight") else bound
            value = 0.0 if name in ("out.bias", "attn.b_c") else scale
            self.params[name] = rng.uniform(-value, value, size=shape).astype(np.float32)
        self.generator = np.random.default_rng(rng.integers(2**63))  # dropout masks
        self._init_grads()  # one gradient array per parameter

    # ------------------------------------------------------------ configuration

    def config(self):
        """The constructor arguments (without the vocabularies and seed)."""
        return {"cell": self.cell, "embed_size": self.embed_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bidirectional_encoder": self.bidirectional_encoder,
                "attention": self.attention, "dropout": self.dropout,
                "tied_decoder": self.tied_decoder}

    def __repr__(self):
        c = self.config()
        return (f"Seq2Seq({len(self.src_vocab)} -> {len(self.tgt_vocab)} tokens, {c['cell']!r}, "
                f"embed_size={c['embed_size']}, hidden_size={c['hidden_size']}, "
                f"num_layers={c['num_layers']}, bidirectional_encoder="
                f"{c['bidirectional_encoder']}, attention={c['attention']!r}, "
                f"dropout={c['dropout']}, tied_decoder={c['tied_decoder']})")

    def _layout(self):
        return ["src_embed.weight", "tgt_embed.weight", ("encoder.", self.encoder),
                ("decoder.", self.decoder)] + [n for n in self._own if "embed" not in n]

    # ------------------------------------------------------------ the network

    def _out_weight(self):
        return self.params["tgt_embed.weight" if self.tied_decoder else "out.weight"]

    def _bridge(self, state):
        """Encoder final states [L*D, N, H/D] -> decoder initial states [L, N, H]."""
        if not self.bidirectional_encoder:
            return state
        L = self.num_layers
        return np.ascontiguousarray(np.concatenate([state[0::2], state[1::2]], axis=-1)
                                    .reshape(L, state.shape[1], -1))

    def _unbridge(self, d):
        """The gradient of _bridge: [L, N, H] -> [L*D, N, H/D]."""
        if not self.bidirectional_encoder:
            return d
        half = d.shape[-1] // 2
        out = np.empty((2 * d.shape[0], d.shape[1], half), np.float32)
        out[0::2], out[1::2] = d[..., :half], d[..., half:]
        return out

    def _states(self, encoder_state):
        """(decoder initial state in the layer's form, its parts)."""
        if self.decoder.cell.has_cell_state:
            h, c = encoder_state
            return (self._bridge(h), self._bridge(c))
        return self._bridge(encoder_state)

    def _encode(self, src, src_len, train=False, rng=None):
        x = self.params["src_embed.weight"][src]
        mask = dropout_mask(x.shape, self.dropout, rng, np.float32) if train else None
        if mask is not None:
            x *= mask
        if train:
            K, state, tape = self.encoder.forward_train(x, None, rng=rng, lengths=src_len)
            return K, state, (tape, mask)
        K, state = self.encoder(x, None, lengths=src_len)
        return K, state, None

    def _attend(self, h, K, valid):
        if self.attention is None:
            return h, None
        return attention_ops.forward(self.attention, self.params, h, K, valid)

    def _logits(self, h_tilde):
        z = matmul(np.ascontiguousarray(h_tilde.reshape(-1, self.hidden_size)),
                   self._out_weight().T)
        z += self.params["out.bias"]
        return z

    # ------------------------------------------------------------ training

    def train_step(self, src, tgt, *, label_smoothing=0.0, rng=None):
        """Forward and backward over one batch of pairs: `src`, `tgt` lists of
        token-id lists (no BOS / EOS; the target gets both here). Adds to
        ``grads`` the gradient of the mean over target tokens (EOS included,
        padding excluded) of the cross-entropy, label-smoothed by
        ``label_smoothing`` (the target distribution (1 - e) onehot + e / V).
        Returns ``(loss_sum, tokens)``: the summed (unsmoothed) negative
        log-likelihood in nats, and the number of target tokens."""
        with one_blas_thread():
            return self._pass(src, tgt, label_smoothing, rng or self.generator, train=True)

    def loss(self, src, tgt):
        """``(loss_sum, tokens)`` of a batch as train_step computes it, without
        dropout or gradients."""
        with one_blas_thread():
            return self._pass(src, tgt, 0.0, None, train=False)

    def _pass(self, src, tgt, eps, rng, train):
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} source sentences but {len(tgt)} targets")
        src_ids, src_len = pad_batch(src)
        tgt_in, tgt_len = pad_batch(tgt, add_bos=True)
        tgt_out, _ = pad_batch(tgt, add_eos=True)
        N, T, H, V = len(src), tgt_in.shape[1], self.hidden_size, len(self.tgt_vocab)
        valid_src = np.arange(src_ids.shape[1])[None, :] < src_len[:, None]
        real = (np.arange(T)[None, :] < tgt_len[:, None]).reshape(-1)
        K, enc_state, enc_tape = self._encode(src_ids, src_len, train, rng)
        x = self.params["tgt_embed.weight"][tgt_in]
        mask_t = dropout_mask(x.shape, self.dropout, rng, np.float32) if train else None
        if mask_t is not None:
            x *= mask_t
        state0 = self._states(enc_state)
        if train:
            h, _, dec_tape = self.decoder.forward_train(x, state0, rng=rng, lengths=tgt_len)
        else:
            h, _ = self.decoder(x, state0, lengths=tgt_len)
        h_tilde, cache = self._attend(h, K, valid_src)
        mask_o = dropout_mask(h_tilde.shape, self.dropout, rng, np.float32) if train else None
        if mask_o is not None:
            h_tilde = h_tilde * mask_o
        z = np.ascontiguousarray(self._logits(h_tilde)[real])  # [M, V], real target tokens
        targets = tgt_out.reshape(-1)[real]
        tokens = len(targets)
        # the fused log-softmax cross-entropy of the kernels: the NLL per token and
        # dz = (softmax - onehot) / tokens, the gradient of the mean, over z
        nll, dz = rows_xent(z, targets, 1.0 / tokens, train, in_place=True)
        loss_sum = float(nll.sum(dtype=np.float64))
        if not train:
            return loss_sum, tokens
        if eps:  # smoothed targets (1 - e) onehot + e / V: add e (onehot - 1 / V) / tokens
            dz[np.arange(tokens), targets] += eps / tokens
            dz -= eps / (V * tokens)
        rows = np.flatnonzero(real)
        h2 = h_tilde.reshape(-1, H)[rows]
        g = self.grads
        matmul(dz.T, np.ascontiguousarray(h2),
               out=g["tgt_embed.weight" if self.tied_decoder else "out.weight"], accumulate=True)
        g["out.bias"] += dz.sum(axis=0)
        d_tilde = np.zeros((N * T, H), np.float32)
        d_tilde[rows] = matmul(dz, self._out_weight())
        d_tilde = d_tilde.reshape(N, T, H)
        if mask_o is not None:
            d_tilde *= mask_o
        if self.attention is None:
            dh, dK = d_tilde, np.zeros_like(K)
        else:
            dh, dK = attention_ops.backward(self.attention, self.params, g, d_tilde, cache)
        dx, dstate0 = self.decoder.backward(dec_tape, np.ascontiguousarray(dh, np.float32))
        if mask_t is not None:
            dx *= mask_t
        scatter_add_rows(g["tgt_embed.weight"], tgt_in, dx)
        if self.decoder.cell.has_cell_state:
            d_enc = (self._unbridge(dstate0[0]), self._unbridge(dstate0[1]))
        else:
            d_enc = self._unbridge(dstate0)
        tape, mask_s = enc_tape
        dxs, _ = self.encoder.backward(tape, np.ascontiguousarray(dK, np.float32), d_enc)
        if mask_s is not None:
            dxs *= mask_s
        scatter_add_rows(g["src_embed.weight"], src_ids, dxs)
        return loss_sum, tokens

    # ------------------------------------------------------------ decoding

    def _start(self, src):
        """Encoder outputs, source mask, decoder state for a batch of id lists,
        and the output layer with its weights packed once for the steps (a
        GEMM packs its B operand each call: 12 MB a step at H = 384, V = 8k)."""
        src_ids, src_len = pad_batch(src)
        K, state, _ = self._encode(src_ids, src_len)
        valid = np.arange(src_ids.shape[1])[None, :] < src_len[:, None]
        return K, valid, self._states(state), Linear(self._out_weight(), self.params["out.bias"])

    def _step(self, y_prev, state, K, valid, out):
        """One decoder step for rows of previous tokens: (log-probs [n, V], state)."""
        x = self.params["tgt_embed.weight"][y_prev]
        h, state = self.decoder.step(x, state)
        h_tilde, _ = self._attend(h[:, None, :], K, valid)
        z = out(np.ascontiguousarray(h_tilde.reshape(-1, self.hidden_size)))
        return softmax_rows(z, out=z, log=True), state

    def greedy(self, src, max_len, *, sample=False, temperature=1.0, top_k=None, top_p=None,
               rng=None):
        """Greedy (or sampled) decoding of a batch of source id lists, each up
        to max_len[n] tokens: a list of (ids, log-probability). Finished
        sentences leave the batch."""
        with one_blas_thread():
            return self._greedy(src, max_len, sample, temperature, top_k, top_p, rng)

    def _greedy(self, src, max_len, sample, temperature, top_k, top_p, rng):
        K, valid, state, layer = self._start(src)
        N = len(src)
        out = [[] for _ in range(N)]
        scores = np.zeros(N)
        alive = np.arange(N)
        y = np.full(N, BOS, np.int64)
        for step in range(int(max(max_len))):
            logp, state = self._step(y, state, K, valid, layer)
            if sample:
                y = pick(logp, temperature, top_k, top_p, rng)
            else:
                y = logp.argmax(axis=1)
            scores[alive] += logp[np.arange(len(alive)), y]
            keep = []
            for i, n in enumerate(alive):
                if y[i] == EOS:
                    continue
                out[n].append(int(y[i]))
                if len(out[n]) < max_len[n]:
                    keep.append(i)
            if not keep:
                break
            keep = np.array(keep)
            alive, y, K, valid = alive[keep], y[keep], K[keep], valid[keep]
            state = _take_state(state, keep)
        return list(zip(out, scores.tolist()))

    def beam_search(self, src, max_len, beam_size=5, *, alpha=0.6, nbest=1):
        """Beam search over a batch of source id lists: per sentence the
        ``nbest`` best hypotheses as (ids, score), score = log P / lp with
        GNMT's length penalty lp = ((5 + |y|) / 6) ** alpha (|y| counting
        EOS). The beams of all sentences step together; a sentence leaves the
        batch once it has beam_size finished hypotheses or reaches its max_len
        (its alive beams then finish as they are). A hypothesis ending in EOS
        finishes when it ranks among the k best candidates of its step, as in
        fairseq, so that beam_size=1 is greedy search."""
        k = check_int("beam_size", beam_size, minimum=1)
        nbest = min(check_int("nbest", nbest, minimum=1), k)
        with one_blas_thread():
            return self._beam_search(src, max_len, k, alpha, nbest)

    def _beam_search(self, src, max_len, k, alpha, nbest):
        K, valid, state, layer = self._start(src)
        N = len(src)
        rep = np.repeat(np.arange(N), k)
        K, valid, state = K[rep], valid[rep], _take_state(state, rep)
        lp = lambda n: ((5.0 + n) / 6.0) ** alpha  # noqa: E731
        finished = [[] for _ in range(N)]
        hyps = [[[] for _ in range(k)] for _ in range(N)]
        score = np.full((N, k), -np.inf)
        score[:, 0] = 0.0  # one live beam at the start: no duplicate hypotheses
        alive = list(range(N))
        y = np.full(N * k, BOS, np.int64)
        for step in range(int(max(max_len))):
            logp, state = self._step(y, state, K, valid, layer)
            V = logp.shape[1]
            A = len(alive)
            # the 2k best (beam, token) continuations of each sentence are
            # among each beam's own 2k best tokens: select per row (float32
            # rows of V, 2.6x faster than over k*V float64 scores), then merge
            c = min(2 * k, V)
            tok = np.argpartition(-logp, c - 1, axis=1)[:, :c] if c < V else \
                np.broadcast_to(np.arange(V), (A * k, V))
            cand = np.take_along_axis(logp, tok, 1) + score.reshape(-1, 1)    # [A*k, c]
            cand, tok = cand.reshape(A, k * c), tok.reshape(A, k * c)
            order = np.argsort(-cand, axis=1, kind="stable")[:, :2 * k]
            next_rows, next_y, next_score, next_hyps, keep_sent = [], [], [], [], []
            for a, n in enumerate(alive):
                beams, new_hyps, new_scores = [], [], []
                for rank, j in enumerate(order[a]):
                    b, t = divmod(int(j), c)
                    s, t = cand[a, j], int(tok[a, j])
                    if not np.isfinite(s):
                        continue
                    if t == EOS:  # finished when among the k best (so beam 1 is greedy)
                        if rank < k:
                            finished[n].append((hyps[a][b], s / lp(len(hyps[a][b]) + 1)))
                    elif len(beams) < k:
                        beams.append(a * k + b)
                        new_hyps.append(hyps[a][b] + [t])
                        new_scores.append(s)
                    if len(beams) == k and len(finished[n]) >= k:
                        break
                done = len(finished[n]) >= k or step + 1 >= max_len[n]
                if done:
                    if len(finished[n]) < k:  # at max_len: the alive beams finish too
                        finished[n] += [(h_, s_ / lp(len(h_) + 1))
                                        for h_, s_ in zip(new_hyps, new_scores)]
                    continue
                while len(beams) < k:  # fewer candidates than beams (tiny vocabularies)
                    beams.append(beams[-1])
                    new_hyps.append(new_hyps[-1])
                    new_scores.append(-np.inf)
                keep_sent.append(n)
                next_rows += beams
                next_y += [h_[-1] for h_ in new_hyps]
                next_score.append(new_scores)
                next_hyps.append(new_hyps)
            if not keep_sent:
                break
            rows = np.array(next_rows)
            K, valid, state = K[rows], valid[rows], _take_state(state, rows)
            y = np.array(next_y, np.int64)
            score, hyps, alive = np.array(next_score), next_hyps, keep_sent
        return [sorted(f, key=lambda hs: -hs[1])[:nbest] for f in finished]

    def translate(self, sentences, beam_size=5, max_len_a=1.5, max_len_b=10, *, alpha=0.6,
                  nbest=1, sample=False, temperature=1.0, top_k=None, top_p=None, seed=None,
                  batch_size=64):
        """Translations of `sentences` (a list of str): beam search (greedy for
        beam_size=1; sampling with ``sample=True``), at most max_len_a * source
        tokens + max_len_b target tokens. Returns a list of str, or with
        nbest > 1 a list of [(str, score), ...]."""
        if isinstance(sentences, str):
            raise TypeError("sentences must be a list of strings, not one string")
        rng = np.random.default_rng(seed)
        out = []
        for i in range(0, len(sentences), batch_size):
            chunk = [self.src_vocab.encode(s) or [EOS] for s in sentences[i:i + batch_size]]
            max_len = [max(1, int(max_len_a * len(s) + max_len_b)) for s in chunk]
            if sample or beam_size == 1:
                results = [[r] for r in self.greedy(chunk, max_len, sample=sample,
                                                    temperature=temperature, top_k=top_k,
                                                    top_p=top_p, rng=rng)]
            else:
                results = self.beam_search(chunk, max_len, beam_size, alpha=alpha, nbest=nbest)
            for best in results:
                decoded = [(self.tgt_vocab.decode(ids), float(s)) for ids, s in best]
                out.append(decoded if nbest > 1 else decoded[0][0])
        return out


def _take_state(state, rows):
    """Rows of a decoder state ([L, N, H] arrays, or a pair of them)."""
    if isinstance(state, tuple):
        return tuple(np.ascontiguousarray(s[:, rows]) for s in state)
    return np.ascontiguousarray(state[:, rows])
