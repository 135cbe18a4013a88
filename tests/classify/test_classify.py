"""Sequence classifiers: tokenizer, vocabulary and TSV reading, the model's
loss and gradients (against finite differences on the float64 reference and
against the same model in PyTorch), padded batches against one text at a
time, scores, predictions and model files."""
import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import rnncore
from rnncore.classify import SequenceClassifier, build_vocab, metrics, read_tsv, tokenize
from rnncore.classify.data import bucket_batches, check_labels, encode, pad_batch
from rnncore.engine.runtime import using_backend

TEXTS = ["A good film!", "a bad, bad film", "It's great.", "dull and long", "not bad at all",
         "the plot doesn't work", "fine", "GREAT great great acting"]


def small(cell="gru", pooling="last", bidirectional=False, layers=1, multi_label=False,
          classes=("neg", "pos", "meh"), seed=0, **kw):
    return SequenceClassifier(build_vocab(TEXTS), list(classes), cell, 4, 5, layers,
                              bidirectional, pooling, multi_label=multi_label, seed=seed, **kw)


def padded(rng, clf, lengths):
    T = max(lengths)
    ids = rng.integers(0, len(clf.vocab), (T, len(lengths)))
    return ids, np.array(lengths)


def targets_for(clf, rng, N):
    C = len(clf.classes)
    if clf.multi_label:
        return (rng.random((N, C)) < 0.5).astype(np.float32)
    return rng.integers(0, C, N)


# ---------------------------------------------------------------- data

def test_tokenizer_lowercases_and_splits_punctuation():
    assert tokenize("It's GREAT!  (really)") == ["it's", "great", "!", "(", "really", ")"]
    assert tokenize("co-writer ''Rings''") == ["co", "-", "writer", "'", "'", "rings", "'", "'"]
    assert tokenize("   ") == []


def test_vocabulary_min_count_max_vocab_and_unk():
    v = build_vocab(["b a b c", "b a"], min_count=2)
    assert v.tokens == ["<unk>", "b", "a"] and v.unk == 0
    assert build_vocab(["b a b c", "b a"], max_vocab=1).tokens == ["<unk>", "b"]
    assert encode(v, "a zebra B").tolist() == [2, 0, 1]
    assert encode(v, "").tolist() == [0]  # a text without tokens is one <unk>
    with pytest.raises(ValueError, match="min_count"):
        build_vocab(["a"], min_count=0)


