"""The benchmark machinery: its ONNX export computes what rnncore computes
(so ONNX Runtime is timed on the same model), its workers report sane
numbers, and the roofline floor follows its definition."""
import json
import subprocess
import sys

import numpy as np
import pytest

import rnncore
from rnncore.tools import bench
from conftest import ATOL, C_OPS, RTOL

needs_c = pytest.mark.skipif(C_OPS is None, reason="rnncore bench times the C extension")


@pytest.mark.parametrize("cell", bench.CELLS)
def test_onnx_model_matches_rnncore(cell):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    H = 24
    sd = bench.state_dict(cell, H, seed=3)
    layer = getattr(rnncore, cell)(H, H)
    layer.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((7, 3, H)).astype(np.float32)
    session = ort.InferenceSession(bench.onnx_model(cell, H, sd), providers=["CPUExecutionProvider"])
    (y_onnx,) = session.run(None, {"X": x})
    np.testing.assert_allclose(y_onnx[:, 0], layer(x)[0], rtol=RTOL, atol=ATOL)


@needs_c
def test_worker_protocol(tmp_path):
    w = bench._Worker("rnncore", 1)
    try:
        assert w.ask({"case": ["GRU", 5, 2, 32, "forward", 1]}) == {"ready": True}
        assert w.ask({"time": True})["ms"] > 0
        assert w.ask({"case": ["LSTM", 5, 2, 32, "train", 2]}) == {"ready": True}
        assert w.ask({"time": True})["ms"] > 0
    finally:
        w.close()
    assert w.proc.returncode == 0


def test_floor_definition():
    probe = {"peak_gflops": 100.0, "l2_gbps": 100.0, "l3_gbps": 50.0, "dram_gbps": 20.0}
    machine = {"l2_bytes": 1 << 20, "l3_bytes": 32 << 20}
    # LSTM H=512: 4 MB of recurrent weights -> L3 at 1 thread, 50 GB/s
    T, N, H = 100, 1, 512
    f_in, f_rec = bench.flops("LSTM", T, N, H)
    expected = f_in / 100e9 + T * max(f_rec / T / 100e9, 4 * 4 * H * H / 50e9)
    assert bench.floor_ms("LSTM", T, N, H, 1, probe, machine) == pytest.approx(expected * 1e3)
    # N = 64: compute-bound, the floor is the FLOPs at peak
    f_in, f_rec = bench.flops("LSTM", T, 64, H)
    assert bench.floor_ms("LSTM", T, 64, H, 1, probe, machine) == pytest.approx((f_in + f_rec) / 100e9 * 1e3)


@needs_c
def test_quick_bench_command(tmp_path):
    report_path = tmp_path / "r.json"
    out = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--probe-seconds", "0.02",
                          "--cells", "LSTM", "--hidden", "32",
                          "--batch", "2", "--steps", "4", "--threads", "1", "--repeat", "3",
                          "--backends", "rnncore", "reference", "--json", str(report_path)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "lstm_t4_n2_i32_h32" in out.stdout and "peak" in out.stderr
    report = json.loads(report_path.read_text())
    row = report["rows"][0]
    assert set(row["ms"]) == {"rnncore", "reference"} and row["gflops"] > 0
    assert report["probes"]["1"]["peak_gflops"] > 0


def test_train_flops_definition():
    # per layer: 2 forward GEMMs + 3 backward ones, + dx for layers above the first
    one = 2.0 * 35 * 64 * 4 * 512 * 512
    assert bench.train_flops("LSTM", 35, 64, 512, 2) == pytest.approx(11 * one)
    assert bench.train_flops("RNN", 35, 64, 512, 1) == pytest.approx(5 * one / 4)


@needs_c
def test_train_bench_command(tmp_path):
    report_path = tmp_path / "r.json"
    out = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--probe-seconds", "0.02",
                          "--train", "--cells", "GRU",
                          "--hidden", "32", "--batch", "2", "--steps", "4", "--threads", "1",
                          "--repeat", "3", "--backends", "rnncore", "reference",
                          "--json", str(report_path)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "train_gru_l2_t4_n2_h32" in out.stdout
    row = json.loads(report_path.read_text())["rows"][0]
    assert row["kind"] == "train" and row["layers"] == 2 and set(row["ms"]) == {"rnncore", "reference"}
    assert 0 < row["pct_peak"] and row["floor_ms"] > 0
    bad = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--probe-seconds", "0.02",
                          "--train", "--backends",
                          "onnxruntime"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode != 0 and "cannot" not in bad.stdout
    bad = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--probe-seconds", "0"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode != 0 and "--probe-seconds must be in (0, 60]" in bad.stderr


