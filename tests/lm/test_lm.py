"""Language models: vocabularies and batching, the model's loss and gradients
(against finite differences and PyTorch), evaluation, generation, model
files and the train / eval / generate commands end to end on a tiny corpus."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import rnncore
from rnncore.lm.sampling import pick
from rnncore.lm.text import EOS, UNK, Vocabulary, batchify, bptt_batches

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 4
CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


# ---------------------------------------------------------------- text

def test_char_vocabulary_round_trip():
    v = Vocabulary.build(TEXT, "char")
    assert v.tokens[0] == " " and UNK in v.tokens and len(set(v.tokens)) == len(v)
    ids = v.encode(TEXT)
    assert ids.dtype == np.int64 and len(ids) == len(TEXT)
    assert v.decode(ids) == TEXT
    assert v.decode(v.encode("Zq")) == UNK * 2  # unseen characters


def test_word_vocabulary_appends_eos_per_line():
    v = Vocabulary.build(" the cat sat\n the dog <unk>\n", "word")
    assert v.tokens[:2] == ["the", EOS] and "<unk>" in v.tokens
    ids = v.encode(" the cat\n the bird\n")
    assert [v.tokens[i] for i in ids] == ["the", "cat", EOS, "the", UNK, EOS]
    assert v.decode(ids) == "the cat\nthe <unk>\n"


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "ptb")), reason="needs ../shared/data")
def test_ptb_vocabulary_is_the_standard_one():
    from rnncore.lm.text import read_text
    v = Vocabulary.build(read_text(os.path.join(DATA, "ptb", "ptb.train.txt")), "word")
    assert len(v) == 10000
    assert len(v.encode(read_text(os.path.join(DATA, "ptb", "ptb.valid.txt")))) == 73760


@pytest.mark.parametrize("bad, match", [(["a", "a", UNK], "distinct"), (["a"], "<unk>"),
                                        (["ab", UNK], "single"), ([], "non-empty")])
def test_bad_vocabularies(bad, match):
    with pytest.raises(ValueError, match=match):
        Vocabulary(bad, "char")


def test_batchify_and_windows_are_continuous_streams():
    ids = np.arange(103)
    data = batchify(ids, 4)
    assert data.shape == (25, 4) and (data[:, 1] == np.arange(25, 50)).all()
    windows = list(bptt_batches(data, 10))
    assert [w[0].shape[0] for w in windows] == [10, 10, 4]
    for x, y in windows:
        assert (y == x + 1).all()
    assert np.concatenate([x for x, _ in windows])[:, 2].tolist() == list(range(50, 74))
    with pytest.raises(ValueError, match="too few"):
        batchify(np.arange(5), 4)


# ---------------------------------------------------------------- model

def small_lm(cell="lstm", tied=False, dropout=0.0, seed=0, vocab=None, init_scale=0.5):
    vocab = vocab or Vocabulary.build("abcdefg hij\nklm", "char")
    return rnncore.LanguageModel(vocab, cell, 6, 6 if tied else 5, 2, dropout=dropout, tied=tied,
                                 init_scale=init_scale, seed=seed)


def nll64(lm, x, y):
    """float64 loss of lm.forward's logits: sum over steps of the mean NLL."""
    z = lm.forward(x)[0].astype(np.float64)
    z -= z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, y[..., None], -1)[..., 0].mean(1).sum()


# rnn_relu: finite differences straddle its kink; its kernels are checked
# against the reference in test_training
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("tied", [False, True])
def test_gradients_match_finite_differences(cell, tied, rng):
    lm = small_lm(cell, tied)
    x = rng.integers(0, len(lm.vocab), (4, 3))
    y = rng.integers(0, len(lm.vocab), (4, 3))
    loss, _ = lm.train_step(x, y)
    assert loss == pytest.approx(nll64(lm, x, y), rel=1e-5)
    names = [n for n, _ in lm.named_parameters()]
    assert ("decoder.weight" in names) != tied and set(lm.grads) == set(names)
    eps = 1e-2
    for name, p in lm.named_parameters():
        for idx in [tuple(int(rng.integers(0, s)) for s in p.shape) for _ in range(4)]:
            vals = []
            for sign in (1, -1):
                q = p.copy()
                q[idx] += sign * eps
                lm.load_state_dict({name: q}, strict=False)
                vals.append(nll64(lm, x, y))
            lm.load_state_dict({name: p}, strict=False)
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert lm.grads[name][idx] == pytest.approx(fd, rel=5e-3, abs=1e-3), (name, idx)


