"""from_onnx on ONNX Runtime's quantized LSTM (com.microsoft.DynamicQuantizeLSTM,
what onnxruntime.quantization.quantize_dynamic writes): the node's own int8
weights and scales run on rnncore's int8 kernels; the outputs agree with ONNX
Runtime's int8 run to within activation quantization (the two quantize
activations differently: ONNX Runtime asymmetric u8 per tensor, rnncore
symmetric per row), i.e. as closely as either agrees with float32."""
import numpy as np
import pytest

import rnncore

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
quantization = pytest.importorskip("onnxruntime.quantization")


def _quantized_lstm(tmp_path, H, per_channel, bidirectional=False):
    layer = rnncore.LSTM(H, H, bidirectional=bidirectional, seed=0)
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    layer.to_onnx(str(src), initial_state=True)
    quantization.quantize_dynamic(str(src), str(dst), weight_type=quantization.QuantType.QInt8,
                                  per_channel=per_channel)
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert "DynamicQuantizeLSTM" in ops, ops
    return layer, src, dst


@pytest.mark.parametrize("H,per_channel,bidirectional", [(16, False, False), (33, True, False),
                                                         (24, False, True)])
def test_dynamic_quantize_lstm_matches_onnxruntime(tmp_path, H, per_channel, bidirectional):
    layer, src, dst = _quantized_lstm(tmp_path, H, per_channel, bidirectional)
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    float_session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    sizes = {"T": 5, "N": 3}
    feeds = {i.name: rng.uniform(-1, 1, [sizes.get(d, d) for d in i.shape]).astype(np.float32)
             for i in session.get_inputs()}
    ours = rnncore.from_onnx(str(dst)).run(None, feeds)
    theirs = session.run(None, feeds)
    floats = float_session.run(None, feeds)
    for a, b, f in zip(ours, theirs, floats):
        their_error = np.abs(b - f).max()
        assert np.abs(a - b).max() <= 3 * their_error + 1e-3
        assert np.abs(a - f).max() <= 2 * their_error + 1e-3


def test_int8_weights_taken_as_they_are(tmp_path):
    layer, _, dst = _quantized_lstm(tmp_path, 8, False)
    model = rnncore.from_onnx(str(dst))
    from onnx import numpy_helper
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(dst)).graph.initializer}
    node = next(s for s in model.graph.steps if getattr(s, "int8", False))
    q = node.layers[0]
    assert q.dtype == "int8"
    w_onnx = next(v for k, v in inits.items() if v.dtype == np.int8 and v.ndim == 3)
    assert sorted(q.weight_ih_l0.ravel().tolist()) == sorted(w_onnx.ravel().tolist()) or \
        sorted(q.weight_hh_l0.ravel().tolist()) == sorted(w_onnx.ravel().tolist())
