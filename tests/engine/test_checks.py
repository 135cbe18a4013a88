"""Bad input: every class of it raises the documented exception, naming the
argument, before the kernels see it; odd memory layouts and extreme values
give the reference's answer."""
import numpy as np
import pytest

import rnncore
from conftest import ATOL, RTOL, call, make_layer, oracle


MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


@pytest.fixture(params=MODES)
def layer(request):
    return make_layer(request.param, 4, 6, num_layers=2, seed=0)


def x_of(layer, rng, T=5, N=3):
    return rng.standard_normal((T, N, layer.input_size)).astype(np.float32)


# ------------------------------------------------------------- dtypes

@pytest.mark.parametrize("bad", [
    np.zeros((5, 3, 4), np.int32), np.zeros((5, 3, 4), np.int64), np.zeros((5, 3, 4), bool),
    np.zeros((5, 3, 4), np.complex64), np.zeros((5, 3, 4), object), np.full((5, 3, 4), "a"),
    "a string", [[["a"]]], None,
], ids=["int32", "int64", "bool", "complex", "object", "str-array", "str", "nested-str", "None"])
def test_wrong_dtype_of_x_is_type_error(layer, bad):
    with pytest.raises(TypeError, match="x must be"):
        layer(bad)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.longdouble])
def test_other_float_precisions_are_converted(layer, rng, dtype):
    x = x_of(layer, rng).astype(np.float16).astype(np.float32)  # exactly representable
    y32 = call(layer, x)[0]
    y = call(layer, x.astype(dtype))[0]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, y32)


def test_state_dtype_is_checked(layer, rng):
    x = x_of(layer, rng)
    h0 = np.zeros((2, 3, 6), np.int64)
    with pytest.raises(TypeError, match="h0 must be"):
        call(layer, x, h0, np.zeros((2, 3, 6), np.float32))
    if layer.mode == "LSTM":
        with pytest.raises(TypeError, match="c0 must be"):
            layer(x, (np.zeros((2, 3, 6), np.float32), np.zeros((2, 3, 6), complex)))


def test_parameter_dtype_and_shape_are_checked(layer):
    with pytest.raises(TypeError, match="weight_hh_l0 must be float32"):
        layer.weight_hh_l0 = np.zeros(layer.weight_hh_l0.shape, np.int32)
    with pytest.raises(ValueError, match=r"weight_hh_l0 must have shape .* got \(1, 1\)"):
        layer.weight_hh_l0 = np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError, match="bias_ih_l1"):
        layer.bias_ih_l1 = np.zeros(3, np.float32)


# ------------------------------------------------------------- shapes

@pytest.mark.parametrize("shape", [(4,), (2, 5, 3, 4), ()])
def test_wrong_rank_of_x(layer, shape):
    with pytest.raises(ValueError, match=r"x must be 3-D \(T, N, I\) or 2-D"):
        layer(np.zeros(shape, np.float32))


def test_wrong_feature_size(layer):
    with pytest.raises(ValueError, match=r"input_size = 4 features .* got shape \(5, 3, 7\)"):
        layer(np.zeros((5, 3, 7), np.float32))


