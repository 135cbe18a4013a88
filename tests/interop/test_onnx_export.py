"""layer.to_onnx(): ONNX Runtime computes what rnncore computes, for every cell
and variant, stacked, bidirectional, both layouts, with initial states."""
import numpy as np
import pytest

from conftest import ATOL, RTOL, call, make_layer

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU_RB", "LSTM_PEEPHOLE", "LSTM_CIFG",
         "LSTM_PEEPHOLE_CIFG"]


@pytest.mark.parametrize("config", [dict(num_layers=2, bidirectional=True, batch_first=True),
                                    dict(num_layers=1, bias=False)], ids=["stacked", "plain"])
@pytest.mark.parametrize("mode", MODES)
def test_onnx_runtime_matches(mode, config, tmp_path, rng):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    layer = make_layer(mode, 5, 7, seed=2, **config)
    path = tmp_path / "m.onnx"
    layer.to_onnx(path, initial_state=True)
    L, D = layer.num_layers, layer.num_directions
    x = rng.standard_normal((3, 6, 5) if layer.batch_first else (6, 3, 5)).astype(np.float32)
    h0 = rng.standard_normal((L * D, 3, 7)).astype(np.float32)
    c0 = rng.standard_normal((L * D, 3, 7)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lstm = layer.mode == "LSTM"
    feeds = {"X": x, "initial_h": h0, **({"initial_c": c0} if lstm else {})}
    got = session.run(None, feeds)
    want = call(layer, x, h0, c0)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    plain = ort.InferenceSession(layer.to_onnx().SerializeToString(),
                                 providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(plain.run(None, {"X": x})[0], call(layer, x)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("config", [dict(num_layers=2, bidirectional=True, batch_first=True),
                                    dict(peephole=True, input_forget=True, bias=False)],
                         ids=["stacked", "variants"])
@pytest.mark.parametrize("initial_state", [False, True])
def test_projected_lstm_exports_as_scan(config, initial_state, rng):
    """proj_size has no ONNX operator: a Scan per layer-direction, which ONNX
    Runtime runs to rnncore's results."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import rnncore
    layer = rnncore.LSTM(5, 9, proj_size=4, seed=1, **config)
    L, D = layer.num_layers, layer.num_directions
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)
    N = 3 if layer.batch_first else 6
    h0 = rng.standard_normal((L * D, N, 4)).astype(np.float32)
    c0 = rng.standard_normal((L * D, N, 9)).astype(np.float32)
    model = layer.to_onnx(initial_state=initial_state)
    assert "Scan" in {n.op_type for n in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"X": x, **({"initial_h": h0, "initial_c": c0} if initial_state else {})})
    y, (h, c) = layer(x, (h0, c0) if initial_state else None)
    for a, b in zip(got, (y, h, c)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
