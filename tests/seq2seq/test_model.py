"""rnncore.Seq2Seq: the loss and every gradient of the whole encoder-decoder
with attention against the same network in PyTorch with copied weights and
against finite differences; padded batches against one pair at a time;
decoding (greedy, beam search, sampling) and model files.

Tolerances: float32 end to end against torch's float32 (rtol 1e-4 of
conftest's G_RTOL, atol 1e-5: sums over at most a few hundred products of
O(1) values); finite differences in float32 with step 1e-2 on a network
whose loss is O(1): truncation and rounding stay under 2e-3 relative,
asserted at 2e-2 on the 8 largest gradient entries of every parameter.
"""
import numpy as np
import pytest

import rnncore
from rnncore import optim
from rnncore.seq2seq import tokenizers
from rnncore.seq2seq.model import Seq2Seq

WORDS = "ein eine der die das hund katze mann frau läuft schläft spielt im park a the dog " \
        "cat man woman runs sleeps plays in garden".split()


def _tok():
    return tokenizers.WordTokenizer(tokenizers.SPECIALS + WORDS)


def _pairs(rng, n, vocab=len(WORDS)):
    src = [list(rng.integers(4, 4 + vocab, rng.integers(1, 7))) for _ in range(n)]
    tgt = [list(rng.integers(4, 4 + vocab, rng.integers(1, 6))) for _ in range(n)]
    return src, tgt


def _model(cell="lstm", attention="general", layers=1, bi=True, tied=False, seed=0):
    tok = _tok()
    E = 12 if tied else 6
    return Seq2Seq(tok, tok, cell, E, 12, layers, bi, attention, 0.0, tied, seed=seed)


def _grads(model, src, tgt, eps=0.0):
    model.zero_grad()
    loss, tokens = model.train_step(src, tgt, label_smoothing=eps)
    return loss, tokens, {k: g.copy() for k, g in model.grads.items()}


# ------------------------------------------------------------ against PyTorch

def _torch_loss(model, src, tgt, eps):
    """The same network in PyTorch: the mean label-smoothed cross-entropy
    over the target tokens, and the torch parameters by rnncore's names."""
    torch = pytest.importorskip("torch")
    from rnncore.seq2seq.model import pad_batch
    sd = {k: torch.tensor(np.array(v), requires_grad=True) for k, v in model.state_dict().items()}
    L = model.num_layers
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[model.cell]

    def rnn(prefix, layer):
        m = kind(layer.input_size, layer.hidden_size, L, batch_first=True,
                 bidirectional=layer.bidirectional)
        for name, _ in list(m.named_parameters()):
            param = torch.nn.Parameter(sd[prefix + name].detach().clone())
            setattr(m, name, param)
            sd[prefix + name] = param  # its gradient is the one to compare
        return m

    enc, dec = rnn("encoder.", model.encoder), rnn("decoder.", model.decoder)
    src_ids, src_len = pad_batch(src)
    tgt_in, tgt_len = pad_batch(tgt, add_bos=True)
    tgt_out, _ = pad_batch(tgt, add_eos=True)
    xs = sd["src_embed.weight"][torch.from_numpy(src_ids)]
    packed = torch.nn.utils.rnn.pack_padded_sequence(xs, src_len, batch_first=True,
                                                     enforce_sorted=False)
    out, state = enc(packed)
    K, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                  total_length=src_ids.shape[1])

    def bridge(s):
        if not model.bidirectional_encoder:
            return s
        return torch.cat([s[0::2], s[1::2]], dim=-1)

    state = tuple(bridge(s) for s in state) if model.cell == "lstm" else bridge(state)
    xt = sd["tgt_embed.weight"][torch.from_numpy(tgt_in)]
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, tgt_len, batch_first=True,
                                                     enforce_sorted=False)
    out, _ = dec(packed, state)
    h, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                  total_length=tgt_in.shape[1])
    valid = torch.from_numpy(np.arange(src_ids.shape[1])[None, :] < src_len[:, None])
    if model.attention is None:
        h_tilde = h
    else:
        if model.attention == "dot":
            score = h @ K.transpose(1, 2)
        elif model.attention == "general":
            score = (h @ sd["attn.W_a"]) @ K.transpose(1, 2)
        else:
            e = torch.tanh((h @ sd["attn.W_q"].T)[:, :, None] + (K @ sd["attn.W_k"].T)[:, None])
            score = e @ sd["attn.v"]
        a = torch.softmax(score.masked_fill(~valid[:, None, :], -float("inf")), dim=-1)
        c = a @ K
        h_tilde = torch.tanh(torch.cat([c, h], -1) @ sd["attn.W_c"].T + sd["attn.b_c"])
    w_out = sd["tgt_embed.weight" if model.tied_decoder else "out.weight"]
    logits = h_tilde @ w_out.T + sd["out.bias"]
    real = torch.from_numpy(np.arange(tgt_in.shape[1])[None, :] < tgt_len[:, None])
    loss = torch.nn.functional.cross_entropy(logits[real], torch.from_numpy(tgt_out)[real],
                                             label_smoothing=eps)
    return loss, sd