def test_empty_sequence_and_batch(layer):
    with pytest.raises(ValueError, match=r"empty sequence \(T = 0\)"):
        layer(np.zeros((0, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"empty sequence \(T = 0\)"):
        layer(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match=r"empty batch \(N = 0\)"):
        layer(np.zeros((5, 0, 4), np.float32))


@pytest.mark.parametrize("shape", [(2, 4, 6), (1, 3, 6), (2, 3, 5), (2, 3), (3, 6)])
def test_wrong_state_shape_names_expected(layer, rng, shape):
    x = x_of(layer, rng)
    h0 = np.zeros(shape, np.float32)
    good = np.zeros((2, 3, 6), np.float32)
    with pytest.raises(ValueError, match=r"h0 must have shape \(num_layers\*num_directions, N, "
                                         r"hidden_size\) = \(2, 3, 6\)"):
        call(layer, x, h0, good)
    if layer.mode == "LSTM":
        with pytest.raises(ValueError, match=r"c0 must have shape .* = \(2, 3, 6\)"):
            layer(x, (good, h0))


def test_unbatched_state_shape(layer, rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"h0 must have shape \(num_layers\*num_directions, "
                                         r"hidden_size\) = \(2, 6\)"):
        call(layer, x, np.zeros((2, 1, 6), np.float32), np.zeros((2, 6), np.float32))


@pytest.mark.parametrize("hx", ["array", "triple", "single", "none-inside", "string"])
def test_lstm_state_must_be_a_pair(rng, hx):
    lstm = rnncore.LSTM(4, 6)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    h = np.zeros((1, 3, 6), np.float32)
    value = {"array": h, "triple": (h, h, h), "single": (h,), "none-inside": (h, None),
             "string": "hc"}[hx]
    with pytest.raises(ValueError, match="hx must be a pair"):
        lstm(x, value)


def test_single_state_cells_reject_a_pair(rng):
    gru = rnncore.GRU(4, 6)
    h = np.zeros((1, 3, 6), np.float32)
    with pytest.raises(ValueError, match="h0 must be an array"):
        gru(np.zeros((5, 3, 4), np.float32), (h, h))
    with pytest.raises(ValueError, match="not both"):
        gru(np.zeros((5, 3, 4), np.float32), h, h0=h)
    y1 = gru(np.ones((5, 3, 4), np.float32), h0=h + 0.5)[0]
    y2 = gru(np.ones((5, 3, 4), np.float32), h + 0.5)[0]
    np.testing.assert_array_equal(y1, y2)


# ------------------------------------------------------------- constructor

@pytest.mark.parametrize("cls", [rnncore.RNN, rnncore.LSTM, rnncore.GRU])
@pytest.mark.parametrize("kw, exc, msg", [
    (dict(input_size=0, hidden_size=4), ValueError, "input_size must be >= 1"),
    (dict(input_size=3, hidden_size=-2), ValueError, "hidden_size must be >= 1"),
    (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, "num_layers must be >= 1"),
    (dict(input_size=3.5, hidden_size=4), TypeError, "input_size must be an integer"),
    (dict(input_size=True, hidden_size=4), TypeError, "input_size must be an integer, got bool"),
    (dict(input_size=3, hidden_size="4"), TypeError, "hidden_size must be an integer"),
    (dict(input_size=3, hidden_size=4, dropout=1.5), ValueError, "dropout must be in"),
    (dict(input_size=3, hidden_size=4, bias="yes"), TypeError, "bias must be a bool"),
    (dict(input_size=3, hidden_size=4, seed=-1), ValueError, "seed must be >= 0"),
])
def test_constructor_arguments(cls, kw, exc, msg):
    with pytest.raises(exc, match=msg):
        cls(**kw)


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        rnncore.RNN(3, 4, nonlinearity="gelu")


def test_configuration_is_fixed_and_unknown_attributes_raise():
    lstm = rnncore.LSTM(3, 4)
    with pytest.raises(AttributeError, match="fixed at construction"):
        lstm.hidden_size = 8
    with pytest.raises(AttributeError, match="weight_hh_l5"):
        lstm.weight_hh_l5


def test_dropout_has_no_effect_at_inference(rng):
    a = rnncore.LSTM(3, 4, num_layers=2, dropout=0.5, seed=1)
    b = rnncore.LSTM(3, 4, num_layers=2, seed=1)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])


# ------------------------------------------------------------- sizes

def test_absurd_sizes_raise_instead_of_crashing(rng):
    with pytest.raises((MemoryError, ValueError)):
        rnncore.LSTM(10 ** 7, 10 ** 7)
    gru = rnncore.GRU(4, 8)
    huge = np.broadcast_to(np.zeros(1, np.float32), (1 << 22, 1 << 22, 4))  # 2^46 floats, no memory
    with pytest.raises((MemoryError, ValueError)):
        gru(huge)


# ------------------------------------------------------------- state dicts

