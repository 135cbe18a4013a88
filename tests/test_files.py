"""Model files: save/load round trips, atomic writes, and malformed or
hostile files rejected with a clear error (never executed, never a crash)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rnncore
from conftest import backend, call, make_layer

pytest.importorskip("safetensors")
from safetensors.numpy import save_file  # noqa: E402


@pytest.mark.parametrize("mode", ["RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU_RB",
                                  "LSTM_PEEPHOLE_CIFG"])
def test_round_trip(mode, tmp_path, rng):
    layer = make_layer(mode, 5, 7, num_layers=2, bidirectional=True, batch_first=True,
                       dropout=0.25, seed=1)
    path = rnncore.save(layer, tmp_path / "m.safetensors")
    back = rnncore.load(path)
    assert type(back) is type(layer) and back.mode == layer.mode and back.dropout == 0.25
    assert repr(back) == repr(layer)
    assert back.batch_first and back.bidirectional and back.num_layers == 2
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(call(back, x)[0], call(layer, x)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left


def write(path, tensors, metadata):
    save_file(tensors, str(path), metadata=metadata)
    return path


def good_metadata(kind="GRU", **changes):
    cfg = {"input_size": 3, "hidden_size": 4, "num_layers": 1, "bias": True,
           "batch_first": False, "dropout": 0.0, "bidirectional": False, "reset_after": True}
    cfg.update(changes)
    return {"format": "rnncore", "format_version": "1", "kind": kind, "config": json.dumps(cfg)}


def gru_tensors(H=4, I=3, dtype=np.float32):
    return {"weight_ih_l0": np.zeros((3 * H, I), dtype), "weight_hh_l0": np.zeros((3 * H, H), dtype),
            "bias_ih_l0": np.zeros(3 * H, dtype), "bias_hh_l0": np.zeros(3 * H, dtype)}


def test_malformed_files_are_rejected_clearly(tmp_path):
    path = tmp_path / "m.safetensors"
    rnncore.save(rnncore.GRU(3, 4, seed=0), path)
    data = path.read_bytes()
    cases = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "header only": data[:8],
        "oversized header": (1 << 62).to_bytes(8, "little") + data[8:],
        "garbage": os.urandom(256),
        "pickle": b"\x80\x04\x95" + os.urandom(64),
    }
    flipped = bytearray(data)
    flipped[12] ^= 0xFF
    cases["bit-flipped header"] = bytes(flipped)
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(blob)
        with pytest.raises(ValueError, match="not a valid rnncore model file"):
            rnncore.load(bad)
    hostile = {
        "no metadata": (gru_tensors(), None),
        "other format": (gru_tensors(), {"format": "pt"}),
        "unknown kind": (gru_tensors(), good_metadata(kind="os.system")),
        "config not json": (gru_tensors(), dict(good_metadata(), config="__import__('os')")),
        "config wrong type": (gru_tensors(), good_metadata(hidden_size="4")),
        "config extra key": (gru_tensors(), good_metadata(exec="rm -rf /")),
        "absurd sizes": (gru_tensors(), good_metadata(hidden_size=10 ** 12)),
        "absurd depth": (gru_tensors(), good_metadata(num_layers=10 ** 12)),
        "negative size": (gru_tensors(), good_metadata(hidden_size=-4)),
        "wrong dtype": (gru_tensors(dtype=np.float64), good_metadata()),
        "wrong shape": (gru_tensors(H=5), good_metadata()),
        "missing tensor": ({k: v for k, v in gru_tensors().items() if k != "bias_hh_l0"},
                           good_metadata()),
        "extra tensor": (dict(gru_tensors(), evil=np.zeros(1, np.float32)), good_metadata()),
    }
    for name, (tensors, metadata) in hostile.items():
        bad = write(tmp_path / f"{name}.safetensors", tensors, metadata)
        with pytest.raises(ValueError, match="not a valid rnncore model file"):
            rnncore.load(bad)
    with pytest.raises(FileNotFoundError):
        rnncore.load(tmp_path / "nope.safetensors")
    with pytest.raises(TypeError, match="model must be"):
        rnncore.save(object(), tmp_path / "x.safetensors")


def test_a_save_killed_midway_leaves_the_previous_file(tmp_path):
    """A child process saves a big model over a good file and is SIGKILLed
    while writing: the old file still loads."""
    path = tmp_path / "m.safetensors"
    rnncore.save(rnncore.LSTM(3, 4, seed=0), path)
    child = textwrap.dedent(f"""
        import sys, rnncore
        import rnncore.files as st  # the module whose save_file writes
        real = st.save_file
        def slow(tensors, filename, metadata=None):
            real(tensors, filename, metadata=metadata)
            print("written", flush=True)
            import time; time.sleep(60)
        st.save_file = slow
        rnncore.save(rnncore.LSTM(64, 512, num_layers=2, seed=1), {str(path)!r})
    """)
    with subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "written"  # temporary complete, not renamed
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    back = rnncore.load(path)
    assert back.input_size == 3 and back.hidden_size == 4


OLD_FILES = Path(__file__).resolve().parent / "golden" / "files"


@pytest.mark.parametrize("name", sorted(json.loads((OLD_FILES / "expected.json").read_text())))
def test_files_written_before_the_layout_change_load(name):
    """Model files the code before the package layout change wrote (layers of
    several kinds and variants, a float16 language model) load and give the
    answers that code gave, bit for bit on the reference backend."""
    expected = json.loads((OLD_FILES / "expected.json").read_text())[name]
    model = rnncore.load(OLD_FILES / name)
    with backend("reference"):
        if isinstance(model, rnncore.LanguageModel):
            vocab_text = "abc abd\nbca\n"
            assert model.evaluate(model.vocab.encode(vocab_text))["loss"] == expected["loss"]
        else:
            x = np.array(expected["x"], np.float32)
            np.testing.assert_array_equal(model(x)[0], np.array(expected["y"], np.float32))
