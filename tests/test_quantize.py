"""rnncore.quantize on language models, int8 model files (save / load, the
checks on load) and ``rnncore quantize`` on the command line."""
import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import rnncore
from rnncore import files
from rnncore.tools import cli


@pytest.fixture(scope="module")
def lm():
    vocab = rnncore.Vocabulary.build("the quick brown fox jumps over the lazy dog\n" * 3, "char")
    return rnncore.LanguageModel(vocab, "lstm", embed_size=12, hidden_size=24, num_layers=2,
                                 seed=0)


@pytest.fixture(scope="module")
def text_ids(lm):
    return lm.vocab.encode("the lazy dog jumps over the quick brown fox\n" * 4)


def test_language_model_copy_runs_like_the_float_one(lm, text_ids):
    q = rnncore.quantize(lm)
    a, b = lm.evaluate(text_ids), q.evaluate(text_ids)
    assert b["tokens"] == a["tokens"] and abs(a["loss"] - b["loss"]) < 0.01
    logits, state = q.forward(text_ids[:10].reshape(-1, 1))
    assert logits.shape == (10, 1, len(lm.vocab)) and logits.dtype == np.float32
    text = q.generate("the", max_tokens=20, temperature=0)
    assert text.startswith("the") and len(text) == 23
    assert q.generate("the", 20, temperature=0) == text  # deterministic
    samples = q.generate("th", 5, seed=1, num_samples=3)
    assert len(samples) == 3
    names = dict(q.named_parameters())
    assert names["encoder.weight"].dtype == np.int8 and names["rnn.weight_ih_l0"].dtype == np.int8
    assert names["decoder.bias"].dtype == np.float32
    with pytest.raises(TypeError, match="inference only"):
        q.train_step(text_ids[:5].reshape(-1, 1), text_ids[1:6].reshape(-1, 1))
    with pytest.raises(ValueError, match="already quantized"):
        rnncore.quantize(q)


def test_tied_model_and_nan_parameter_named():
    vocab = rnncore.Vocabulary.build("abcabc\n", "char")
    lm = rnncore.LanguageModel(vocab, "gru", embed_size=8, hidden_size=8, num_layers=1,
                               tied=True, seed=0)
    q = rnncore.quantize(lm)
    assert "decoder.weight" not in q.state_dict()
    assert q.generate("a", 5, temperature=0)
    lm.params["encoder.weight"][0, 0] = np.inf
    with pytest.raises(ValueError, match="encoder.weight has 1 NaN or Inf"):
        rnncore.quantize(lm)
    lm.params["encoder.weight"][0, 0] = 0.0
    w = lm.rnn.weight_ih_l0.copy()
    w[0, 0] = np.nan
    lm.rnn.weight_ih_l0 = w
    with pytest.raises(ValueError, match="rnn.weight_ih_l0"):
        rnncore.quantize(lm)


@pytest.mark.parametrize("make", [
    lambda: rnncore.LSTM(5, 7, num_layers=2, bidirectional=True, proj_size=3, seed=0),
    lambda: rnncore.GRU(4, 6, reset_after=False, batch_first=True, seed=0),
    lambda: rnncore.RNN(3, 5, nonlinearity="relu", bias=False, seed=0),
])
def test_layer_files_round_trip(tmp_path, make):
    q = rnncore.quantize(make())
    path = rnncore.save(q, tmp_path / "q.safetensors")
    with safe_open(path, "numpy") as f:
        assert f.metadata()["dtype"] == "int8"
    back = rnncore.load(path)
    assert type(back) is type(q) and repr(back) == repr(q)
    x = np.random.default_rng(0).standard_normal((3, 2, q.input_size)).astype(np.float32)
    np.testing.assert_array_equal(back(x)[0], q(x)[0])
    with pytest.raises(ValueError, match="int8 model is stored as it is"):
        rnncore.save(q, tmp_path / "h.safetensors", dtype="float16")


def _tampered(tmp_path, q, change):
    src = rnncore.save(q, tmp_path / "q.safetensors")
    with safe_open(src, "numpy") as f:
        meta = f.metadata()
    tensors = load_file(src)
    change(tensors, meta)
    out = tmp_path / "bad.safetensors"
    save_file(tensors, str(out), metadata=meta)
    return out


@pytest.mark.parametrize("change,message", [
    (lambda t, m: t.update(weight_ih_l0_scale=-t["weight_ih_l0_scale"]), "finite and >= 0"),
    (lambda t, m: t.update(weight_hh_l0_scale=t["weight_hh_l0_scale"][:5]), "expected F32"),
    (lambda t, m: t.update(weight_hh_l0_scale=np.full(12, np.nan, np.float32)), "finite"),
    (lambda t, m: t.update(weight_ih_l0=t["weight_ih_l0"].astype(np.float32)), "expected I8"),
    (lambda t, m: t.update(weight_ih_l0=np.full_like(t["weight_ih_l0"], -128)), "-128"),
    (lambda t, m: t.pop("weight_ih_l0_scale"), "missing or unexpected"),
    (lambda t, m: m.update(dtype="int4"), "dtype 'int4'"),
])
def test_bad_int8_files_refused(tmp_path, change, message):
    q = rnncore.quantize(rnncore.GRU(3, 4, seed=0))
    with pytest.raises(ValueError, match=message):
        rnncore.load(_tampered(tmp_path, q, change))


def test_language_model_files_and_the_command_line(tmp_path, lm, text_ids, capsys):
    src = rnncore.save(lm, tmp_path / "lm.safetensors")
    out = tmp_path / "lm-int8.safetensors"
    assert cli.main(["quantize", str(src), str(out), "--dtype", "int8"]) == 0
    assert "quantized to int8" in capsys.readouterr().out
    q = rnncore.load(out)
    assert q.evaluate(text_ids) == rnncore.quantize(lm).evaluate(text_ids)
    text_file = tmp_path / "t.txt"
    text_file.write_text("the lazy dog jumps over the quick brown fox\n" * 4)
    assert cli.main(["eval", str(text_file), "--model", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["loss"] - q.evaluate(lm.vocab.encode(text_file.read_text()))["loss"]) < 1e-9
    assert cli.main(["generate", "the", "--model", str(out), "--max-tokens", "5", "--seed",
                     "1"]) == 0
    assert capsys.readouterr().out.startswith("the")
    with pytest.raises(SystemExit, match="already quantized"):
        cli.main(["quantize", str(out), str(tmp_path / "again.safetensors")])
    with pytest.raises(SystemExit):
        cli.main(["quantize", str(src), str(out), "--dtype", "bf16"])


def test_embedded_model_quantizes():
    lm = rnncore.load(files.DEFAULT_MODEL)
    q = rnncore.quantize(lm)
    ids = lm.vocab.encode("ROMEO:\nWhat light through yonder window breaks?\n")
    assert abs(q.evaluate(ids)["loss"] - lm.evaluate(ids)["loss"]) < 0.05
    fp32 = sum(p.size * 4 for p in lm.parameters())
    assert 0.24 < q.weight_bytes() / fp32 < 0.27  # int8, plus a scale and a column sum a row
