"""``rnncore seq2seq train | translate | eval`` end to end: a synthetic task
(reversing random letter sequences) learned to >= 99 % exact match in
seconds, through attention, padding masks and beam search; resuming; and
bad input refused with the file and line named, nothing written."""
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from rnncore.tools import cli

LETTERS = list("abcdefghij")


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _reversal(tmp_path, name, n, seed):
    rng = np.random.default_rng(seed)
    src = [" ".join(rng.choice(LETTERS, rng.integers(3, 9))) for _ in range(n)]
    tgt = [" ".join(s.split()[::-1]) for s in src]
    return _write(tmp_path / f"{name}.src", src), _write(tmp_path / f"{name}.tgt", tgt)


def _log(out):
    return [json.loads(line) for line in
            Path(out.replace(".safetensors", ".log.jsonl")).read_text().splitlines()]


def _run(argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    return cli.main(argv)


TRAIN = ["--tokenizer", "word", "--embed-size", "32", "--hidden-size", "64", "--batch", "32",
         "--lr", "3e-3", "--dropout", "0", "--label-smoothing", "0", "--threads", "1",
         "--no-progress", "--seed", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained on the task through the command line (module-wide)."""
    tmp = tmp_path_factory.mktemp("reversal")
    src, tgt = _reversal(tmp, "train", 3000, 0)
    vsrc, vtgt = _reversal(tmp, "valid", 200, 1)
    out = str(tmp / "m.safetensors")
    assert cli.main(["seq2seq", "train", "--src", src, "--tgt", tgt, "--valid-src", vsrc,
                     "--valid-tgt", vtgt, "--out", out, "--epochs", "4"] + TRAIN) == 0
    return tmp, out, vsrc, vtgt


def test_the_reversal_task_is_learned_through_the_command_line(trained, capsys, monkeypatch):
    tmp, out, vsrc, vtgt = trained
    best = out.replace(".safetensors", ".best.safetensors")
    log = _log(out)  # the best epoch's model is the one kept (Adam may overshoot later)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4] and min(r["valid_loss"] for r in log) < 0.1
    src = Path(vsrc).read_text().splitlines()
    ref = Path(vtgt).read_text().splitlines()
    capsys.readouterr()
    for beam in ("1", "4"):
        _run(["seq2seq", "translate", "--model", best, "--beam", beam, "--batch", "50"],
             "\n".join(src) + "\n", monkeypatch)
        hyps = capsys.readouterr().out.splitlines()
        assert len(hyps) == len(src)
        exact = np.mean([h == r for h, r in zip(hyps, ref)])
        assert exact >= 0.99, (beam, exact)
    # an empty line gives an empty translation, keeping the lines aligned
    _run(["seq2seq", "translate", "--model", best], "a b c\n\nd e\n", monkeypatch)
    assert capsys.readouterr().out.splitlines() == ["c b a", "", "e d"]


def test_eval_reports_bleu_and_chrf(trained, capsys):
    pytest.importorskip("sacrebleu", reason="BLEU needs sacrebleu (the seq2seq extra)")
    tmp, out, vsrc, vtgt = trained
    assert max(r["valid_bleu"] for r in _log(out)) > 95
    best = out.replace(".safetensors", ".best.safetensors")
    _run(["seq2seq", "eval", "--model", best, "--src", vsrc, "--ref", vtgt, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"bleu", "chrf", "sentences"} and result["sentences"] == 200
    assert result["bleu"] > 95


def test_resume_continues_the_run(trained, tmp_path):
    src, tgt = _reversal(tmp_path, "train", 300, 2)
    out = str(tmp_path / "r.safetensors")
    base = ["seq2seq", "train", "--src", src, "--tgt", tgt, "--out", out] + TRAIN
    assert cli.main(base + ["--epochs", "1"]) == 0
    assert cli.main(["seq2seq", "train", "--resume", out, "--epochs", "2", "--no-progress"]) == 0
    assert [r["epoch"] for r in _log(out)] == [1, 2]


@pytest.mark.parametrize("problem, message", [
    ("empty_line", r"train\.src:2: empty line"),
    ("counts", r"has 3 lines but .* has 2"),
    ("empty_file", r"train\.src: empty file"),
    ("too_long", r"train\.src:1: 12 tokens, more than --max-len 10"),
    ("not_utf8", r"train\.tgt:1: not UTF-8"),
])
def test_bad_training_input_names_the_file_and_line(problem, message, tmp_path):
    src, tgt = ["a b", "c d", "e f"], ["b a", "d c", "f e"]
    raw_tgt = None
    if problem == "empty_line":
        src[1] = " "
    elif problem == "counts":
        tgt = tgt[:2]
    elif problem == "empty_file":
        src = []
    elif problem == "too_long":
        src[0] = " ".join(["a"] * 12)
    else:
        raw_tgt = b"\xff\xfe b a\n" + b"d c\nf e\n"
    src_path = _write(tmp_path / "train.src", src)
    tgt_path = str(tmp_path / "train.tgt")
    if raw_tgt is None:
        _write(tmp_path / "train.tgt", tgt)
    else:
        (tmp_path / "train.tgt").write_bytes(raw_tgt)
    out = tmp_path / "m.safetensors"
    with pytest.raises(SystemExit, match=message):
        cli.main(["seq2seq", "train", "--src", src_path, "--tgt", tgt_path, "--out", str(out),
                  "--max-len", "10"] + TRAIN)
    assert not out.exists() and not list(tmp_path.glob(".rnncore-*"))


def test_translate_and_eval_refuse_what_is_not_theirs(trained, tmp_path, monkeypatch):
    tmp, out, vsrc, vtgt = trained
    with pytest.raises(SystemExit, match="not a valid rnncore model file"):
        cli.main(["seq2seq", "translate", "--model", vsrc])
    short = _write(tmp_path / "short.ref", ["a"])
    with pytest.raises(SystemExit, match="has 200 lines but .* has 1"):
        cli.main(["seq2seq", "eval", "--model", out, "--src", vsrc, "--ref", short])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a b\n\xff\n")))
    with pytest.raises(SystemExit, match="stdin line 2: not UTF-8"):
        cli.main(["seq2seq", "translate", "--model", out])
