"""Shared fixtures: seeded data, the float64 oracle for stacked layers,
tolerances, and the three axes every kernel test runs over:

* ``ops``: the reference and the C backend (the active Ops inside the test);
* ``isa``: every CPU path this machine offers (C tests only; it puts the
  test on the C backend);
* ``n_threads``: 1 and 4 kernel threads.

CI's reference stage runs the suite on a copy of the installed package
without its extension (``RNNCORE_BACKEND=reference``): tests of the C
backend skip there, and everything else runs on the fallback that ships.
"""
import os

import numpy as np
import pytest

import rnncore
from rnncore import reference
from rnncore.engine import cells, runtime
from rnncore.engine.layers import make_layer as _make

ON_REFERENCE = os.environ.get("RNNCORE_BACKEND", "").lower() == "reference"
# The compiled backend must be the one under test unless the run asks for the
# reference explicitly: a missing extension must fail loudly, not fall back.
if not ON_REFERENCE:
    assert rnncore.backend() == "c", f"C extension not loaded: {runtime.CORE_ERROR}"

C_OPS = runtime.c_ops()

# float32 kernels against the float64 reference. Sums run over at most
# I + H = 97 terms of O(1) values per gate, nine steps and three layers deep;
# float32 rounding (6e-8 relative) accumulates to ~1e-6 there, and the
# activation approximations add <= 2.4e-7 (see csrc/src/isa/kernels_simd.inc).
RTOL, ATOL = 1e-4, 1e-5
# Gradients (float32 kernels against float64): sums of up to T*N = 35 steps x
# rows of float32 products through (G*H + I) terms and activation
# derivatives; float32 rounding (6e-8) accumulates to ~1e-6 of their O(1-10)
# size, and the forward activations' <= 2.4e-7 error enters every
# derivative. dW sums over more terms than y, hence the wider ATOL.
G_RTOL, G_ATOL = 1e-4, 1e-4

# every cell kind and variant, by the cell table's names
MODES = list(cells.VARIANTS)
TORCH_MODES = [m for m, c in cells.CELLS.items() if c.torch]  # GRU_RB has no torch.nn twin


def make_layer(mode, I, H, **kw):
    """A layer of a cells.VARIANTS entry (e.g. 'LSTM_PEEPHOLE')."""
    base, options = cells.VARIANTS[mode]
    return _make(cells.cell(base), I, H, **dict(options), **kw)


ISAS = [i for i in C_OPS.compiled_isas() if C_OPS.isa_available(i)] if C_OPS else []


def _need_c():
    if C_OPS is None:
        pytest.skip("C extension not available (reference run)")


@pytest.fixture(params=ISAS or [None])
def isa(request):
    """Run the test on the C backend once per CPU path (avx512, avx2, generic)."""
    if request.param is None:
        _need_c()
    saved = C_OPS.isa()
    C_OPS.set_isa(request.param)
    with runtime.using_backend("c"):
        yield request.param
    C_OPS.set_isa(saved)


@pytest.fixture(params=["reference", "c"])
def ops(request):
    """Run the test on each backend: the active Ops inside it."""
    if request.param == "c":
        _need_c()
    with runtime.using_backend(request.param) as chosen:
        yield chosen


@pytest.fixture(params=[1, 4])
def n_threads(request):
    """Run the test at 1 and at 4 kernel threads."""
    saved = runtime._num_threads
    rnncore.set_num_threads(request.param)
    yield request.param
    rnncore.set_num_threads(saved)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def backend(name):
    """Run on `name` ('c' or 'reference') inside the block (skips on a
    reference run for 'c')."""
    if name == "c":
        _need_c()
    return runtime.using_backend(name)


def oracle(layer, x, h0=None, c0=None, lengths=None):
    """The float64 result of `layer` on batched x by rnncore.reference's
    stacking (the specification), independent of the engine's loop:
    returns y, h_n, c_n."""
    sd = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    inp = np.asarray(x, np.float64)
    if layer.batch_first:
        inp = inp.transpose(1, 0, 2)
    params = [[{"w_ih": sd["weight_ih" + sfx], "w_hh": sd["weight_hh" + sfx],
                "b_ih": sd.get("bias_ih" + sfx), "b_hh": sd.get("bias_hh" + sfx),
                "peephole": sd.get("peephole" + sfx),
                "input_forget": getattr(layer, "input_forget", False)}
               for sfx in [f"_l{li}" + ("_reverse" if d else "")
                           for d in range(layer.num_directions)]]
              for li in range(layer.num_layers)]
    as64 = lambda s: None if s is None else np.asarray(s, np.float64)  # noqa: E731
    y, h, c = reference.stack_forward(layer.mode, inp, as64(h0), as64(c0), params,
                                      lengths=lengths)
    if layer.batch_first:
        y = y.transpose(1, 0, 2)
    return y, h, c


def call(layer, x, h0=None, c0=None, **kw):
    """layer(x, state) for any cell, returning (y, h_n, c_n or None)."""
    if layer.mode == "LSTM":
        y, (h, c) = layer(x, None if h0 is None else (h0, c0), **kw)
        return y, h, c
    y, h = layer(x, h0, **kw)
    return y, h, None
