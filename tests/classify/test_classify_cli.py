"""The ``rnncore classify`` commands end to end on a tiny synthetic task (the
label says whether a keyword appears): train, eval, predict, resume, and
the errors of bad input (naming the file and the line, nothing written)."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import rnncore
from rnncore.classify import read_tsv

WORDS = "the a film movie plot actor scene story was is very quite rather long short".split()


def synthetic(path, n, seed, multi_label=False):
    """pos when 'great' appears; multi-label: 'fun' when 'great', 'dark'
    when 'night' appears (any of the two, both or none)."""
    r = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            ws = [r.choice(WORDS) for _ in range(r.randint(2, 12))]
            great, night = r.random() < 0.5, r.random() < 0.5
            if great:
                ws.insert(r.randrange(len(ws) + 1), "Great")
            if multi_label:
                if night:
                    ws.insert(r.randrange(len(ws) + 1), "night")
                label = ",".join([c for c, on in (("dark", night), ("fun", great)) if on]
                                 or ["none"])
            else:
                label = "pos" if great else "neg"
            f.write(f"{label}\t{' '.join(ws)}\n")


def run_cli(*args, cwd, stdin=None, ok=True):
    proc = subprocess.run([sys.executable, "-m", "rnncore", "classify", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300, input=stdin,
                          env=dict(os.environ, PYTHONPATH="", OMP_WAIT_POLICY="passive"))
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("classify")
    synthetic(d / "train.tsv", 300, 0)
    synthetic(d / "valid.tsv", 80, 1)
    return d


ARGS = ["--cell", "gru", "--embed-size", "8", "--hidden-size", "16", "--batch", "16",
        "--lr", "0.02", "--dropout", "0.1", "--no-progress", "--threads", "1"]


def test_train_eval_predict_end_to_end(data):
    run_cli("train", "--train", "train.tsv", "--valid", "valid.tsv", *ARGS, "--epochs", "3",
            "--bidirectional", "--pooling", "max", "--out", "m.safetensors", cwd=data)
    log = [json.loads(line) for line in (data / "m.log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert max(r["valid_accuracy"] for r in log) >= 0.95
    best = rnncore.load(data / "m.best.safetensors")
    assert isinstance(best, rnncore.SequenceClassifier) and best.classes == ["neg", "pos"]
    assert isinstance(rnncore.load(data / "m.safetensors"), rnncore.SequenceClassifier)
    result = json.loads(run_cli("eval", "valid.tsv", "--model", "m.best.safetensors", "--json",
                                cwd=data).stdout)
    assert {"accuracy", "macro_f1", "examples", "loss"} <= set(result)
    assert result["examples"] == 80 and result["accuracy"] >= 0.95
    assert result["accuracy"] == pytest.approx(max(r["valid_accuracy"] for r in log))
    labels, texts = read_tsv(data / "valid.tsv")
    out = run_cli("predict", "--model", "m.best.safetensors", stdin="\n".join(texts) + "\n",
                  cwd=data).stdout.splitlines()
    assert out == best.predict(texts)
    line = run_cli("predict", "--model", "m.best.safetensors", "--proba", "--batch", "1",
                   stdin="a great film\n", cwd=data).stdout
    label, probs = line.rstrip("\n").split("\t")
    assert label == "pos" and set(json.loads(probs)) == {"neg", "pos"}
    text = run_cli("eval", "valid.tsv", "--model", "m.best.safetensors", cwd=data).stdout
    assert "accuracy" in text and "macro-F1" in text


def test_multi_label_end_to_end(tmp_path):
    synthetic(tmp_path / "train.tsv", 300, 2, multi_label=True)
    synthetic(tmp_path / "valid.tsv", 60, 3, multi_label=True)
    run_cli("train", "--train", "train.tsv", "--valid", "valid.tsv", "--multi-label", *ARGS,
            "--epochs", "6", "--pooling", "max", "--out", "ml.safetensors", cwd=tmp_path)
    model = rnncore.load(tmp_path / "ml.best.safetensors")
    assert model.multi_label and model.classes == ["dark", "fun", "none"]
    result = json.loads(run_cli("eval", "valid.tsv", "--model", "ml.best.safetensors", "--json",
                                cwd=tmp_path).stdout)
    assert result["accuracy"] >= 0.9  # every label of a text right
    out = run_cli("predict", "--model", "ml.best.safetensors",
                  stdin="a great night\nthe film\n", cwd=tmp_path).stdout
    assert out.splitlines()[0] == "dark,fun"


def test_resume_continues_bit_for_bit(data, tmp_path):
    common = ["--train", str(data / "train.tsv"), *ARGS, "--optimizer", "adam",
              "--dropout", "0.3"]  # valid held out of train (seeded)
    run_cli("train", *common, "--epochs", "2", "--out", "full.safetensors", cwd=tmp_path)
    run_cli("train", *common, "--epochs", "1", "--out", "half.safetensors", cwd=tmp_path)
    run_cli("train", "--resume", "half.safetensors", "--epochs", "2", "--no-progress",
            cwd=tmp_path)
    full, half = (rnncore.load(tmp_path / n) for n in ("full.safetensors", "half.safetensors"))
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(half.state_dict()[k], v, err_msg=k)
    logs = [[json.loads(x) for x in (tmp_path / n).read_text().splitlines()]
            for n in ("full.log.jsonl", "half.log.jsonl")]
    assert [r["valid_accuracy"] for r in logs[0]] == [r["valid_accuracy"] for r in logs[1]]


def test_patience_stops_early(data, tmp_path):
    proc = run_cli("train", "--train", str(data / "train.tsv"), "--valid",
                   str(data / "valid.tsv"), *ARGS, "--epochs", "30", "--patience", "1",
                   "--out", "p.safetensors", cwd=tmp_path)
    log = (tmp_path / "p.log.jsonl").read_text().splitlines()
    assert len(log) < 30 and "stopped early" in proc.stderr


@pytest.mark.parametrize("command, content, match", [
    ("train", "pos\tgreat\n\nneg\tbad\n", "bad.tsv, line 2: empty line"),
    ("train", "pos\tgreat\nneg bad\n", "bad.tsv, line 2: no tab"),
    ("train", "", "bad.tsv: no examples"),
    ("train", "pos\tgreat\npos\tfine\n", "at least 2 classes"),
    ("valid", "pos\tgreat\nmeh\tso so\n", "bad.tsv, line 2: unknown label 'meh'"),
    ("eval", "pos\tgreat\nneg\tbad\nmeh\tso so\n", "bad.tsv, line 3: unknown label 'meh'"),
    ("eval", "pos\tgreat\n\n", "bad.tsv, line 2: empty line"),
])
def test_bad_input_is_reported_clearly_and_nothing_is_written(data, tmp_path, command,
                                                              content, match):
    (tmp_path / "bad.tsv").write_text(content)
    if command == "train":
        args = ["train", "--train", "bad.tsv", *ARGS, "--out", "x.safetensors"]
    elif command == "valid":
        args = ["train", "--train", str(data / "train.tsv"), "--valid", "bad.tsv", *ARGS,
                "--out", "x.safetensors"]
    else:
        run_cli("train", "--train", str(data / "train.tsv"), *ARGS, "--epochs", "1",
                "--max-steps", "2", "--out", "m.safetensors", cwd=tmp_path)
        args = ["eval", "bad.tsv", "--model", "m.safetensors"]
    before = set(os.listdir(tmp_path))
    proc = run_cli(*args, cwd=tmp_path, ok=False)
    assert proc.returncode != 0 and match in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert set(os.listdir(tmp_path)) == before  # nothing written half-way


def test_predict_and_model_errors(data, tmp_path):
    run_cli("train", "--train", str(data / "train.tsv"), *ARGS, "--epochs", "1",
            "--max-steps", "2", "--out", "m.safetensors", cwd=tmp_path)
    proc = run_cli("predict", "--model", "m.safetensors", stdin="a film\n\nmore\n",
                   cwd=tmp_path, ok=False)
    assert proc.returncode != 0 and "<stdin>, line 2: empty line" in proc.stderr
    assert proc.stdout.splitlines() == [rnncore.load(tmp_path / "m.safetensors")
                                        .predict(["a film"])[0]]  # the lines before it
    lstm = rnncore.LSTM(4, 4, seed=0)
    rnncore.save(lstm, tmp_path / "layer.safetensors")
    for args, match in ((["eval", "x.tsv", "--model", "layer.safetensors"], "not a sequence"),
                        (["predict", "--model", "nope.safetensors"], "No such file"),
                        (["train", "--resume", "layer.safetensors"], "not a training checkpoint"),
                        (["train", "--train", "x.tsv", "--dropout", "1.5"], "dropout")):
        proc = run_cli(*args, cwd=tmp_path, stdin="", ok=False)
        assert proc.returncode != 0 and match in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_help_documents_the_tsv_format():
    proc = subprocess.run([sys.executable, "-m", "rnncore", "classify", "train", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert "label<TAB>text" in proc.stdout and "comma-separated" in proc.stdout


def vectors_file(path, words, dim=8, seed=0, extra=()):
    """A GloVe-format file: a vector per word ('great' far from the rest),
    then the `extra` words."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for w in list(words) + list(extra):
            v = rng.normal(0, 0.5, dim) + (2.0 if w == "great" else 0.0)
            f.write(w + " " + " ".join(f"{x:.5f}" for x in v) + "\n")
    return path


