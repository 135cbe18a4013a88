"""Property-based tests (hypothesis) over the public entry points: random
shapes (0 and 1 included), dtypes, strides, layouts, values (NaN, +-Inf,
+-1e30, denormals), states and lengths. Every call either returns what the
NumPy reference returns or raises a documented exception (ValueError,
TypeError) with a message; the process never dies. Derandomized: CI sees the
same examples every run."""
import io
import os

import numpy as np
import pytest

import rnncore
from conftest import ATOL, MODES, RTOL, backend, call, make_layer

hyp = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
SPECIAL = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-40, -1e-42, 3.0, -2.5]
ERRORS = (ValueError, TypeError)


def values(dtype):
    if np.dtype(dtype).kind == "f":
        big = float(np.finfo(dtype).max)
        return st.one_of(st.sampled_from([v for v in SPECIAL if not (np.isfinite(v) and abs(v) > big)]),
                         st.floats(-4, 4, width=min(32, np.dtype(dtype).itemsize * 8)))
    return st.integers(-3, 3)


@st.composite
def arrays(draw, shape):
    """An array of `shape` with a random dtype, special values and a random
    memory layout (C, Fortran, reversed or strided view)."""
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.float16, np.int32]))
    base = draw(hnp.arrays(dtype, tuple(2 * s for s in shape), elements=values(dtype)))
    layout = draw(st.sampled_from(["step", "reversed", "fortran", "c"]))
    if layout == "step":
        return base[tuple(slice(None, None, 2) for _ in shape)]
    view = base[tuple(slice(0, s) for s in shape)]
    if layout == "reversed":
        return view[::-1] if view.ndim else view
    return np.asfortranarray(view) if layout == "fortran" else np.ascontiguousarray(view)


