"""rnncore.from_keras against Keras 3 itself (the torch backend, a test-time
oracle like torch; never a dependency): models built here for every
supported layer and option, compared with ``model.predict``, from the model
object and from its ``.keras`` file (read in a process where Keras cannot be
imported). Tolerance: float32 kernels against Keras's float32, rtol 1e-4,
atol 1e-5."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="Keras 3 is the oracle of these tests "
                            "(pip install keras h5py)")
pytest.importorskip("h5py", reason=".keras weights are HDF5 (pip install h5py)")
L = keras.layers

import rnncore  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
# Keras's and torch's own deprecations on the oracle's side, not ours
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy"
                                         ":DeprecationWarning")]
N, T, V, E = 4, 7, 12, 5

# masks: a full row, right padding, left padding, holes; and one with a row
# masked everywhere
PADS = {
    "right": [[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5, [1] * 7],
    "left": [[1] * 7, [0] * 3 + [1] * 4, [0] * 5 + [1] * 2, [0] + [1] * 6],
    "holes": [[1, 0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 0, 1, 0], [1] * 7, [1, 1, 0, 1, 1, 1, 0]],
    "empty_row": [[1] * 7, [0] * 7, [1, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1]],
}


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def _ids(pad, rng):
    return rng.integers(1, V, (N, T)) * np.array(PADS[pad])


def _floats(pad, rng, features=E):
    x = rng.standard_normal((N, T, features)).astype(np.float32)
    return x * np.array(PADS[pad], np.float32)[:, :, None]


def _randomize(model, rng):
    """Every weight random (biases too: Keras starts them at zero)."""
    for w in model.weights:
        w.assign(rng.uniform(-0.6, 0.6, size=tuple(w.shape)).astype(np.float32))
    return model


def _check(model, x, got=None):
    want = model.predict(x, verbose=0)
    if got is None:
        got = rnncore.from_keras(model).predict(x)
    want = list(want) if isinstance(want, (list, tuple)) else [want]
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True)


def _embedded(*layers):
    return keras.Sequential([keras.Input((T,), dtype="int32"), L.Embedding(V, E, mask_zero=True),
                             *layers])


@pytest.mark.parametrize("pad", sorted(PADS))
def test_the_issue_model(pad, rng):
    """Sequential([Embedding(mask_zero), Bidirectional(LSTM(return_sequences)),
    LSTM, Dense]), on right-padded, left-padded and holey batches."""
    model = _randomize(_embedded(L.Bidirectional(L.LSTM(6, return_sequences=True)), L.LSTM(5),
                                 L.Dense(3, activation="softmax")), rng)
    _check(model, _ids(pad, rng))


@pytest.mark.parametrize("merge", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_bidirectional_merge_modes(merge, kind, rng):
    inp = keras.Input((T, E))
    masked = L.Masking(0.0)(inp)
    seq = L.Bidirectional(getattr(L, kind)(4, return_sequences=True), merge_mode=merge)(masked)
    last = L.Bidirectional(getattr(L, kind)(3), merge_mode=merge)(masked)
    outputs = (seq if merge is None else [seq]) + (last if merge is None else [last])
    model = _randomize(keras.Model(inp, outputs), rng)
    _check(model, _floats("holes", rng))


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("pad", ["right", "left", "empty_row"])
def test_gru(reset_after, go_backwards, pad, rng):
    model = _randomize(_embedded(L.GRU(5, reset_after=reset_after, go_backwards=go_backwards,
                                       return_sequences=True)), rng)
    _check(model, _ids(pad, rng))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("pad", ["right", "holes"])
def test_simple_rnn(activation, go_backwards, pad, rng):
    inp = keras.Input((T,), dtype="int32")
    x = L.Embedding(V, E, mask_zero=True)(inp)
    seq = L.SimpleRNN(4, activation=activation, go_backwards=go_backwards,
                      return_sequences=True)(x)
    last = L.SimpleRNN(3, activation=activation, go_backwards=go_backwards, use_bias=False)(x)
    _check(_randomize(keras.Model(inp, [seq, last]), rng), _ids(pad, rng))


@pytest.mark.parametrize("zero_output", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("pad", ["right", "left", "holes", "empty_row"])
def test_lstm_masks(zero_output, go_backwards, pad, rng):
    """Masked steps: state carried, output carried (or zero with
    zero_output_for_mask); go_backwards over the whole padded sequence."""
    inp = keras.Input((T,), dtype="int32")
    x = L.Embedding(V, E, mask_zero=True)(inp)
    seq = L.LSTM(4, return_sequences=True, zero_output_for_mask=zero_output,
                 go_backwards=go_backwards)(x)
    last = L.LSTM(3, zero_output_for_mask=zero_output, go_backwards=go_backwards)(x)
    _check(_randomize(keras.Model(inp, [seq, last]), rng), _ids(pad, rng))


def test_no_mask_and_unmasked_layers(rng):
    """Without a mask; Dropout, Activation, TimeDistributed(Dense),
    GlobalMaxPooling1D (which ignores masks)."""
    model = keras.Sequential([keras.Input((T, E)), L.LSTM(6, return_sequences=True),
                              L.Dropout(0.5), L.TimeDistributed(L.Dense(4, activation="tanh")),
                              L.Activation("relu"), L.GRU(3, return_sequences=True),
                              L.GlobalMaxPooling1D()])
    _check(_randomize(model, rng), _floats("right", rng))


@pytest.mark.filterwarnings("ignore:.*does not support masking:UserWarning")  # Keras's, expected
@pytest.mark.parametrize("pad", ["right", "holes", "empty_row"])
def test_masking_and_pooling(pad, rng):
    """Masking; GlobalAveragePooling1D with a mask (the mean over unmasked
    steps: NaN for an all-masked row, as in Keras) and GlobalMaxPooling1D;
    Dense and TimeDistributed pass the mask on."""
    inp = keras.Input((T, E))
    x = L.Masking(0.0)(inp)
    x = L.Dense(6)(x)
    x = L.TimeDistributed(L.Dense(5))(x)
    y = L.SimpleRNN(4, return_sequences=True)(x)
    outs = [L.GlobalAveragePooling1D()(y), L.GlobalMaxPooling1D()(y),
            L.GlobalAveragePooling1D(keepdims=True)(x)]
    _check(_randomize(keras.Model(inp, outs), rng), _floats(pad, rng))


def test_return_state_in_a_functional_model(rng):
    """return_state: states as model outputs, read by Dense, and starting
    another layer (initial_state: an encoder-decoder), Bidirectional's
    states too."""
    enc_in = keras.Input((T,), dtype="int32")
    dec_in = keras.Input((5, 3))
    x = L.Embedding(V, E, mask_zero=True)(enc_in)
    _, h, c = L.LSTM(6, return_state=True)(x)
    dec = L.LSTM(6, return_sequences=True)(dec_in, initial_state=[h, c])
    g_seq, g_h = L.GRU(4, return_sequences=True, return_state=True)(x)
    b = L.Bidirectional(L.GRU(3, return_state=True))(x)
    model = keras.Model([enc_in, dec_in], [dec, L.Dense(2)(h), c, g_seq, g_h, *b])
    model = _randomize(model, rng)
    _check(model, [_ids("holes", rng), rng.standard_normal((N, 5, 3)).astype(np.float32)])


def test_stateful_across_calls(rng):
    """stateful=True: the final states start the next call; reset_states()
    clears them (Keras: layer.reset_states())."""
    inp = keras.Input(batch_shape=(N, T, E))
    x = L.Masking(0.0)(inp)
    y = L.LSTM(4, stateful=True, return_sequences=True)(x)
    y = L.Bidirectional(L.GRU(3, stateful=True, return_sequences=True), merge_mode="sum")(y)
    model = _randomize(keras.Model(inp, [y, L.SimpleRNN(2, stateful=True)(y)]), rng)
    ours = rnncore.from_keras(model)
    for pad in ("right", "holes", "left"):
        x = _floats(pad, rng)
        _check(model, x, ours.predict(x))
    for layer in model.layers:
        if hasattr(layer, "reset_states"):
            layer.reset_states()
    ours.reset_states()
    x = _floats("right", rng)
    _check(model, x, ours(x))
    with pytest.raises(ValueError, match=r"must have shape \(4, 7, 5\), got \(2, 7, 5\)"):
        ours.predict(x[:2])


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "sigmoid", "softmax",
                                        "log_softmax", "elu", "selu", "softplus", "softsign",
                                        "silu", "gelu", "exponential", "hard_sigmoid", "relu6",
                                        "leaky_relu", "mish", "hard_silu"])
def test_dense_activations(activation, rng):
    model = keras.Sequential([keras.Input((E,)), L.Dense(6, activation=activation)])
    x = rng.standard_normal((N, E)).astype(np.float32) * 2
    _check(_randomize(model, rng), x)


def test_one_output_and_input_lists_as_keras(rng):
    """keras.Model([i], [o]) predicts the array itself; a dict model takes
    and gives dicts."""
    i = keras.Input((E,))
    model = _randomize(keras.Model([i], [L.Dense(2)(i)]), rng)
    x = rng.standard_normal((N, E)).astype(np.float32)
    ours = rnncore.from_keras(model)
    assert isinstance(ours.predict(x), np.ndarray) and isinstance(ours.predict([x]), np.ndarray)
    _check(model, x)
    i = keras.Input((E,), name="a")
    model = _randomize(keras.Model({"a": i}, {"o": L.Dense(2)(i)}), rng)
    got = rnncore.from_keras(model).predict({"a": x})
    np.testing.assert_allclose(got["o"], model.predict({"a": x}, verbose=0)["o"], rtol=RTOL,
                               atol=ATOL)


def test_right_padding_goes_to_the_kernels_as_lengths(rng):
    """keras_scan: a right-padded mask is passed as lengths, unpacked; other
    masks are packed first (the same lengths: the unmasked counts)."""
    from rnncore.interop.keras_model import keras_scan
    layer = rnncore.LSTM(E, 3, batch_first=True, seed=0)
    calls = []

    def recording(x, hx, lengths=None):
        calls.append((x.copy(), lengths))
        return layer(x, hx, lengths=lengths)

    recording.mode = layer.mode
    x = _floats("right", rng)
    mask = np.array(PADS["right"], bool)
    keras_scan(recording, x, mask, None)
    np.testing.assert_array_equal(calls[-1][0], x)
    np.testing.assert_array_equal(calls[-1][1], [7, 4, 2, 7])
    keras_scan(recording, x[:, ::-1], mask[:, ::-1], None)  # left padding: packed
    np.testing.assert_array_equal(calls[-1][0][1, :4], x[1, :4][::-1])
    np.testing.assert_array_equal(calls[-1][1], [7, 4, 2, 7])


def test_sequential_without_input_layer(rng):
    model = keras.Sequential([L.Embedding(V, E, mask_zero=True), L.LSTM(3)])
    model.build((None, T))
    _check(_randomize(model, rng), _ids("right", rng))


# ------------------------------------------------------------ .keras files without Keras

_READ_WITHOUT_KERAS = r"""
import sys
sys.modules["keras"] = None  # import keras raises ImportError
sys.modules["torch"] = None
import numpy as np, rnncore
for path, inputs, want in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    x = np.load(inputs)
    x = [x[k] for k in sorted(x.files)] if len(x.files) > 1 else x["x0"]
    got = rnncore.from_keras(path).predict(x)
    got = got if isinstance(got, list) else [got]
    want = np.load(want)
    for k, g in enumerate(got):
        np.testing.assert_allclose(g, want[f"y{k}"], rtol=%g, atol=%g, equal_nan=True)
    print("ok", path)