def test_train_steps_reuse_the_logits_buffer_without_carrying_values(rng):
    """train_step keeps its logits buffer for the next step of the same
    shape; a step on the reused (dirty) buffer gives the fresh model's loss
    and gradients bit for bit, and a shorter window gets its own buffer."""
    lm, fresh = small_lm("lstm", False), small_lm("lstm", False)
    x, y = (rng.integers(0, len(lm.vocab), (4, 3)) for _ in range(2))
    x2, y2 = (rng.integers(0, len(lm.vocab), (4, 3)) for _ in range(2))
    lm.train_step(x2, y2)
    [buf] = lm._logits_pool
    lm.zero_grad()
    loss, _ = lm.train_step(x, y)
    assert lm._logits_pool == [buf] and lm._logits_pool[0] is buf
    assert loss == fresh.train_step(x, y)[0]
    for name in lm.grads:
        np.testing.assert_array_equal(lm.grads[name], fresh.grads[name], err_msg=name)
    lm.train_step(x[:2], y[:2])  # another size: a buffer of its own, the first one kept
    assert len(lm._logits_pool) == 1 and lm._logits_pool[0] is buf


def test_dropout_gradients_match_finite_differences_with_the_same_masks(rng):
    lm = small_lm("gru", dropout=0.4)
    x = rng.integers(0, len(lm.vocab), (5, 3))
    y = rng.integers(0, len(lm.vocab), (5, 3))

    def loss_with_masks(seed):
        lm.zero_grad()
        return lm.train_step(x, y, rng=np.random.default_rng(seed))[0]

    assert loss_with_masks(7) != pytest.approx(loss_with_masks(8))  # masks do act
    loss_with_masks(7)
    grads = {k: v.copy() for k, v in lm.grads.items()}
    eps = 1e-2
    for name in ("encoder.weight", "rnn.weight_ih_l1", "decoder.weight"):
        p = dict(lm.named_parameters())[name]
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(grads[name])), p.shape))
        vals = []
        for sign in (1, -1):
            q = p.copy()
            q[idx] += sign * eps
            lm.load_state_dict({name: q}, strict=False)
            vals.append(loss_with_masks(7))
        lm.load_state_dict({name: p}, strict=False)
        assert grads[name][idx] == pytest.approx((vals[0] - vals[1]) / (2 * eps), rel=1e-2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_training_trajectory_matches_pytorch(cell, opt_name, rng):
    torch = pytest.importorskip("torch")
    vocab = Vocabulary.build(TEXT, "char")
    lm = rnncore.LanguageModel(vocab, cell, 16, 24, 2, seed=3)
    emb = torch.nn.Embedding(len(vocab), 16)
    rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(16, 24, 2)
    dec = torch.nn.Linear(24, len(vocab))
    sd = lm.state_dict()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(sd["encoder.weight"]))
        for n, p in rnn.named_parameters():
            p.copy_(torch.tensor(sd["rnn." + n]))
        dec.weight.copy_(torch.tensor(sd["decoder.weight"]))
        dec.bias.copy_(torch.tensor(sd["decoder.bias"]))
    params = [*emb.parameters(), *rnn.parameters(), *dec.parameters()]
    if opt_name == "sgd":
        topt, opt = torch.optim.SGD(params, lr=0.05), rnncore.optim.SGD(lm, lr=0.05)
    else:
        topt, opt = torch.optim.Adam(params, lr=3e-3), rnncore.optim.Adam(lm, lr=3e-3)
    data = batchify(vocab.encode(TEXT), 4)
    state, tstate = None, None
    for step, (x, y) in enumerate(bptt_batches(data, 12)):
        if step == 5:
            break
        loss, state = lm.train_step(x, y, state)
        rnncore.optim.clip_grad_norm(lm, 1.0)
        opt.step()
        lm.zero_grad()
        topt.zero_grad()
        out, tstate = rnn(emb(torch.tensor(x)), tstate)
        tstate = tuple(s.detach() for s in tstate) if cell == "lstm" else tstate.detach()
        nll = torch.nn.functional.cross_entropy(dec(out).reshape(-1, len(vocab)),
                                                torch.tensor(y).reshape(-1), reduction="none")
        tloss = nll.reshape(x.shape).mean(1).sum()
        tloss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        topt.step()
        assert loss == pytest.approx(tloss.item(), rel=1e-4), step
    np.testing.assert_allclose(lm.state_dict()["decoder.weight"], dec.weight.detach().numpy(),
                               rtol=1e-3, atol=1e-5)