def test_pretrained_embeddings_frozen_and_fine_tuned(data, tmp_path):
    vec = vectors_file(tmp_path / "vec.txt", ["great"] + WORDS, extra=["superb", "'s", "a.m."])
    common = ["--train", str(data / "train.tsv"), "--valid", str(data / "valid.tsv"),
              *[a for a in ARGS if a not in ("--embed-size", "8")], "--epochs", "2",
              "--embeddings", str(vec)]
    proc = run_cli("train", *common, "--freeze-embeddings", "--vocab-from-embeddings", "100",
                   "--out", "frozen.safetensors", cwd=tmp_path)
    assert "vec.txt: vectors of dimension 8 for 17 of the 18 vocabulary words (frozen)" \
        in proc.stderr, proc.stderr  # 'superb' added; "'s" and 'a.m.' are never tokens
    model = rnncore.load(tmp_path / "frozen.safetensors")
    assert model.freeze_embedding and model.embed_size == 8
    assert model.vocab.tokens[-1] == "superb" and "'s" not in model.vocab.index
    words, vectors = rnncore.classify.vectors.read_vectors(vec)
    rows = dict(zip(words, vectors))
    for w in ["great", "superb"] + WORDS:  # frozen: exactly the file's vectors
        np.testing.assert_array_equal(model.params["embedding.weight"][model.vocab.index[w]],
                                      rows[w])
    run_cli("train", "--resume", "frozen.safetensors", "--epochs", "3", "--no-progress",
            cwd=tmp_path)
    again = rnncore.load(tmp_path / "frozen.safetensors")
    np.testing.assert_array_equal(again.params["embedding.weight"],
                                  model.params["embedding.weight"])
    run_cli("train", *common, "--out", "tuned.safetensors", cwd=tmp_path)
    tuned = rnncore.load(tmp_path / "tuned.safetensors")
    assert not tuned.freeze_embedding and len(tuned.vocab) == 17  # no 'superb'
    assert not np.array_equal(tuned.params["embedding.weight"][tuned.vocab.index["great"]],
                              rows["great"])
    log = [json.loads(line) for line in (tmp_path / "tuned.log.jsonl").read_text().splitlines()]
    assert max(r["valid_accuracy"] for r in log) >= 0.95


