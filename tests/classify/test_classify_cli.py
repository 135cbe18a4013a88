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