def same(a, b):
    """Equal as the reference computes it: NaN where it has NaN, infinities
    alike, finite values to float32 accuracy."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    fin = np.isfinite(b) & np.isfinite(a)
    np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
    np.testing.assert_allclose(a[fin], b[fin], rtol=RTOL, atol=ATOL)


def outcome(fn):
    """("ok", result) or ("error", exception type) of fn()."""
    try:
        return "ok", fn()
    except ERRORS as exc:
        assert str(exc), "an error without a message"
        return "error", type(exc)


def against_reference(fn):
    """fn() on the C backend and on the reference: both return, or both raise
    the same exception type. Returns the two results (None on errors)."""
    fast = outcome(fn)
    with backend("reference"):
        ref = outcome(fn)
    assert fast[0] == ref[0], (fast, ref)
    if fast[0] == "error":
        assert fast[1] is ref[1]
        return None, None
    return fast[1], ref[1]


def same_all(fast, ref):
    for a, b in zip(fast or (), ref or ()):
        if b is not None:
            same(a, b)


layer_config = st.fixed_dictionaries({
    "mode": st.sampled_from(MODES),
    "I": st.integers(1, 6), "H": st.integers(1, 9), "layers": st.integers(1, 2),
    "bidirectional": st.booleans(), "batch_first": st.booleans(), "bias": st.booleans()})


def build(cfg):
    return make_layer(cfg["mode"], cfg["I"], cfg["H"], num_layers=cfg["layers"],
                      bidirectional=cfg["bidirectional"], batch_first=cfg["batch_first"],
                      bias=cfg["bias"], seed=0)


@SETTINGS
@given(cfg=layer_config, T=st.integers(0, 4), N=st.integers(0, 3), data=st.data())
def test_forward_matches_the_reference_or_raises(cfg, T, N, data):
    layer = build(cfg)
    I = cfg["I"] if data.draw(st.booleans()) else data.draw(st.integers(1, 7))
    shape = (N, T, I) if cfg["batch_first"] else (T, N, I)
    if data.draw(st.booleans()):
        shape = shape[1:] if data.draw(st.booleans()) else shape + (1,)
    x = data.draw(arrays(shape))
    LD = cfg["layers"] * (2 if cfg["bidirectional"] else 1)
    h0 = c0 = None
    if data.draw(st.booleans()):
        h0 = data.draw(arrays((LD, max(N, 0), cfg["H"])))
        c0 = data.draw(arrays((LD, max(N, 0), cfg["H"])))
    same_all(*against_reference(lambda: call(layer, x, h0, c0)))


@SETTINGS
@given(cfg=layer_config, T=st.integers(1, 5), N=st.integers(1, 4), data=st.data())
def test_lengths_match_the_reference_or_raise(cfg, T, N, data):
    cfg = dict(cfg, batch_first=False)
    layer = build(cfg)
    x = data.draw(arrays((T, N, cfg["I"])))
    lengths = np.array(data.draw(st.lists(st.integers(-1, T + 1), min_size=N, max_size=N)))
    if data.draw(st.booleans()):
        lengths = lengths.astype(np.float32)
    same_all(*against_reference(lambda: call_lengths(layer, x, lengths)))


def call_lengths(layer, x, lengths):
    y, state = layer(x, lengths=lengths)
    return (y,) + (tuple(state) if isinstance(state, tuple) else (state,))


@SETTINGS
@given(cfg=layer_config, N=st.integers(0, 3), data=st.data())
def test_step_matches_a_one_step_sequence_or_raises(cfg, N, data):
    cfg = dict(cfg, bidirectional=False, batch_first=False)
    layer = build(cfg)
    x = data.draw(arrays((N, cfg["I"]) if data.draw(st.booleans()) else (cfg["I"],)))
    stepped = outcome(lambda: layer.step(x))
    whole = outcome(lambda: layer(x[None]))
    assert stepped[0] == whole[0], (stepped, whole)
    if stepped[0] == "ok":
        y, _ = stepped[1]
        same(y, whole[1][0][0])


@SETTINGS
@given(cfg=layer_config, T=st.integers(1, 4), N=st.integers(1, 3), data=st.data())
def test_training_pass_matches_the_reference_or_raises(cfg, T, N, data):
    cfg = dict(cfg, batch_first=False)
    layer = build(cfg)
    x = data.draw(arrays((T, N, cfg["I"])))
    D = 2 if cfg["bidirectional"] else 1
    d_out = data.draw(arrays((T, N, D * cfg["H"]) if data.draw(st.booleans())
                             else (T, N + 1, D * cfg["H"])))

    def run():
        out, _, tape = layer.forward_train(x)
        layer.zero_grad()
        dx, _ = layer.backward(tape, d_out)
        return out, dx, {k: v.copy() for k, v in layer.grads.items()}

    fast, ref = against_reference(run)
    if fast is not None:
        same(fast[0], ref[0])
        finite = all(np.isfinite(a).all() for a in (x, d_out))
        if finite and np.abs(x).max() < 100 and np.abs(d_out).max() < 100:
            same(fast[1], ref[1])  # huge inputs: gradients differ by saturation rounding
            for k in fast[2]:
                same(fast[2][k], ref[2][k])


@SETTINGS
@given(M=st.integers(0, 5), V=st.integers(0, 40), data=st.data())
def test_softmax_cross_entropy_matches_the_reference_or_raises(M, V, data):
    z = data.draw(arrays((M, V)))
    t = np.array(data.draw(st.lists(st.integers(-2, V + 1), min_size=M, max_size=M)),
                 dtype=data.draw(st.sampled_from([np.int64, np.int32, np.float32])))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    same_all(*against_reference(lambda: rnncore.softmax_cross_entropy(z, t, reduction=reduction)))


def _model_bytes():
    buf = io.BytesIO()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"rnncore-prop-{os.getpid()}.st")
    rnncore.save(rnncore.LSTM(2, 3, num_layers=2, seed=0), path)
    with open(path, "rb") as f:
        buf.write(f.read())
    os.unlink(path)
    return buf.getvalue()


MODEL = _model_bytes()


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, len(MODEL) - 1), st.integers(0, 255)),
                      max_size=6), cut=st.integers(0, len(MODEL)))
def test_damaged_model_files_load_or_raise_cleanly(edits, cut, tmp_path_factory):
    data = bytearray(MODEL[:cut])
    for pos, byte in edits:
        if pos < len(data):
            data[pos] = byte
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    path.write_bytes(bytes(data))
    try:
        model = rnncore.load(path)
    except ValueError as exc:
        assert "not a valid rnncore model file" in str(exc)
        return
    assert isinstance(model, rnncore.LSTM)  # a harmless edit (e.g. inside a weight)


VOCAB = rnncore.Vocabulary.build("the cat sat on the mat\n", "char")
LM = rnncore.LanguageModel(VOCAB, "lstm", 4, 6, 2, dropout=0.2, seed=0)


@SETTINGS
@given(shape=st.tuples(st.integers(0, 4), st.integers(0, 3)), ndim=st.integers(1, 3),
       low=st.integers(-2, 0), high=st.integers(1, len(VOCAB) + 2),
       dtype=st.sampled_from([np.int64, np.int32, np.uint8, np.float32]), data=st.data())
def test_language_model_token_inputs_work_or_raise(shape, ndim, low, high, dtype, data):
    full = shape + (2,) * (ndim - 2) if ndim >= 2 else shape[:1]
    ids = np.asarray(data.draw(hnp.arrays(np.int64, full, elements=st.integers(low, high - 1))),
                     dtype=dtype)
    valid = (ndim == 2 and 0 not in full and dtype != np.float32 and ids.min() >= 0
             and ids.max() < len(VOCAB))
    kind, result = outcome(lambda: LM.train_step(ids, ids))
    assert kind == ("ok" if valid else "error"), (kind, result)
    if kind == "ok":
        assert np.isfinite(result[0])
        LM.zero_grad()
    kind, result = outcome(lambda: LM.forward(ids))
    assert kind == ("ok" if valid else "error")


@SETTINGS
@given(prompt=st.text(max_size=8), max_tokens=st.integers(-1, 6),
       temperature=st.sampled_from([0.0, 0.5, 1.0, -1.0, np.nan, np.inf]),
       top_k=st.sampled_from([None, 0, 1, 3, 1000]), top_p=st.sampled_from([None, 0.0, 0.3, 1.0, 2.0]),
       num_samples=st.integers(0, 3))
def test_generate_works_or_raises(prompt, max_tokens, temperature, top_k, top_p, num_samples):
    kind, result = outcome(lambda: LM.generate(prompt, max_tokens, temperature=temperature,
                                               top_k=top_k, top_p=top_p, seed=0,
                                               num_samples=num_samples))
    valid = (max_tokens >= 0 and 0 <= temperature < np.inf and top_k != 0
             and top_p not in (0.0, 2.0) and num_samples >= 1)
    assert kind == ("ok" if valid else "error"), (kind, result)
    if kind == "ok":
        texts = result if num_samples > 1 else [result]
        assert len(texts) == num_samples
        assert all(isinstance(t, str) for t in texts)


@SETTINGS
@given(lr=st.sampled_from([1e-3, 0.0, -1.0, np.nan, np.inf]),
       max_norm=st.sampled_from([1.0, 0.0, -1.0, np.nan]),
       grad=st.sampled_from([0.0, 1.0, np.nan, np.inf, 1e30]))
def test_optimizers_and_clipping_work_or_raise(lr, max_norm, grad):
    layer = rnncore.GRU(2, 3, seed=0)
    for g in layer.grads.values():
        g.fill(grad)
    for make in (rnncore.optim.SGD, rnncore.optim.Adam):
        kind, _ = outcome(lambda: make(layer, lr=lr))
        assert kind == ("ok" if np.isfinite(lr) and lr >= 0 else "error")
    kind, norm = outcome(lambda: rnncore.optim.clip_grad_norm(layer, max_norm))
    assert kind == ("ok" if np.isfinite(max_norm) and max_norm > 0 else "error")
    if kind == "ok" and np.isfinite(grad):
        assert norm >= 0


@SETTINGS
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), data=st.data())
def test_onnx_model_feeds_work_or_raise(shape, data):
    onnx = pytest.importorskip("onnx")
    model = rnncore.GRU(3, 4, seed=0).to_onnx()
    session = rnncore.from_onnx(onnx.ModelProto.FromString(model.SerializeToString()))
    name = session.inputs[0]
    x = data.draw(arrays(tuple(shape)))
    kind, result = outcome(lambda: session.run(None, {name: x}))
    if kind == "ok":
        assert all(np.asarray(r).dtype == np.float32 for r in result)