@pytest.mark.parametrize("content, extra, match", [
    ("great 1 2\nfilm 1\n", [], "vec.txt, line 2: 1 values, expected 2"),
    ("great 1 nan\n", [], "vec.txt, line 1 (word 'great'): a value is NaN"),
    ("", [], "vec.txt: no vectors"),
    ("great 1 2\n", ["--embed-size", "1"],
     "the vectors have dimension 2, more than --embed-size 1"),
    ("great 1 2\n", ["--embeddings-vocab", "v.txt"], "vocabulary file is only for .npy"),
])
def test_bad_embeddings_are_reported_and_nothing_is_written(data, tmp_path, content, extra,
                                                            match):
    (tmp_path / "vec.txt").write_text(content)
    before = set(os.listdir(tmp_path))
    proc = run_cli("train", "--train", str(data / "train.tsv"), "--embeddings", "vec.txt",
                   *extra, "--no-progress", "--out", "x.safetensors", cwd=tmp_path, ok=False)
    assert proc.returncode != 0 and match in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and set(os.listdir(tmp_path)) == before
    proc = run_cli("train", "--train", str(data / "train.tsv"), "--freeze-embeddings",
                   cwd=tmp_path, ok=False)
    assert proc.returncode != 0 and "need --embeddings FILE" in proc.stderr


def test_weight_average_validates_the_average_and_resumes_bit_for_bit(data, tmp_path):
    common = ["--train", str(data / "train.tsv"), *ARGS, "--optimizer", "adamw",
              "--average", "0.9"]
    run_cli("train", *common, "--epochs", "2", "--out", "full.safetensors", cwd=tmp_path)
    run_cli("train", *common, "--epochs", "1", "--out", "half.safetensors", cwd=tmp_path)
    # after one epoch the best model is the average the checkpoint holds, not its weights
    raw, training, arrays = rnncore.files.read_checkpoint(tmp_path / "half.safetensors")
    best = rnncore.load(tmp_path / "half.best.safetensors").state_dict()
    assert training["average"]["count"] == training["history"][0]["steps"]
    for k, v in best.items():
        np.testing.assert_array_equal(v, arrays["average/0." + k], err_msg=k)
    assert not np.array_equal(best["fc.weight"], raw.state_dict()["fc.weight"])
    run_cli("train", "--resume", "half.safetensors", "--epochs", "2", "--no-progress",
            cwd=tmp_path)
    for suffix in (".safetensors", ".best.safetensors"):
        full, half = (rnncore.load(tmp_path / (n + suffix)) for n in ("full", "half"))
        for k, v in full.state_dict().items():
            np.testing.assert_array_equal(half.state_dict()[k], v, err_msg=k + suffix)
    logs = [[json.loads(x) for x in (tmp_path / n).read_text().splitlines()]
            for n in ("full.log.jsonl", "half.log.jsonl")]
    assert [r["valid_loss"] for r in logs[0]] == [r["valid_loss"] for r in logs[1]]
    proc = run_cli("train", *common, "--average", "1.0", cwd=tmp_path, ok=False)
    assert proc.returncode != 0 and "average must be in [0, 1)" in proc.stderr