def test_evaluate_is_the_stream_nll_with_carried_state(rng):
    lm = small_lm("lstm", init_scale=0.3)
    ids = rng.integers(0, len(lm.vocab), 50)
    res = lm.evaluate(ids, chunk=7)
    x, y = ids[:-1, None], ids[1:, None]
    expected = nll64(lm, x, y) / 49
    assert res["tokens"] == 49 and res["loss"] == pytest.approx(expected, rel=1e-5)
    assert res["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    assert res["bits_per_token"] == pytest.approx(expected / math.log(2), rel=1e-5)
    assert lm.evaluate(ids, chunk=1000)["loss"] == pytest.approx(res["loss"], rel=1e-5)


def test_learns_a_repetitive_text():
    vocab = Vocabulary.build(TEXT, "char")
    lm = rnncore.LanguageModel(vocab, "lstm", 16, 64, 1, seed=0)
    opt = rnncore.optim.Adam(lm, lr=1e-2)
    data = batchify(vocab.encode(TEXT), 4)
    start = lm.evaluate(vocab.encode(TEXT))["loss"]
    for _ in range(40):
        state = None
        for x, y in bptt_batches(data, 25):
            _, state = lm.train_step(x, y, state)
            rnncore.optim.clip_grad_norm(lm, 5.0)
            opt.step()
            lm.zero_grad()
    end = lm.evaluate(vocab.encode(TEXT))["loss"]
    assert start > 3.0 and end < 0.5, (start, end)
    after = lm.generate("First Citizen:\n", 25, temperature=0)[len("First Citizen:\n"):]
    assert after.startswith(("Before we proceed", "You are all resolved")), after


# ---------------------------------------------------------------- generation

def greedy_by_hand(lm, prompt, n):
    ids = list(lm.vocab.encode(prompt))
    for _ in range(n):
        logits, _ = lm.forward(np.array(ids)[:, None])
        ids.append(int(logits[-1, 0].argmax()))
    return lm.vocab.decode(ids)


def test_generate_greedy_sampled_and_batched():
    lm = small_lm("gru", init_scale=0.8, seed=5)
    greedy = lm.generate("abc", 12, temperature=0)
    assert greedy == greedy_by_hand(lm, "abc", 12)
    assert lm.generate("abc", 12, top_k=1) == greedy  # top-k 1 is greedy
    assert lm.generate("abc", 12, top_p=1e-6, seed=3) == greedy
    assert lm.generate("abc", 12, temperature=0, num_samples=3) == [greedy] * 3
    a = lm.generate("abc", 30, seed=11, temperature=1.5)
    assert a == lm.generate("abc", 30, seed=11, temperature=1.5) and a.startswith("abc")
    samples = lm.generate("abc", 30, seed=11, temperature=1.5, num_samples=4)
    assert len(samples) == 4 and len(set(samples)) > 1
    seen = []
    text = lm.generate("", 9, seed=2, on_token=lambda ids: seen.append(ids.copy()))
    assert len(seen) == 9 and lm.vocab.decode(np.concatenate(seen)) == text


def test_top_k_and_top_p_restrict_the_choice(rng):
    z = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    picks = [int(pick(z, 1.0, 2, None, rng)[0]) for _ in range(300)]
    assert set(picks) == {0, 1}
    picks = [int(pick(z, 1.0, None, 0.85, rng)[0]) for _ in range(300)]
    assert set(picks) == {0, 1, 2}
    picks = [int(pick(z, 1.0, None, None, rng)[0]) for _ in range(2000)]
    assert np.bincount(picks, minlength=4)[3] > 40


@pytest.mark.parametrize("kwargs, match", [({"temperature": -1}, "temperature"),
                                           ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
                                           ({"top_p": 1.5}, "top_p"),
                                           ({"num_samples": 0}, "num_samples"),
                                           ({"max_tokens": -1}, "max_tokens")])
def test_generate_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_lm().generate("a", **{"max_tokens": 3, **kwargs})


def test_bad_token_ids_are_rejected():
    lm = small_lm()
    with pytest.raises(ValueError, match="inputs must be in"):
        lm.train_step(np.full((2, 2), 99), np.zeros((2, 2), int))
    with pytest.raises(TypeError, match="ids must be integer"):
        lm.forward(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="targets must have the shape"):
        lm.train_step(np.zeros((2, 2), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="tied embeddings need"):
        rnncore.LanguageModel(lm.vocab, "lstm", 8, 16, tied=True)


# ---------------------------------------------------------------- model files

@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_save_load_round_trip(level, dtype, tmp_path, rng):
    vocab = Vocabulary.build(TEXT, level)
    lm = rnncore.LanguageModel(vocab, "gru", 8, 8, 2, dropout=0.1, tied=True, seed=1)
    path = rnncore.save(lm, tmp_path / "lm.safetensors", dtype=dtype)
    back = rnncore.load(path)
    assert isinstance(back, rnncore.LanguageModel) and repr(back) == repr(lm)
    assert back.vocab.tokens == vocab.tokens and back.vocab.level == level
    for k, v in lm.state_dict().items():
        got = back.state_dict()[k]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, v, rtol=1e-3 if dtype == "float16" else 0, atol=0)
    x = rng.integers(0, len(vocab), (6, 2))
    np.testing.assert_allclose(back.forward(x)[0], lm.forward(x)[0],
                               atol=5e-3 if dtype == "float16" else 0)


def test_hostile_language_model_metadata_is_rejected(tmp_path, monkeypatch):
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open
    lm = small_lm()
    path = rnncore.save(lm, tmp_path / "lm.safetensors")
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    cases = {
        "vocab not JSON": dict(meta, vocab="{"),
        "vocab duplicates": dict(meta, vocab=json.dumps({"level": "char", "tokens": ["a", "a"]})),
        "vocab too large": dict(meta, vocab=json.dumps({"level": "char",
                                                        "tokens": [UNK, "a", "b", "c"]})),
        "bad level": dict(meta, vocab=json.dumps({"level": "bytes", "tokens": [UNK]})),
        "absurd size": dict(meta, config=json.dumps(dict(lm.config(), hidden_size=10**9))),
        "wrong cell": dict(meta, config=json.dumps(dict(lm.config(), cell="transformer"))),
    }
    monkeypatch.setattr(rnncore.files, "MAX_VOCAB", 3)  # the bound, not 2^24 tokens of JSON
    for what, m in cases.items():
        bad = tmp_path / "bad.safetensors"
        save_file(tensors, str(bad), metadata=m)
        with pytest.raises(ValueError, match="not a valid rnncore model file"):
            rnncore.load(bad)
    monkeypatch.undo()
    save_file(dict(tensors, **{"optimizer/x": np.zeros(3, np.float32)}), str(tmp_path / "o.st"),
              metadata=meta)  # optimizer tensors only in checkpoints
    with pytest.raises(ValueError, match="unexpected"):
        rnncore.load(tmp_path / "o.st")


# ---------------------------------------------------------------- commands

def run_cli(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "rnncore", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=""))
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "train.txt").write_text(TEXT * 3)
    (tmp_path / "valid.txt").write_text(TEXT[:300])
    (tmp_path / "test.txt").write_text(TEXT[300:600])
    return tmp_path