@pytest.mark.parametrize("attention", ["general", "dot", "additive", None])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_match_pytorch(cell, attention, rng):
    model = _model(cell, attention, layers=2)
    src, tgt = _pairs(rng, 5)
    loss, tokens, grads = _grads(model, src, tgt, eps=0.1)
    t_loss, sd = _torch_loss(model, src, tgt, 0.1)
    t_loss.backward()
    # our loss_sum is the unsmoothed NLL; the gradients are of the smoothed mean
    t_nll, _ = _torch_loss(model, src, tgt, 0.0)
    assert tokens == sum(len(t) + 1 for t in tgt)
    np.testing.assert_allclose(loss / tokens, t_nll.detach().item(), rtol=1e-5)
    for name, p in sd.items():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_tied_decoder_and_unidirectional_encoder_match_pytorch(rng):
    model = _model("lstm", "general", bi=False, tied=True)
    assert "out.weight" not in model.state_dict()
    src, tgt = _pairs(rng, 4)
    _, _, grads = _grads(model, src, tgt)
    t_loss, sd = _torch_loss(model, src, tgt, 0.0)
    t_loss.backward()
    for name, p in sd.items():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=name)


# ------------------------------------------------------------ finite differences

@pytest.mark.parametrize("attention", ["general", "additive"])
def test_gradients_match_finite_differences(attention, rng):
    model = _model("gru", attention)
    src, tgt = _pairs(rng, 3)
    _, tokens, grads = _grads(model, src, tgt)

    def mean_loss():
        loss, n = model.loss(src, tgt)
        return loss / n

    step = 1e-2
    for name, p in model.state_dict().items():
        g = grads[name].reshape(-1)
        for i in np.argsort(-np.abs(g))[:8]:
            flat = p.reshape(-1)
            values = {}
            for sign in (1, -1):
                changed = p.copy()
                changed.reshape(-1)[i] = flat[i] + sign * step
                model.load_state_dict({**model.state_dict(), name: changed})
                values[sign] = mean_loss()
            model.load_state_dict({**model.state_dict(), name: p})
            fd = (values[1] - values[-1]) / (2 * step)
            assert abs(fd - g[i]) <= 2e-2 * abs(g[i]) + 1e-4, (name, i, fd, g[i])


# ------------------------------------------------------------ batches

def test_a_padded_batch_trains_as_one_pair_at_a_time(rng):
    model = _model("lstm", "additive", layers=2)
    src, tgt = _pairs(rng, 6)
    loss, tokens, grads = _grads(model, src, tgt)
    total = {k: np.zeros_like(g) for k, g in grads.items()}
    loss_sum = 0.0
    for s, t in zip(src, tgt):
        l_one, n_one, g_one = _grads(model, [s], [t])
        loss_sum += l_one
        for k in total:  # the batch's gradient is the token-weighted mean
            total[k] += g_one[k] * n_one / tokens
    np.testing.assert_allclose(loss, loss_sum, rtol=1e-5)
    for k in total:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_decoding_a_batch_equals_decoding_one_at_a_time(rng):
    model = _model("gru", "general", seed=3)
    src, _ = _pairs(rng, 7)
    max_len = [len(s) + 3 for s in src]
    batch_greedy = model.greedy(src, max_len)
    batch_beam = model.beam_search(src, max_len, 3, nbest=2)
    for n, s in enumerate(src):
        one = model.greedy([s], [max_len[n]])[0]
        assert one[0] == batch_greedy[n][0]
        np.testing.assert_allclose(one[1], batch_greedy[n][1], rtol=1e-5)
        beam = model.beam_search([s], [max_len[n]], 3, nbest=2)[0]
        assert [h for h, _ in beam] == [h for h, _ in batch_beam[n]]