def test_state_dict_is_strict(layer):
    sd = layer.state_dict()
    missing = dict(sd)
    del missing["weight_hh_l1"]
    with pytest.raises(KeyError, match="missing keys \\['weight_hh_l1'\\]"):
        layer.load_state_dict(missing)
    extra = dict(sd, weight_hh_l7=sd["weight_hh_l0"])
    with pytest.raises(KeyError, match="unexpected keys \\['weight_hh_l7'\\]"):
        layer.load_state_dict(extra)
    wrong = dict(sd, weight_ih_l1=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="weight_ih_l1 must have shape"):
        layer.load_state_dict(wrong)
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        layer.load_state_dict([1, 2])
    result = layer.load_state_dict(missing, strict=False)
    assert result.missing_keys == ["weight_hh_l1"] and result.unexpected_keys == []


def test_failed_load_changes_nothing(layer):
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    sd = {k: v + 1 for k, v in layer.state_dict().items()}
    sd["bias_hh_l1"] = np.zeros(2, np.float32)
    with pytest.raises(ValueError):
        layer.load_state_dict(sd)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_parameters_are_read_only_and_assignment_repacks(layer, rng):
    with pytest.raises(ValueError, match="read-only"):
        layer.weight_hh_l0[0, 0] = 1.0
    x = x_of(layer, rng)
    w = rng.standard_normal(layer.weight_hh_l0.shape)  # float64 on purpose: converted
    layer.weight_hh_l0 = w
    assert layer.weight_hh_l0.dtype == np.float32
    w[:] = 0  # the layer keeps its own copy
    y, h, c = call(layer, x)
    y_ref, _, _ = oracle(layer, x)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------- layouts

@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_strided_reversed_fortran_inputs(layer, rng):
    x = x_of(layer, rng, T=6, N=4)
    h0 = rng.standard_normal((2, 4, 6)).astype(np.float32)
    c0 = rng.standard_normal((2, 4, 6)).astype(np.float32)
    expected = call(layer, x, h0, c0)
    big = np.zeros((12, 8, 8), np.float32)
    big[::2, ::2, 1:8:2] = x
    variants = [big[::2, ::2, 1:8:2], np.asfortranarray(x), x[::-1][::-1],
                np.ascontiguousarray(x[::-1])[::-1], x.tolist()]
    for v in variants:
        got = call(layer, v, np.asfortranarray(h0), np.ascontiguousarray(c0[:, ::-1])[:, ::-1])
        for a, b in zip(got, expected):
            if b is not None:
                np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- values

@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_nan_and_inf_propagate_like_the_reference(layer, rng):
    x = x_of(layer, rng, T=6, N=3)
    x[2, 1, 0] = np.nan
    x[3, 2, 1] = np.inf
    x[1, 0, 2] = -np.inf
    y, h, c = call(layer, x)
    y_ref, h_ref, c_ref = oracle(layer, x)
    assert np.isnan(y[2:, 1]).all() and not np.isnan(y[:2, 1]).any()
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL, equal_nan=True)
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=ATOL, equal_nan=True)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
@pytest.mark.parametrize("mode", ["RNN_TANH", "LSTM", "GRU"])
@pytest.mark.parametrize("scale", [1e30, -1e30, 3e37])
def test_huge_finite_inputs_saturate(mode, scale, rng):
    layer = make_layer(mode, 4, 6, num_layers=2, seed=0)
    x = (np.sign(rng.standard_normal((5, 3, 4))) * scale).astype(np.float32)
    h0 = np.full((2, 3, 6), scale, np.float32)
    y, h, c = call(layer, x, h0, h0)
    y_ref, h_ref, c_ref = oracle(layer, x, h0, h0)
    assert np.isfinite(y_ref).all()
    assert np.isfinite(y).all() and np.isfinite(h).all()
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_relu_rnn_huge_inputs_stay_exact(rng):
    layer = make_layer("RNN_RELU", 4, 6, seed=0)
    x = (rng.standard_normal((3, 2, 4)) * 1e30).astype(np.float32)
    y = call(layer, x)[0]
    y_ref = oracle(layer, x)[0]
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=0)


# ------------------------------------------------------------- low level