@pytest.mark.parametrize("cell", bench.CELLS)
def test_onnx_stateful_graph_carries_the_state_like_step(cell):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    H = 16
    sd = bench.state_dict(cell, H, seed=4)
    layer = getattr(rnncore, cell)(H, H)
    layer.load_state_dict(sd)
    session = ort.InferenceSession(bench.onnx_model(cell, H, sd, with_state=True),
                                   providers=["CPUExecutionProvider"])
    names = ["initial_h", "initial_c"] if cell == "LSTM" else ["initial_h"]
    x = np.random.default_rng(2).standard_normal((5, 2, H)).astype(np.float32)
    feeds = {n: np.zeros((1, 2, H), np.float32) for n in names}
    state = None
    for t in range(5):
        out = session.run(None, {"X": x[t:t + 1], **feeds})
        feeds.update(zip(names, out[1:]))
        y, state = layer.step(x[t], state)
        np.testing.assert_allclose(out[0][0, 0], y, rtol=RTOL, atol=ATOL)


@needs_c
def test_step_bench_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--probe-seconds", "0.02",
                          "--step", "--cells", "LSTM",
                          "--hidden", "32", "--threads", "1", "--repeat", "3",
                          "--backends", "rnncore", "reference", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "step_lstm_n1_h32" in out.stdout and "rnncore us" in out.stdout
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert row["kind"] == "step" and row["us"]["rnncore"] > 0 and row["floor_us"] > 0


@needs_c
def test_bench_workers_import_the_installed_package(tmp_path):
    """From a folder holding another `rnncore` (a source checkout: the
    README runs `rnncore bench` from one), the workers still import the
    package the command runs, never the folder's."""
    import os
    exe = os.path.join(os.path.dirname(sys.executable), "rnncore")  # this environment's command
    if not os.path.exists(exe):
        pytest.skip("the rnncore command is not installed beside this Python")
    fake = tmp_path / "rnncore"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('imported the wrong rnncore')\n")
    out = subprocess.run([exe, "bench", "--probe-seconds", "0.02",
                          "--cells", "GRU", "--hidden", "16", "--batch", "2",
                          "--steps", "3", "--threads", "1", "--repeat", "3", "--backends", "rnncore"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "gru_t3_n2_i16_h16" in out.stdout and "rnncore ms" in out.stdout, out.stdout


@pytest.mark.skipif(C_OPS is not None, reason="runs where the extension is missing")
def test_bench_without_the_extension_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--quick"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0 and "rnncore bench: needs the C extension" in out.stderr


@needs_c
def test_int8_step_bench_command(tmp_path):
    """--dtype int8: the int8 copy is the row's reference (ratios, floor at
    one byte a weight), fp32 rnncore beside it; ORT's quantizer has no GRU,
    so that backend shows "-" for it."""
    pytest.importorskip("onnxruntime.quantization")
    out = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--probe-seconds", "0.02",
                          "--step", "--dtype", "int8", "--cells", "GRU", "LSTM", "--hidden", "32",
                          "--threads", "1", "--repeat", "3",
                          "--backends", "rnncore-int8", "rnncore", "ort-int8",
                          "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| int8 us | rnncore us |" in out.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["primary"] == "rnncore-int8" and report["dtype"] == "int8"
    gru, lstm = report["rows"]
    assert set(gru["us"]) == {"rnncore-int8", "rnncore"}  # no int8 GRU in ONNX Runtime
    assert set(lstm["us"]) == {"rnncore-int8", "rnncore", "ort-int8"}
    assert set(lstm["speedup"]) == {"rnncore", "ort-int8"}


@needs_c
def test_int8_bench_is_inference_only():
    with pytest.raises(SystemExit, match="inference only"):
        bench.main_from_args(bench_args(["--train", "--dtype", "int8"]))


def bench_args(argv):
    import argparse
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)
