"""The embedded default model (rnncore/models/shakespeare-char.safetensors):
installed with the package, loadable, small, used by `rnncore generate` and
`rnncore eval` when no --model is given; its held-out loss on Tiny
Shakespeare (slow test: the whole last 10 %)."""
import json
import os
import subprocess
import sys

import pytest

import rnncore
from rnncore.files import DEFAULT_MODEL
from rnncore.lm.text import read_text

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                    "tinyshakespeare", "input.txt")


def test_is_installed_small_and_loads():
    assert os.path.getsize(DEFAULT_MODEL) < 8 << 20
    lm = rnncore.load(DEFAULT_MODEL)
    assert isinstance(lm, rnncore.LanguageModel) and lm.vocab.level == "char"
    assert {"R", "O", "M", "E", ":", "\n"} <= set(lm.vocab.tokens)


def test_generate_and_eval_use_it(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rnncore", "generate", "ROMEO:", "--max-tokens",
                          "60", "--seed", "1"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ROMEO:") and len(out.stdout) == len("ROMEO:") + 61
    sample = tmp_path / "s.txt"
    sample.write_text("KING HENRY:\nWhat say you, my lords? Shall we to France?\n" * 3)
    res = subprocess.run([sys.executable, "-m", "rnncore", "eval", str(sample), "--json"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["tokens"] == len(sample.read_text()) - 1 and result["loss"] < 2.0


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(DATA), reason="needs ../shared/data")
def test_held_out_loss_is_at_most_1_50_nats_per_char():
    text = read_text(DATA)
    lm = rnncore.load(DEFAULT_MODEL)
    valid = text[int(len(text) * 0.9):]
    result = lm.evaluate(lm.vocab.encode(valid))
    assert result["loss"] <= 1.50, result


def test_generate_stops_quietly_when_the_reader_closes_the_pipe():
    """`rnncore generate | head -c 50`: the reader leaves early; the command
    ends with status 0 and no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "rnncore", "generate", "ROMEO:",
                             "--max-tokens", "20000", "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    with proc:
        head = proc.stdout.read(50)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0, err
    assert head.startswith(b"ROMEO:") and "Traceback" not in err