def test_read_tsv_single_and_multi_label(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("pos\tA good film\nneg\tbad\twith a tab\r\n")
    assert read_tsv(path) == (["pos", "neg"], ["A good film", "bad\twith a tab"])
    path.write_text("action, comedy\tfun\ndrama\tsad\n")
    assert read_tsv(path, multi_label=True) == ([("action", "comedy"), ("drama",)],
                                                ["fun", "sad"])


@pytest.mark.parametrize("content, match", [
    ("pos\tgood\n\nneg\tbad\n", "line 2: empty line"),
    ("pos\tgood\nneg bad\n", "line 2: no tab"),
    ("\tgood\n", "line 1: empty label"),
    ("pos\t  \n", "line 1: empty text"),
    ("", "no examples"),
    (b"pos\t\xff\n", "not UTF-8"),
])
def test_bad_tsv_files_name_the_file_and_line(tmp_path, content, match):
    path = tmp_path / "bad.tsv"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(ValueError, match=match) as info:
        read_tsv(path)
    assert str(path) in str(info.value)


def test_unknown_labels_name_the_line():
    with pytest.raises(ValueError, match=r"f.tsv, line 2: unknown label 'meh'"):
        check_labels("f.tsv", ["pos", "meh"], ["neg", "pos"])
    with pytest.raises(ValueError, match="line 1: unknown label 'x'"):
        check_labels("f.tsv", [("pos", "x")], ["neg", "pos"])


def test_bucket_batches_cover_every_example_once_with_similar_lengths(rng):
    lengths = rng.integers(1, 60, 1000)
    batches = bucket_batches(lengths, 32, rng, pool=50)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 3  # sorted within pools of 1600 > 1000: nearly equal lengths
    assert [b.tolist() for b in bucket_batches(lengths, 32)] == \
        [b.tolist() for b in bucket_batches(lengths, 32)]
    ids, lens = pad_batch([np.array([3, 4]), np.array([5])])
    assert ids.tolist() == [[3, 5], [4, 0]] and lens.tolist() == [2, 1]


def test_metrics():
    t, p = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    assert metrics.accuracy(t, p) == pytest.approx(0.6)
    # F1: class 0: 2*1/(2+1+1) = 0.5, class 1: 2*2/(4+1) = 0.8, class 2: 0
    assert metrics.macro_f1(t, p, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    ti = np.array([[1, 0], [1, 1]], bool)
    pi = np.array([[1, 0], [1, 0]], bool)
    assert metrics.accuracy(ti, pi) == 0.5
    assert metrics.macro_f1(ti, pi, 2) == pytest.approx((1.0 + 0.0) / 2)


# ---------------------------------------------------------------- gradients

CASES = [("gru", "last", False, 1), ("lstm", "last", True, 2), ("gru", "mean", False, 2),
         ("lstm", "mean", True, 1), ("lstm", "max", False, 1), ("gru", "max", True, 1)]


def _fd_check(clf, ids, lengths, y, rng, eps=3e-3):
    clf.zero_grad()
    loss = clf.train_step(ids, lengths, y)
    assert loss == pytest.approx(clf.loss(ids, lengths, y), rel=1e-6)
    real = np.arange(ids.shape[0])[:, None] < lengths[None, :]
    used = np.unique(ids[real])
    for name, p in clf.named_parameters():
        picks = [tuple(int(rng.integers(0, s)) for s in p.shape) for _ in range(3)]
        if name == "embedding.weight":  # rows of the batch (the others' gradient is 0)
            picks = [(int(rng.choice(used)), int(rng.integers(0, p.shape[1]))) for _ in range(3)]
            unused = sorted(set(range(p.shape[0])) - set(used.tolist()))
            assert not clf.grads[name][unused].any()
        for idx in picks:
            vals = []
            for sign in (1, -1):
                q = p.copy()
                q[idx] += sign * eps
                clf.load_state_dict({name: q}, strict=False)
                vals.append(clf.loss(ids, lengths, y))
            clf.load_state_dict({name: p}, strict=False)
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert clf.grads[name][idx] == pytest.approx(fd, rel=5e-3, abs=1e-4), (name, idx)


@pytest.mark.parametrize("cell, pooling, bidirectional, layers", CASES)
def test_gradients_match_finite_differences_on_a_padded_batch(cell, pooling, bidirectional,
                                                              layers, rng):
    with using_backend("reference"):
        clf = small(cell, pooling, bidirectional, layers)
        ids, lengths = padded(rng, clf, [5, 2, 4, 1])
        _fd_check(clf, ids, lengths, targets_for(clf, rng, 4), rng)


def test_multi_label_gradients_match_finite_differences(rng):
    with using_backend("reference"):
        clf = small("gru", "mean", True, multi_label=True)
        ids, lengths = padded(rng, clf, [3, 6, 2])
        _fd_check(clf, ids, lengths, targets_for(clf, rng, 3), rng)


def test_dropout_masks_act_and_gradients_follow_them(rng):
    clf = small("gru", "max", True, 2, dropout=0.5)
    ids, lengths = padded(rng, clf, [5, 3, 4])
    y = targets_for(clf, rng, 3)

    def step(seed):
        clf.zero_grad()
        return clf.train_step(ids, lengths, y, rng=np.random.default_rng(seed))

    assert step(1) != pytest.approx(step(2))
    step(1)
    grads = {k: v.copy() for k, v in clf.grads.items()}
    name = "fc.weight"
    p = clf.params[name]
    idx = np.unravel_index(np.argmax(np.abs(grads[name])), p.shape)
    vals = []
    for sign in (1, -1):
        q = p.copy()
        q[idx] += sign * 1e-2
        clf.load_state_dict({name: q}, strict=False)
        vals.append(step(1))
    clf.load_state_dict({name: p}, strict=False)
    assert grads[name][idx] == pytest.approx((vals[0] - vals[1]) / 2e-2, rel=1e-2)


@pytest.mark.parametrize("cell, pooling, bidirectional, layers", CASES)
@pytest.mark.parametrize("multi_label", [False, True])
def test_loss_and_gradients_match_pytorch(cell, pooling, bidirectional, layers, multi_label,
                                          rng):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    nn, F = torch.nn, torch.nn.functional
    clf = small(cell, pooling, bidirectional, layers, multi_label=multi_label)
    ids, lengths = padded(rng, clf, [6, 3, 6, 1, 4])
    y = targets_for(clf, rng, 5)
    loss = clf.train_step(ids, lengths, y)
    V, E, H, C = len(clf.vocab), 4, 5, len(clf.classes)
    D = 2 if bidirectional else 1
    emb = nn.Embedding(V, E)
    rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(E, H, layers, bidirectional=bidirectional)
    fc = nn.Linear(D * H, C)
    sd = clf.state_dict()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(sd["embedding.weight"]))
        for n, p in rnn.named_parameters():
            p.copy_(torch.tensor(sd["rnn." + n]))
        fc.weight.copy_(torch.tensor(sd["fc.weight"]))
        fc.bias.copy_(torch.tensor(sd["fc.bias"]))
    lens = torch.tensor(lengths)
    x = emb(torch.tensor(ids))
    packed = nn.utils.rnn.pack_padded_sequence(x, lens, enforce_sorted=False)
    out, h = rnn(packed)
    h = h[0] if cell == "lstm" else h
    yt, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=ids.shape[0])
    real = (torch.arange(ids.shape[0])[:, None] < lens[None, :])[:, :, None]
    if pooling == "last":
        f = torch.cat([h[-D + d] for d in range(D)], dim=1)
    elif pooling == "mean":
        f = yt.sum(0) / lens[:, None]
    else:
        f = yt.masked_fill(~real, float("-inf")).max(0).values
    z = fc(f)
    if multi_label:
        tloss = F.binary_cross_entropy_with_logits(z, torch.tensor(y), reduction="sum") / 5
    else:
        tloss = F.cross_entropy(z, torch.tensor(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-5)
    theirs = {"embedding.weight": emb.weight.grad, "fc.weight": fc.weight.grad,
              "fc.bias": fc.bias.grad}
    theirs.update(("rnn." + n, p.grad) for n, p in rnn.named_parameters())
    assert set(theirs) == set(clf.grads)
    for name, g in theirs.items():
        np.testing.assert_allclose(clf.grads[name], g.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    with torch.no_grad():
        proba = torch.sigmoid(z) if multi_label else torch.softmax(z, 1)
    np.testing.assert_allclose(clf._proba(clf.forward(ids, lengths)), proba.numpy(),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- padding

@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_padded_batch_trains_and_predicts_as_one_text_at_a_time(cell, pooling, rng):
    clf = small(cell, pooling, True, 2)
    lengths = [7, 2, 5, 1, 7, 3]
    ids, lens = padded(rng, clf, lengths)
    ids[ids.shape[0] - 1, 1] = 5  # padding content never matters
    y = targets_for(clf, rng, len(lengths))
    z = clf.forward(ids, lens)
    clf.zero_grad()
    loss = clf.train_step(ids, lens, y)
    batch_grads = {k: v.copy() for k, v in clf.grads.items()}
    mean_grads = {k: np.zeros_like(v) for k, v in clf.grads.items()}
    losses = []
    for n, ln in enumerate(lengths):
        one = ids[:ln, n:n + 1]
        np.testing.assert_allclose(clf.forward(one)[0], z[n], rtol=1e-5, atol=1e-6)
        clf.zero_grad()
        losses.append(clf.train_step(one, None, y[n:n + 1]))
        for k, g in clf.grads.items():
            mean_grads[k] += g / len(lengths)
    assert loss == pytest.approx(np.mean(losses), rel=1e-5)
    for k in batch_grads:
        np.testing.assert_allclose(batch_grads[k], mean_grads[k], rtol=1e-4, atol=1e-6,
                                   err_msg=k)
    texts = ["a good film", "bad", "it's great great . fine", "dull", "not at all bad"]
    single = np.stack([clf.predict_proba([t])[0] for t in texts])
    np.testing.assert_allclose(clf.predict_proba(texts, batch_size=3), single,
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- prediction, files

def test_predict_and_predict_proba_shapes():
    clf = small("lstm", "mean", True)
    texts = ["good film", "bad", "", "zebra unknown words only"]
    p = clf.predict_proba(texts)
    assert p.shape == (4, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    labels = clf.predict(texts)
    assert labels == [clf.classes[i] for i in p.argmax(axis=1)]
    ml = small("gru", "max", multi_label=True)
    p = ml.predict_proba(texts)
    assert p.shape == (4, 3) and ((p > 0) & (p < 1)).all()
    assert ml.predict(texts) == [[c for c, q in zip(ml.classes, row) if q > 0.5] for row in p]
    with pytest.raises(TypeError, match="single str"):
        clf.predict("good film")
    assert clf.predict_proba([]).shape == (0, 3)


def test_bad_arguments_are_rejected():
    v = build_vocab(TEXTS)
    for kwargs, match in (({"classes": ["a"]}, "at least 2"), ({"classes": ["a", "a"]}, "distinct"),
                          ({"classes": ["a", "b"], "pooling": "sum"}, "pooling"),
                          ({"classes": ["a", "b"], "cell": "tcn"}, "cell"),
                          ({"classes": ["a,b"], "multi_label": True}, "commas")):
        with pytest.raises(ValueError, match=match):
            SequenceClassifier(v, **kwargs)
    clf = small()
    with pytest.raises(ValueError, match="lengths"):
        clf.forward(np.zeros((3, 2), np.int64), [4, 1])
    with pytest.raises(ValueError, match="ids must be in"):
        clf.forward(np.full((3, 1), 99), None)
    with pytest.raises(ValueError, match="unknown label 'x'"):
        clf.targets(["neg", "x"])


@pytest.mark.parametrize("multi_label", [False, True])
def test_save_load_round_trip(tmp_path, multi_label):
    clf = small("lstm", "max", True, 2, multi_label=multi_label, dropout=0.25)
    path = rnncore.save(clf, tmp_path / "c.safetensors")
    back = rnncore.load(path)
    assert isinstance(back, SequenceClassifier) and back.config() == clf.config()
    assert back.classes == clf.classes and back.vocab.tokens == clf.vocab.tokens
    for k, v in clf.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    np.testing.assert_array_equal(back.predict_proba(TEXTS), clf.predict_proba(TEXTS))


def test_hostile_classifier_metadata_is_rejected(tmp_path):
    clf = small()
    good = tmp_path / "good.safetensors"
    rnncore.save(clf, good)
    from safetensors import safe_open
    with safe_open(good, framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    for change, match in (({"classes": "not json"}, "classes is not JSON"),
                          ({"classes": json.dumps({"a": 1})}, "JSON list"),
                          ({"classes": json.dumps(["a", "a", "b"])}, "distinct"),
                          ({"classes": json.dumps([1, 2])}, "config rejected"),
                          ({"config": json.dumps(dict(cfg, pooling="sum"))}, "pooling"),
                          ({"config": json.dumps(dict(cfg, extra=1))}, "config keys"),
                          ({"config": json.dumps(dict(cfg, num_layers=10**12))}, "2\\^31"),
                          ({"config": json.dumps(dict(cfg, bidirectional=1))}, "wrong type")):
        bad = tmp_path / "bad.safetensors"
        save_file(tensors, bad, metadata=dict(meta, **change))
        with pytest.raises(ValueError, match=match):
            rnncore.load(bad)
    wrong = dict(tensors, **{"fc.bias": np.zeros(7, np.float32)})
    save_file(wrong, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(ValueError, match="fc.bias"):
        rnncore.load(tmp_path / "bad.safetensors")
