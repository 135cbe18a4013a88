"""Shared fixtures: seeded data, the independent float64 oracle for stacked
layers, tolerances and backend switching."""
import os

import numpy as np
import pytest

import rnncore
from rnncore import _api, reference

# The compiled backend must be the one under test unless the run asks for the
# reference explicitly: a missing extension must fail loudly, not fall back.
if os.environ.get("RNNCORE_BACKEND", "").lower() != "reference":
    assert rnncore.backend() == "c", f"C extension not loaded: {_api._CORE_ERROR}"

# float32 kernels against the float64 reference. Sums run over at most
# I + H = 97 terms of O(1) values per gate, nine steps and three layers deep;
# float32 rounding (6e-8 relative) accumulates to ~1e-6 there, and the
# activation approximations add <= 2.4e-7 (see csrc/src/activations.h).
RTOL, ATOL = 1e-4, 1e-5

CLASSES = {"RNN_TANH": rnncore.RNN, "RNN_RELU": rnncore.RNN, "LSTM": rnncore.LSTM,
           "GRU": rnncore.GRU, "GRU_RB": rnncore.GRU,
           # test names of the LSTM variants (their layers' mode is "LSTM")
           "LSTM_PEEP": rnncore.LSTM, "LSTM_CIFG": rnncore.LSTM, "LSTM_PEEP_CIFG": rnncore.LSTM}
VARIANTS = {"GRU_RB": {"reset_after": False}, "LSTM_PEEP": {"peephole": True},
            "LSTM_CIFG": {"input_forget": True},
            "LSTM_PEEP_CIFG": {"peephole": True, "input_forget": True}}


def make_layer(mode, I, H, **kw):
    cls = CLASSES[mode]
    if mode.startswith("RNN"):
        kw.setdefault("nonlinearity", "tanh" if mode == "RNN_TANH" else "relu")
    kw.update(VARIANTS.get(mode, {}))
    return cls(I, H, **kw)


ISAS = ([i for i in _api._core.compiled_isas() if _api._core.isa_available(i)]
        if _api._core is not None else [])


@pytest.fixture(params=ISAS or [None])
def isa(request):
    """Run the test once per CPU path this machine offers (avx512, avx2, generic)."""
    if request.param is None:
        pytest.skip("C extension not built")
    saved = _api._core.isa()
    _api._core.set_isa(request.param)
    yield request.param
    _api._core.set_isa(saved)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def backend(name):
    """Run the layers on `name` ('c' or 'reference') inside the block."""
    if name == "c" and _api._core is None:
        pytest.skip("C extension not built")
    return _api.using_backend(name)


def oracle(layer, x, h0=None, c0=None):
    """The float64 result of `layer` on time-major batched x, written
    independently of rnncore's own stacking code: returns y, h_n, c_n."""
    sd = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    inp = np.asarray(x, np.float64)
    if layer.batch_first:
        inp = inp.transpose(1, 0, 2)
    L, D, H = layer.num_layers, 2 if layer.bidirectional else 1, layer.hidden_size
    N = inp.shape[1]
    h0 = np.zeros((L * D, N, H)) if h0 is None else np.asarray(h0, np.float64)
    c0 = np.zeros((L * D, N, H)) if c0 is None else np.asarray(c0, np.float64)
    hs, cs = [], []
    for layer_i in range(L):
        outs = []
        for d in range(D):
            sfx = f"_l{layer_i}" + ("_reverse" if d else "")
            y, h, c = reference.layer_forward(
                layer.mode, inp, h0[layer_i * D + d], c0[layer_i * D + d],
                sd["weight_ih" + sfx], sd["weight_hh" + sfx],
                sd.get("bias_ih" + sfx), sd.get("bias_hh" + sfx), reverse=d == 1,
                peephole=sd.get("peephole" + sfx),
                input_forget=getattr(layer, "input_forget", False))
            outs.append(y)
            hs.append(h)
            cs.append(c)
        inp = np.concatenate(outs, axis=2)
    if layer.batch_first:
        inp = inp.transpose(1, 0, 2)
    return inp, np.stack(hs), (np.stack(cs) if layer.mode == "LSTM" else None)


def call(layer, x, h0=None, c0=None):
    """layer(x, state) for any cell, returning (y, h_n, c_n or None)."""
    if layer.mode == "LSTM":
        y, (h, c) = layer(x, None if h0 is None else (h0, c0))
        return y, h, c
    y, h = layer(x, h0)
    return y, h, None