def test_core_rechecks_shapes():
    """Even a direct call of the private bindings cannot index out of bounds."""
    core = pytest.importorskip("rnncore._core", reason="C extension not built")
    cell, T, N, I, H = core.CELL_ENUM["RNC_CELL_LSTM"], 3, 2, 3, 2
    f = np.zeros
    args = dict(x=f((6, 3), np.float32), w_ih_p=f(core.packed_floats(cell, H, I), np.float32),
                w_hh_p=f(core.packed_floats(cell, H, H), np.float32), y=f((6, 2), np.float32),
                ws=f(core.fwd_workspace_floats(cell, T, N, I, H, n_threads=1), np.float32))

    def run(a, **kw):
        core.forward(cell, T, N, I, H, n_threads=1, **{**a, **kw})

    run(args)
    for key, bad in [("x", f((5, 3), np.float32)), ("w_hh_p", f(7, np.float32)),
                     ("y", f((6, 1), np.float32)), ("ws", f(3, np.float32))]:
        with pytest.raises(ValueError, match=key):
            run(dict(args, **{key: bad}))
    with pytest.raises(ValueError, match="y"):
        run(args, y_col=1)
    with pytest.raises(ValueError, match="h0"):
        run(args, state0=(f((3, 2), np.float32), None))
    with pytest.raises(ValueError, match="state0"):
        run(args, state0=f((2, 2), np.float32))  # not a pair
    with pytest.raises(TypeError):
        core.forward(cell, T, N, I, H, args["x"])  # everything after the sizes is by keyword
    with pytest.raises(ValueError, match="packed"):
        core.pack_weights(cell, H, w=f((8, 3), np.float32), packed=f(5, np.float32))
    plan = core.StepPlan(cell, N, I, H, n_threads=1, layers=[
        {"w_ih_p": args["w_ih_p"], "w_hh_p": args["w_hh_p"], "b_ih": None, "b_hh": None,
         "peephole": None, "input_forget": False}])
    y, (h, c) = plan.step(f((N, I), np.float32))
    assert y.shape == (N, H) and h.shape == c.shape == (1, N, H)
    with pytest.raises(ValueError, match="x"):
        plan.step(f((N + 1, I), np.float32))
    with pytest.raises(ValueError, match="h0"):
        plan.step(f((N, I), np.float32), (f((2, N, H), np.float32), None))
    # the plan checks its raw buffers itself: dtype, layout, contiguity
    x_ok = f((N, I), np.float32)
    h_ok = f((1, N, H), np.float32)
    for bad_x in (f((N, I), np.float64), np.asfortranarray(f((N, I), np.float32)),
                  f((N, 2 * I), np.float32)[:, ::2], f((N, I), np.float32).byteswap().view(">f4"),
                  f((N * I,), np.float32), b"\0" * (4 * N * I)):
        with pytest.raises(ValueError, match="x"):
            plan.step(bad_x)
    for bad_h in (f((1, N, H), np.int32), f((1, N, 2 * H), np.float32)[:, :, ::2], f((N, H), np.float32)):
        with pytest.raises(ValueError, match="h0"):
            plan.step(x_ok, (bad_h, None))
        with pytest.raises(ValueError, match="c0"):
            plan.step(x_ok, (h_ok, bad_h))
    read_only = x_ok.copy()
    read_only.flags.writeable = False
    y2, _ = plan.step(read_only, (h, c))  # inputs need not be writable
    np.testing.assert_array_equal(y2, plan.step(x_ok, (h, c))[0])


@pytest.mark.usefixtures("isa")  # the kernels on every CPU path
def test_denormal_values_give_the_reference_answer(layer, rng):
    """Denormals are flushed inside the kernels (FTZ/DAZ): the results stay
    within the tolerance of the float64 reference, which keeps them."""
    x = (rng.standard_normal((5, 3, 4)) * 1e-39).astype(np.float32)
    h0 = np.full((2, 3, 6), 1e-40, np.float32)
    assert (np.abs(x[x != 0]) < np.finfo(np.float32).tiny).all()
    y, h, c = call(layer, x, h0, h0)
    y_ref, h_ref, _ = oracle(layer, x, h0, h0)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=ATOL)
