"""Whole models exported by torch.onnx.export (both exporters: TorchScript,
and dynamo where onnxscript is installed), with the layers around the
recurrent ones, run by rnncore.from_onnx and compared with the torch module
and with ONNX Runtime on the same file.

Tolerance: float32 end to end; the recurrent layers agree with torch to
RTOL/ATOL of conftest, and the layers around them (embedding lookups,
matrix products over at most 64 inputs, log-softmax) add float32 rounding
of the same order: rtol 1e-4, atol 1e-5."""
import io
import warnings

import numpy as np
import pytest

import rnncore

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

TOL = dict(rtol=1e-4, atol=1e-5)


class LanguageModel(torch.nn.Module):
    """Embedding -> 2 x bidirectional LSTM -> Linear -> log_softmax."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 16)
        self.rnn = torch.nn.LSTM(16, 32, num_layers=2, bidirectional=True)
        self.out = torch.nn.Linear(64, 50)

    def forward(self, ids):
        y, _ = self.rnn(self.emb(ids))
        return torch.log_softmax(self.out(y), -1)


class Classifier(torch.nn.Module):
    """Embedding -> GRU (batch first) -> mean pooling -> Linear -> sigmoid."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 8)
        self.rnn = torch.nn.GRU(8, 16, batch_first=True)
        self.out = torch.nn.Linear(16, 1)

    def forward(self, ids):
        y, _ = self.rnn(self.emb(ids))
        return torch.sigmoid(self.out(y.mean(1)))


class ReluRNN(torch.nn.Module):
    """A vanilla RNN with relu and a linear head on its last state."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.RNN(5, 12, nonlinearity="relu", num_layers=2)
        self.out = torch.nn.Linear(12, 3)

    def forward(self, x):
        _, h = self.rnn(x)
        return self.out(h[-1])


def _export(module, example, exporter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
            dims = {0: torch.export.Dim("a"), 1: torch.export.Dim("b")}
            program = torch.onnx.export(module, (example,), dynamo=True, input_names=["x"],
                                        output_names=["y"], dynamic_shapes=(dims,))
            return program.model_proto.SerializeToString()
        f = io.BytesIO()
        torch.onnx.export(module, (example,), f, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "a", 1: "b"}})
        return f.getvalue()


def _ids(shape):
    return torch.randint(0, 50, shape)


@pytest.mark.parametrize("make, sample, shapes", [
    (LanguageModel, _ids, [(7, 3), (4, 5), (1, 1)]),
    (Classifier, _ids, [(3, 9), (5, 2)]),
    (ReluRNN, lambda shape: torch.randn(*shape, 5), [(6, 4), (2, 7)]),
], ids=["lstm_lm", "gru_classifier", "relu_rnn"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_exported_model_matches_torch_and_onnxruntime(make, sample, shapes, exporter):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    module = make().eval()
    data = _export(module, sample(shapes[0]), exporter)
    session = rnncore.from_onnx(onnx.load_from_string(data))
    reference = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    if exporter == "dynamo":
        # this exporter specialises the sequence length (a Reshape to (7, -1, 64),
        # an RNN unrolled over its 6 steps): its graphs hold for the export's sizes
        shapes = shapes[:1]
    for shape in shapes:  # the export's sizes and others (the axes are dynamic)
        x = sample(shape)
        got = session.run(None, {"x": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, module(x).numpy(), **TOL)
        np.testing.assert_allclose(got, reference.run(None, {"x": x.numpy()})[0], **TOL)


class ProjectedLSTM(torch.nn.Module):
    """An LSTM with proj_size (2 layers, bidirectional) and a linear head."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(6, 20, num_layers=2, bidirectional=True, proj_size=5)
        self.out = torch.nn.Linear(10, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)


def test_lstm_with_proj_size_through_rnncores_export():
    """torch.onnx.export has no graph for proj_size: the TorchScript exporter
    refuses it, the dynamo exporter writes an LSTM node of hidden_size R whose
    Concat ranks do not fit (ONNX Runtime and from_onnx refuse it at load).
    rnncore's own to_onnx (a Scan per layer-direction) carries it: from_onnx
    and ONNX Runtime run that file to the torch module's results."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    module = ProjectedLSTM().eval()
    x = torch.randn(7, 3, 6)
    with pytest.raises(Exception, match="projections"):
        _export(module, x, "torchscript")
    try:
        data = _export(module, x, "dynamo")
    except Exception:  # a later torch may refuse instead; either way no graph to run
        data = None
    if data is not None:
        with pytest.raises(ValueError, match="shapes or types do not fit"):
            rnncore.from_onnx(onnx.load_from_string(data))
    layer = rnncore.from_torch(module.rnn)
    model = layer.to_onnx()
    session = rnncore.from_onnx(model)
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = module.rnn(x)
    for shape in [(7, 3), (1, 1), (12, 2)]:
        xs = torch.randn(*shape, 6)
        with torch.no_grad():
            y, (h, c) = module.rnn(xs)
        got = session.run(None, {"X": xs.numpy()})
        for g, w in zip(got, (y, h, c)):
            np.testing.assert_allclose(g, w.numpy(), **TOL)
        for g, r in zip(got, reference.run(None, {"X": xs.numpy()})):
            np.testing.assert_allclose(g, r, **TOL)
    assert want[0].shape == (7, 3, 10)