# ------------------------------------------------------------ decoding

def _trained(rng):
    """A small model trained for a moment on reversing token sequences."""
    model = _model("lstm", "general", seed=1)
    opt = optim.Adam(model, lr=1e-2)
    for _ in range(60):
        src = [list(rng.integers(4, 10, rng.integers(2, 5))) for _ in range(16)]
        model.train_step(src, [s[::-1] for s in src])
        opt.step()
        model.zero_grad()
    return model


def test_beam_one_is_greedy_and_wider_beams_score_at_least_greedy(rng):
    model = _trained(rng)
    src = [list(rng.integers(4, 10, rng.integers(2, 6))) for _ in range(12)]
    max_len = [len(s) + 4 for s in src]
    greedy = model.greedy(src, max_len)
    beam1 = model.beam_search(src, max_len, 1, alpha=0.0)
    for (g_ids, g_score), [(b_ids, b_score)] in zip(greedy, beam1):
        assert g_ids == b_ids
        np.testing.assert_allclose(g_score, b_score, rtol=1e-5)
    beam5 = model.beam_search(src, max_len, 5, alpha=0.0, nbest=5)
    for (g_ids, g_score), hyps in zip(greedy, beam5):
        assert hyps[0][1] >= g_score - 1e-5
        assert [s for _, s in hyps] == sorted((s for _, s in hyps), reverse=True)
        assert len({tuple(h) for h, _ in hyps}) == len(hyps)  # distinct hypotheses


def test_translate_greedy_sampling_and_nbest(rng):
    model = _trained(rng)
    tok = model.src_vocab
    sentences = ["der hund katze", "mann frau", "die"]
    greedy = model.translate(sentences, beam_size=1)
    assert len(greedy) == 3 and all(isinstance(s, str) for s in greedy)
    nbest = model.translate(sentences, beam_size=4, nbest=3)
    assert all(len(h) == 3 and isinstance(h[0][1], float) for h in nbest)
    a = model.translate(sentences, sample=True, temperature=1.0, top_k=3, seed=5)
    b = model.translate(sentences, sample=True, temperature=1.0, top_k=3, seed=5)
    assert a == b
    # max length: at most max_len_a * source tokens + max_len_b target tokens
    for s, out in zip(sentences, model.translate(sentences, beam_size=3, max_len_a=0,
                                                 max_len_b=2)):
        assert len(tok.encode(out)) <= 2
    with pytest.raises(TypeError, match="list of strings"):
        model.translate("der hund")


def test_model_files_round_trip(tmp_path, rng):
    model = _trained(rng)
    path = tmp_path / "s2s.safetensors"
    rnncore.save(model, path)
    back = rnncore.load(path)
    assert isinstance(back, Seq2Seq) and repr(back) == repr(model)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, back.state_dict()[k])
    sentences = ["der hund", "katze im park"]
    assert back.translate(sentences) == model.translate(sentences)


def test_bad_configurations_are_refused():
    tok = _tok()
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2Seq(tok, tok, attention="bahdanau")
    with pytest.raises(ValueError, match="hidden_size must be even"):
        Seq2Seq(tok, tok, hidden_size=7)
    with pytest.raises(ValueError, match="tied_decoder needs embed_size == hidden_size"):
        Seq2Seq(tok, tok, embed_size=8, hidden_size=16, tied_decoder=True)
    model = _model()
    with pytest.raises(ValueError, match="3 source sentences but 2 targets"):
        model.train_step([[4], [5], [6]], [[4], [5]])
    with pytest.raises(ValueError, match="at least one token"):
        model.train_step([[]], [[4]])