""" % (RTOL, ATOL)


def test_keras_files_read_without_keras(tmp_path, rng):
    enc_in, dec_in = keras.Input((T,), dtype="int32"), keras.Input((5, 3))
    x = L.Embedding(V, E, mask_zero=True)(enc_in)
    seq, h, c = L.Bidirectional(L.LSTM(4, return_sequences=True, return_state=True),
                                merge_mode="ave")(x)[:3]
    dec = L.LSTM(4, return_sequences=True)(dec_in, initial_state=[h, c])
    functional = keras.Model([enc_in, dec_in], [L.GlobalAveragePooling1D()(seq), dec, h])
    cases = [
        (_embedded(L.Bidirectional(L.LSTM(6, return_sequences=True)), L.LSTM(5), L.Dense(3)),
         [_ids("holes", rng)]),
        (_embedded(L.GRU(4, reset_after=False, go_backwards=True, return_sequences=True),
                   L.TimeDistributed(L.Dense(2, activation="softmax"))), [_ids("left", rng)]),
        (functional, [_ids("right", rng), rng.standard_normal((N, 5, 3)).astype(np.float32)]),
    ]
    args = []
    for k, (model, xs) in enumerate(cases):
        _randomize(model, rng)
        path = tmp_path / f"model{k}.keras"
        model.save(path)
        want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        want = list(want) if isinstance(want, (list, tuple)) else [want]
        np.savez(tmp_path / f"x{k}.npz", **{f"x{i}": v for i, v in enumerate(xs)})
        np.savez(tmp_path / f"y{k}.npz", **{f"y{i}": np.asarray(v) for i, v in enumerate(want)})
        args += [str(path), str(tmp_path / f"x{k}.npz"), str(tmp_path / f"y{k}.npz")]
    done = subprocess.run([sys.executable, "-c", _READ_WITHOUT_KERAS, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok") == len(cases)


# ------------------------------------------------------------ hostile input


@pytest.fixture
def saved(tmp_path, rng):
    """A small saved model: (path, its config.json, its weights bytes)."""
    model = _randomize(_embedded(L.LSTM(3), L.Dense(2)), rng)
    path = tmp_path / "ok.keras"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        return path, json.loads(z.read("config.json")), z.read("model.weights.h5")


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_corrupt_and_unsupported_files(tmp_path, saved):
    path, config, weights = saved
    assert rnncore.from_keras(path).predict(np.ones((2, T), np.int64)).shape == (2, 2)
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"\x00not a zip" * 100)
    with pytest.raises(ValueError, match="junk.keras.*not a .keras file"):
        rnncore.from_keras(junk)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        rnncore.from_keras(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="no config.json"):
        rnncore.from_keras(_zip(tmp_path / "a.keras", {"model.weights.h5": weights}))
    with pytest.raises(ValueError, match="not valid JSON"):
        rnncore.from_keras(_zip(tmp_path / "b.keras", {"config.json": "{oops",
                                                       "model.weights.h5": weights}))
    with pytest.raises(ValueError, match="no model.weights.h5"):
        rnncore.from_keras(_zip(tmp_path / "c.keras", {"config.json": json.dumps(config)}))
    with pytest.raises(NotImplementedError, match="npz"):
        rnncore.from_keras(_zip(tmp_path / "d.keras", {"config.json": json.dumps(config),
                                                       "model.weights.npz": b"x"}))
    with pytest.raises(ValueError, match="not a readable HDF5"):
        rnncore.from_keras(_zip(tmp_path / "e.keras", {"config.json": json.dumps(config),
                                                       "model.weights.h5": weights[:200]}))
    with pytest.raises(ValueError, match="Keras 2"):
        rnncore.from_keras(_zip(tmp_path / "f.keras", {
            "config.json": json.dumps(config), "model.weights.h5": weights,
            "metadata.json": json.dumps({"keras_version": "2.15.0"})}))


def _with_layer(config, index, layer):
    config = json.loads(json.dumps(config))
    config["config"]["layers"][index] = layer
    return json.dumps(config)


def test_unknown_and_code_layers_are_refused(tmp_path, saved):
    path, config, weights = saved
    lam = {"class_name": "Lambda", "config": {"name": "evil", "function": {
        "class_name": "__lambda__", "config": {"code": "print('pwned')"}}}}
    lam_path = _zip(tmp_path / "lam.keras", {"config.json": _with_layer(config, 2, lam),
                                            "model.weights.h5": weights})
    with pytest.raises(NotImplementedError, match="'evil' \\(Lambda\\).*Python code"):
        rnncore.from_keras(lam_path)
    conv = {"class_name": "Conv1D", "config": {"name": "conv"}}
    with pytest.raises(NotImplementedError, match="'conv' \\(Conv1D\\) is not supported"):
        rnncore.from_keras(_zip(tmp_path / "conv.keras", {
            "config.json": _with_layer(config, 2, conv), "model.weights.h5": weights}))
    model = keras.Sequential([keras.Input((T, E)), L.Conv1D(2, 3)])
    with pytest.raises(NotImplementedError, match="Conv1D.*supported layers"):
        rnncore.from_keras(model)
    model = keras.Sequential([keras.Input((T, E)), L.LSTM(2, activation="relu")])
    with pytest.raises(NotImplementedError, match="lstm.*activation 'relu'"):
        rnncore.from_keras(model)
    with pytest.raises(TypeError, match="Keras model or a .keras file path"):
        rnncore.from_keras(42)


def test_bad_inputs(saved, rng):
    path, _, _ = saved
    ours = rnncore.from_keras(path)
    with pytest.raises(TypeError, match="model input 'input_layer.*numeric"):
        ours.predict(np.array([["a"] * T]))
    with pytest.raises(ValueError, match=r"must have shape \('batch', 7\)"):
        ours.predict(np.ones((2, T + 1), np.int64))
    with pytest.raises(ValueError, match=r"must have shape"):
        ours.predict(np.ones((2, T, 1), np.int64))
    with pytest.raises(ValueError,
                       match="'embedding[_0-9]*' \\(Embedding\\): ids must be in \\[0, 12\\)"):
        ours.predict(np.full((2, T), V))
    with pytest.raises(ValueError, match="no samples"):
        ours.predict(np.ones((0, T), np.int64))
    functional = rnncore.from_keras(keras.Model(
        [i := keras.Input((3,)), j := keras.Input((3,))], [L.Dense(2)(i), L.Dense(2)(j)]))
    with pytest.raises(TypeError, match="2 inputs"):
        functional.predict(np.ones((1, 3)))