TRAIN_ARGS = ["--cell", "lstm", "--embed-size", "8", "--hidden-size", "32", "--layers", "2",
              "--unroll", "20", "--batch", "4", "--lr", "0.01", "--dropout", "0.1",
              "--no-progress"]


def test_train_save_load_eval_generate_end_to_end(corpus):
    run_cli("train", "train.txt", "valid.txt", "test.txt", *TRAIN_ARGS, "--epochs", "3",
            "--out", "m.safetensors", cwd=corpus)
    log = [json.loads(line) for line in (corpus / "m.log.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in log] == [1, 2, 3, None] and "test_perplexity" in log[-1]
    assert log[2]["valid_loss"] < log[0]["valid_loss"] < math.log(40)
    model = rnncore.load(corpus / "m.safetensors")  # a checkpoint loads as a model
    best = rnncore.load(corpus / "m.best.safetensors")
    assert isinstance(model, rnncore.LanguageModel) and isinstance(best, rnncore.LanguageModel)
    out = run_cli("eval", "valid.txt", "--model", "m.best.safetensors", "--json", cwd=corpus)
    result = json.loads(out.stdout)
    assert {"loss", "perplexity", "bits_per_token", "tokens"} <= set(result)
    vocab = best.vocab
    expected = best.evaluate(vocab.encode(TEXT[:300]))
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert result["tokens"] == 299 and result["bits_per_char"] == result["bits_per_token"]
    assert result["loss"] == pytest.approx(min(r["valid_loss"] for r in log[:3]), rel=1e-6)
    text = run_cli("generate", "First", "--model", "m.safetensors", "--max-tokens", "40",
                   "--temperature", "0", cwd=corpus).stdout
    assert text == model.generate("First", 40, temperature=0) + "\n"
    two = run_cli("generate", "--model", "m.safetensors", "--max-tokens", "10", "--seed", "1",
                  "--samples", "2", "--top-p", "0.9", cwd=corpus).stdout
    assert two.count("--- sample") == 2


def test_word_level_generation_is_streamed_with_its_spacing(corpus, tmp_path):
    vocab = Vocabulary.build(TEXT, "word")
    lm = rnncore.LanguageModel(vocab, "gru", 8, 8, 1, init_scale=0.5, seed=2)
    rnncore.save(lm, corpus / "w.safetensors")
    for prompt in ("First Citizen:", "", "All:\n"):
        args = ([prompt] if prompt else []) + ["--model", "w.safetensors", "--max-tokens", "12",
                                               "--temperature", "0"]
        text = run_cli("generate", *args, cwd=corpus).stdout
        assert text == lm.generate(prompt, 12, temperature=0) + "\n", prompt


def test_resume_continues_bit_for_bit(corpus):
    run_cli("train", "train.txt", "valid.txt", *TRAIN_ARGS, "--optimizer", "adam",
            "--epochs", "2", "--out", "full.safetensors", cwd=corpus)
    run_cli("train", "train.txt", "valid.txt", *TRAIN_ARGS, "--optimizer", "adam",
            "--epochs", "1", "--out", "half.safetensors", cwd=corpus)
    run_cli("train", "--resume", "half.safetensors", "--epochs", "2", "--no-progress",
            cwd=corpus)
    full, half = rnncore.load(corpus / "full.safetensors"), rnncore.load(corpus / "half.safetensors")
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(half.state_dict()[k], v, err_msg=k)


def test_commands_report_bad_input_clearly(corpus):
    for args, match in ((["eval", "nope.txt", "--model", "nope.safetensors"], "No such file"),
                        (["train", "--resume", "train.txt"], "not a valid rnncore model file"),
                        (["train", "train.txt", "--dropout", "1.5"], "dropout")):
        proc = subprocess.run([sys.executable, "-m", "rnncore", *args], cwd=corpus,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and match in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_checkpoint_write_killed_midway_leaves_the_previous_one(corpus):
    """A training run is SIGKILLed while writing its epoch-2 checkpoint over
    the epoch-1 one: the epoch-1 checkpoint still loads and resumes."""
    import signal
    import textwrap
    from rnncore.files import read_checkpoint
    path = corpus / "ck.safetensors"
    child = textwrap.dedent(f"""
        import json, time
        import rnncore.files as st  # the module whose save_file writes
        from rnncore.tools.train import TrainConfig, train
        real = st.save_file
        def slow(tensors, filename, metadata=None):
            real(tensors, filename, metadata=metadata)
            if json.loads((metadata or {{}}).get("training", '{{"epoch": 0}}'))["epoch"] == 2:
                print("written", flush=True)  # the temporary is complete, not yet renamed
                time.sleep(60)
        st.save_file = slow
        train(TrainConfig(train="train.txt", valid="valid.txt", embed_size=8, hidden_size=16,
                          epochs=2, unroll=20, batch=4, out={str(path)!r}, progress=False),
              log=lambda msg: None)
    """)
    with subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                          cwd=corpus) as proc:
        assert proc.stdout.readline().strip() == "written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    model, training, _ = read_checkpoint(path)
    assert training["epoch"] == 1 and isinstance(model, rnncore.LanguageModel)
    run_cli("train", "--resume", path.name, "--epochs", "2", "--no-progress", cwd=corpus)
    assert read_checkpoint(path)[1]["epoch"] == 2
