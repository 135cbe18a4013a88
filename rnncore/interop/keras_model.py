"""``rnncore.from_keras(model)``: a Keras 3 model (Sequential or functional,
any backend), or its ``.keras`` file without Keras, as a :class:`KerasModel`
whose ``predict(x)`` gives Keras's ``model.predict(x)``, with the recurrent
layers on rnncore's kernels. The model is lowered once to the graph of
rnncore.interop.graph (the executor of imported ONNX graphs too): recurrent
layers become :class:`KerasRecurrent` steps, the rest onnx_ops Nodes
(Gather, MatMul + Add with the kernel packed once, Relu, Softmax,
ReduceMean, ...) or small NumPy functions where Keras has no ONNX twin.

Layers: InputLayer, Embedding (``mask_zero``), Masking, LSTM, GRU
(``reset_after`` either), SimpleRNN (tanh, relu), Bidirectional (every
``merge_mode``, ``backward_layer``), Dense (its activation), TimeDistributed
(Dense), Dropout, Activation, GlobalAveragePooling1D, GlobalMaxPooling1D, and
the mask operations functional configs record (NotEqual, Any). Recurrent
options: ``return_sequences``, ``return_state``, ``go_backwards``,
``stateful`` (final states kept between calls; ``reset_states()``),
``zero_output_for_mask``, ``initial_state`` in functional models; default
activations (tanh / sigmoid) only.

Masks (Keras semantics, keras/src/backend/*/rnn.py): a masked step leaves
the state unchanged and outputs the previous step's output (zeros before the
first unmasked step), or zeros with ``zero_output_for_mask`` (which
Bidirectional forces on when returning sequences). So a sample's states and
its unmasked outputs are those of its unmasked steps run alone: the
unmasked steps are moved to the front (in order), run with ``lengths`` =
their count on the kernels, and the outputs spread back. A right-padded mask
is already in that form: it goes to the kernels as ``lengths`` unchanged.
``go_backwards`` reverses the whole padded sequence (mask included) and
returns outputs in that reversed order, as Keras does.
"""
import os

import numpy as np

from .graph import Graph, Node
from .keras import from_keras_weights
from .keras_file import from_file, from_model
from .onnx_ops import OPS

__all__ = ["from_keras", "KerasModel", "KerasRecurrent", "SUPPORTED_LAYERS"]

_RECURRENT = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "SimpleRNN"}


def _fn(f):
    """A Node function of one input from an array function."""
    return lambda x, a, o: [f(x[0])]


def _sigmoid(v):
    return OPS["Sigmoid"]([v], {}, 21)[0]


def _relu6(v):
    return np.clip(v, 0, 6)


def _elu(v, alpha=1.0):
    return np.where(v > 0, v, alpha * np.expm1(np.minimum(v, 0)))


def _gelu(v):  # Keras's default, exact: x/2 (1 + erf(x / sqrt 2))
    return 0.5 * v * (1 + OPS["Erf"]([v / np.float32(np.sqrt(2))], {}, 21)[0])


# Keras activation name -> (ONNX operator, its attributes) or (None, array function)
_ACTIVATIONS = {
    "linear": None,
    "relu": ("Relu", {}), "tanh": ("Tanh", {}), "sigmoid": ("Sigmoid", {}),
    "exponential": ("Exp", {}),
    "softmax": ("Softmax", {"axis": -1}), "log_softmax": ("LogSoftmax", {"axis": -1}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.2}),
    "relu6": (None, _relu6),
    "elu": (None, _elu),
    "selu": (None, lambda v: 1.0507009873554805 * _elu(v, 1.6732632423543772)),
    "softplus": (None, lambda v: np.logaddexp(0, v)),
    "softsign": (None, lambda v: v / (1 + np.abs(v))),
    "silu": (None, lambda v: v * _sigmoid(v)), "swish": (None, lambda v: v * _sigmoid(v)),
    "gelu": (None, _gelu),
    "hard_sigmoid": (None, lambda v: _relu6(v + 3) / 6),
    "hard_silu": (None, lambda v: v * _relu6(v + 3) / 6),
    "hard_swish": (None, lambda v: v * _relu6(v + 3) / 6),
    "mish": (None, lambda v: v * np.tanh(np.logaddexp(0, v))),
}


def _keep_mask(x, mask):
    """[..., T, F] where [..., T] is True, else 0."""
    return np.where(mask[..., None], x, np.zeros((), x.dtype))


# ------------------------------------------------------------ recurrent layers

def keras_scan(layer, x, mask, hx, *, go_backwards=False, zero_output=False):
    """One Keras recurrent layer over batch-first x [N, T, I] with mask
    [N, T] (or None) from initial state hx (rnncore's: h [1, N, H], or (h, c)
    for LSTM; None for zeros): the output sequence [N, T, H] in Keras's
    processing order and the final state (as the layer returns it). See the
    module docstring for the mask semantics."""
    lstm = layer.mode == "LSTM"
    if go_backwards:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    if mask is None or mask.all():
        return layer(np.ascontiguousarray(x), hx)
    N, T = mask.shape
    counts = mask.sum(axis=1)
    if (mask == (np.arange(T) < counts[:, None])).all():  # right padding: lengths as they are
        packed = x
    else:  # the unmasked steps first, in order (a stable sort of the masked flags)
        order = np.argsort(~mask, axis=1, kind="stable")
        packed = np.take_along_axis(x, order[:, :, None], axis=1)
    y, state = layer(np.ascontiguousarray(packed), hx, lengths=np.maximum(counts, 1))
    # step t shows the output of the latest unmasked step at or before it:
    # packed index cumsum(mask) - 1 (-1: none yet, zeros)
    latest = np.cumsum(mask, axis=1) - 1
    y = np.take_along_axis(y, np.maximum(latest, 0)[:, :, None], axis=1)
    y = _keep_mask(y, mask if zero_output else latest >= 0)
    empty = counts == 0  # nothing ran: the initial state stays
    if empty.any():
        states = list(state) if lstm else [state]
        init = list(hx) if lstm and hx is not None else [hx] * len(states)
        for s, s0 in zip(states, init):
            s[:, empty] = 0 if s0 is None else s0[:, empty]
        state = tuple(states) if lstm else states[0]
    return y, state


class KerasRecurrent:
    """A Keras LSTM / GRU / SimpleRNN layer as a graph step: inputs
    [x, mask or "", initial states ...], outputs [output, *final states]
    (Keras's [h, c] for LSTM, [h] otherwise). With ``stateful`` the final
    states are kept and start the next run (``reset_states``)."""

    op_type = "KerasRecurrent"

    def __init__(self, name, kind, config, weights, inputs, outputs, *, zero_output=None,
                 go_backwards=None):
        self.name, self.kind = name, kind
        self.inputs, self.outputs = list(inputs), list(outputs)
        activation = config.get("activation", "tanh")
        if kind == "SimpleRNN":
            if activation not in ("tanh", "relu"):
                raise NotImplementedError(f"Keras layer {name!r} (SimpleRNN): activation "
                                          f"{activation!r}; 'tanh' and 'relu' are supported")
        elif activation != "tanh" or config.get("recurrent_activation", "sigmoid") != "sigmoid":
            raise NotImplementedError(
                f"Keras layer {name!r} ({kind}): activation {activation!r} / recurrent_activation "
                f"{config.get('recurrent_activation')!r}; the defaults 'tanh' / 'sigmoid' are "
                "supported")
        try:
            self.layer = from_keras_weights(kind, list(weights),
                                            reset_after=bool(config.get("reset_after", True)),
                                            activation=activation, batch_first=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Keras layer {name!r} ({kind}): {e}") from None
        units = int(config.get("units", self.layer.hidden_size))
        if units != self.layer.hidden_size:
            raise ValueError(f"Keras layer {name!r} ({kind}): units = {units} but its weights "
                             f"have {self.layer.hidden_size}")
        self.lstm = kind == "LSTM"
        self.return_sequences = bool(config.get("return_sequences", False))
        self.go_backwards = bool(config.get("go_backwards", False)) if go_backwards is None \
            else go_backwards
        self.zero_output = bool(config.get("zero_output_for_mask", False)) if zero_output is None \
            else zero_output
        self.stateful = bool(config.get("stateful", False))
        self.state = None  # stateful: the last run's final states, Keras's list

    def reset_states(self):
        self.state = None

    def _x(self, values):
        x = np.asarray(values[self.inputs[0]])
        I = self.layer.input_size
        if x.ndim != 3 or x.shape[2] != I or x.shape[1] == 0:
            raise ValueError(f"Keras layer {self.name!r} ({self.kind}) needs input (batch, "
                             f"timesteps >= 1, {I}), got shape {x.shape}")
        return x.astype(np.float32, copy=False)

    def run(self, values):
        x = self._x(values)
        N, T = x.shape[:2]
        mask = values[self.inputs[1]] if len(self.inputs) > 1 and self.inputs[1] else None
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.shape != (N, T):
                raise ValueError(f"Keras layer {self.name!r}: mask shape {mask.shape}, input "
                                 f"{x.shape}")
        init = [np.asarray(values[i], np.float32) for i in self.inputs[2:] if i] or None
        if init is None and self.stateful:
            init = self.state
        n_states = 2 if self.lstm else 1
        H = self.layer.hidden_size
        if init is not None:
            if len(init) != n_states or any(s.shape != (N, H) for s in init):
                what = "[h, c]" if self.lstm else "[h]"
                raise ValueError(f"Keras layer {self.name!r} ({self.kind}): states must be "
                                 f"{what}, each ({N}, {H}), got {[s.shape for s in init]}"
                                 + (" (stateful: the batch size is fixed; reset_states() "
                                    "first)" if self.stateful else ""))
            hx = tuple(np.ascontiguousarray(s[None]) for s in init)
            hx = hx if self.lstm else hx[0]
        else:
            hx = None
        y, state = keras_scan(self.layer, x, mask, hx, go_backwards=self.go_backwards,
                              zero_output=self.zero_output)
        states = [s[0] for s in state] if self.lstm else [state[0]]
        if self.stateful:
            self.state = [s.copy() for s in states]
        out = y if self.return_sequences else np.ascontiguousarray(y[:, -1])
        return {n: v for n, v in zip(self.outputs, [out] + states) if n}


# ------------------------------------------------------------ lowering


def _dtype_name(dtype):
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", dtype.get("class_name"))
    return dtype


class _Lowering:
    """Builds the graph: constants, steps, recurrent steps (for
    reset_states), a unique name per value."""

    def __init__(self, source):
        self.source = source
        self.consts, self.steps, self.recurrent = {}, [], []

    def const(self, name, value):
        self.consts[name] = value
        return name

    def node(self, op_type, name, inputs, attrs=None, fn=None, outputs=1):
        outs = [f"{name}/{op_type}:{k}" for k in range(outputs)]
        self.steps.append(Node(op_type, name, inputs, outs, attrs, fn=fn))
        return outs[0] if outputs == 1 else outs

    def weights(self, layer, sub, count, cls):
        w = self.source.weights(layer, sub)
        if len(w) not in count:
            raise ValueError(f"{self.source.origin}: Keras layer {layer!r} ({cls}) has "
                             f"{len(w)} weight arrays, expected {' or '.join(map(str, count))}")
        return w

    def activation(self, name, x, activation):
        if not isinstance(activation, str) or activation not in _ACTIVATIONS:
            raise NotImplementedError(f"Keras layer {name!r}: activation {activation!r} is not "
                                      f"supported; supported: {', '.join(sorted(_ACTIVATIONS))}")
        spec = _ACTIVATIONS[activation]
        if spec is None:
            return x
        op, what = spec
        if op is None:
            return self.node(activation, name, [x], fn=_fn(lambda v, f=what: f(v).astype(v.dtype)))
        return self.node(op, name, [x], dict(what))

    def dense(self, name, x, config, sub):
        w = self.weights(name, sub, (1, 2), "Dense")
        kernel = np.asarray(w[0], np.float32)
        units = int(config.get("units", kernel.shape[-1]))
        if kernel.ndim != 2 or kernel.shape[1] != units:
            raise ValueError(f"{self.source.origin}: Keras layer {name!r} (Dense): kernel "
                             f"{kernel.shape} for {units} units")
        y = self.node("MatMul", name, [x, self.const(f"{name}/kernel", kernel)])
        if config.get("use_bias", True):
            if len(w) != 2 or np.shape(w[1]) != (units,):
                raise ValueError(f"{self.source.origin}: Keras layer {name!r} (Dense): the "
                                 f"bias must be ({units},)")
            bias = self.const(f"{name}/bias", np.asarray(w[1], np.float32))
            y = self.node("Add", name, [y, bias])
        return self.activation(name, y, config.get("activation", "linear"))

    def recurrent_step(self, name, cls, config, sub, x, mask, init, outputs, **options):
        w = self.weights(name, sub, (2, 3), cls)
        step = KerasRecurrent(name, cls, config, w, [x, mask or ""] + list(init), outputs,
                              **options)
        self.steps.append(step)
        self.recurrent.append(step)
        return step


def _check_options(name, cls, config, allowed):
    """Refuse options that change results and are not converted."""
    for key, ok in allowed.items():
        if key in config and config[key] not in ok:
            raise NotImplementedError(f"Keras layer {name!r} ({cls}): {key} = {config[key]!r} "
                                      f"is not supported (supported: {list(ok)})")


# Each lowering: (ctx, name, config, inputs [(value, mask)], kwargs) -> [(value, mask)]

def _embedding(ctx, name, config, inputs, kwargs):
    (ids, _), = inputs
    table = np.asarray(ctx.weights(name, "", (1,), "Embedding")[0], np.float32)
    V = int(config.get("input_dim", table.shape[0]))
    if table.ndim != 2 or table.shape[0] != V:
        raise ValueError(f"{ctx.source.origin}: Keras layer {name!r} (Embedding): table "
                         f"{table.shape} for input_dim {V}")

    def check(x, a, o):  # Keras casts to int32 (floats truncate); ids must index the table
        v = np.asarray(x[0])
        if v.dtype.kind not in "biuf":
            raise TypeError(f"Keras layer {name!r} (Embedding): ids must be numbers, got "
                            f"dtype {v.dtype}")
        v = v.astype(np.int64)
        if v.size and (v.min() < 0 or v.max() >= V):
            raise ValueError(f"Keras layer {name!r} (Embedding): ids must be in [0, {V}), got "
                             f"values from {v.min()} to {v.max()}")
        return [v]

    ids = ctx.node("Ids", name, [ids], fn=check)
    y = ctx.node("Gather", name, [ctx.const(f"{name}/embeddings", table), ids])
    mask = ctx.node("MaskZero", name, [ids], fn=_fn(lambda v: v != 0)) \
        if config.get("mask_zero") else None
    return [(y, mask)]


def _masking(ctx, name, config, inputs, kwargs):
    (x, _), = inputs
    value = np.float32(config.get("mask_value", 0.0))
    mask = ctx.node("Mask", name, [x], fn=_fn(lambda v: np.any(v != value, axis=-1)))
    return [(ctx.node("Where", name, [x, mask], fn=lambda a, at, o: [_keep_mask(a[0], a[1])]),
             mask)]


def _dense(ctx, name, config, inputs, kwargs):
    (x, mask), = inputs
    return [(ctx.dense(name, x, config, ""), mask)]


def _time_distributed(ctx, name, config, inputs, kwargs):
    (x, mask), = inputs
    inner = config.get("layer", {})
    if inner.get("class_name") != "Dense":
        raise NotImplementedError(f"Keras layer {name!r}: TimeDistributed of "
                                  f"{inner.get('class_name')!r}; TimeDistributed(Dense) is "
                                  "supported")
    return [(ctx.dense(name, x, inner.get("config", {}), "layer"), mask)]


def _dropout(ctx, name, config, inputs, kwargs):
    return list(inputs)  # inference: the identity


def _activation(ctx, name, config, inputs, kwargs):
    (x, mask), = inputs
    return [(ctx.activation(name, x, config.get("activation", "linear")), mask)]


def _pooling(reduce):
    def lower(ctx, name, config, inputs, kwargs):
        (x, mask), = inputs
        axis = 1 if config.get("data_format", "channels_last") in ("channels_last", None) else 2
        keep = int(bool(config.get("keepdims", False)))
        if reduce == "ReduceMean" and mask is not None:
            # the mean over unmasked steps: sum(where(mask, x, 0)) / count
            def masked_mean(a, at, o):
                v, m = a
                m = np.expand_dims(m, 2 if axis == 1 else 1)
                total = np.sum(np.where(m, v, 0), axis=axis, keepdims=bool(keep))
                return [(total / np.sum(m, axis=axis, keepdims=bool(keep))).astype(v.dtype)]
            return [(ctx.node("MaskedMean", name, [x, mask], fn=masked_mean), None)]
        axes = ctx.const(f"{name}/axes", np.array([axis], np.int64))
        return [(ctx.node(reduce, name, [x, axes], {"keepdims": keep}), None)]
    return lower


def _mask_op(fn):
    """A mask operation of a functional config (keras.src.ops): NotEqual(x,
    scalar), Any(x, axis, keepdims)."""
    def lower(ctx, name, config, inputs, kwargs):
        return [(ctx.node(name, name, [v for v, _ in inputs], fn=fn(config)), None)]
    return lower


def _not_equal(config):
    return lambda a, at, o: [np.not_equal(a[0], a[1])]


def _any(config):
    axis, keep = config.get("axis"), bool(config.get("keepdims", False))
    axis = tuple(axis) if isinstance(axis, list) else axis
    return lambda a, at, o: [np.any(a[0], axis=axis, keepdims=keep)]


_RNN_OPTIONS = {"unroll": (True, False), "time_major": (False,)}


def _recurrent(ctx, name, config, inputs, kwargs, cls):
    _check_options(name, cls, config, _RNN_OPTIONS)
    (x, mask), = inputs[:1]
    init = kwargs.get("initial_state", [])
    n = 3 if cls == "LSTM" else 2
    outs = [f"{name}:{k}" for k in range(n)]
    ctx.recurrent_step(name, cls, config, "cell", x, mask, init, outs)
    out_mask = mask if config.get("return_sequences") else None
    if config.get("return_state"):
        return [(outs[0], out_mask)] + [(o, None) for o in outs[1:]]
    return [(outs[0], out_mask)]


def _bidirectional(ctx, name, config, inputs, kwargs):
    (x, mask), = inputs[:1]
    forward = config.get("layer", {})
    backward = config.get("backward_layer") or forward
    merge = config.get("merge_mode", "concat")
    if merge not in ("concat", "sum", "mul", "ave", None):
        raise NotImplementedError(f"Keras layer {name!r} (Bidirectional): merge_mode {merge!r}")
    cls = forward.get("class_name")
    if cls not in _RECURRENT or backward.get("class_name") not in _RECURRENT:
        raise NotImplementedError(f"Keras layer {name!r}: Bidirectional of {cls!r}; LSTM, GRU "
                                  "and SimpleRNN are supported")
    fcfg, bcfg = forward.get("config", {}), backward.get("config", {})
    seqs = bool(fcfg.get("return_sequences"))
    init = list(kwargs.get("initial_state", []))
    half = len(init) // 2
    results = []
    for tag, c, cfg, go_back, states in (("forward", cls, fcfg, bool(fcfg.get("go_backwards")),
                                          init[:half]),
                                         ("backward", backward["class_name"], bcfg,
                                          not bool(fcfg.get("go_backwards")), init[half:])):
        _check_options(name, c, cfg, _RNN_OPTIONS)
        n = 3 if c == "LSTM" else 2
        outs = [f"{name}/{tag}:{k}" for k in range(n)]
        # Bidirectional forces zero_output_for_mask = return_sequences on both
        ctx.recurrent_step(name, c, cfg, f"{tag}_layer/cell", x, mask, states, outs,
                           zero_output=seqs, go_backwards=go_back)
        results.append(outs)
    (y, *fs), (y_rev, *bs) = results
    if seqs:  # the backward outputs back in time order
        y_rev = ctx.node("ReverseTime", name, [y_rev],
                         fn=_fn(lambda v: np.ascontiguousarray(v[:, ::-1])))
    out_mask = mask if seqs else None
    if merge is None:
        outputs = [(y, out_mask), (y_rev, out_mask)]
    elif merge == "concat":
        outputs = [(ctx.node("Concat", name, [y, y_rev], {"axis": -1}), out_mask)]
    elif merge == "sum":
        outputs = [(ctx.node("Add", name, [y, y_rev]), out_mask)]
    elif merge == "mul":
        outputs = [(ctx.node("Mul", name, [y, y_rev]), out_mask)]
    else:  # ave: (y + y_rev) / 2
        total = ctx.node("Add", name, [y, y_rev])
        two = ctx.const(f"{name}/two", np.array(2, np.float32))
        outputs = [(ctx.node("Div", name, [total, two]), out_mask)]
    if config.get("return_state", fcfg.get("return_state")):
        outputs += [(s, None) for s in fs + bs]
    return outputs


_LOWER = {
    "Embedding": _embedding, "Masking": _masking, "Dense": _dense,
    "TimeDistributed": _time_distributed, "Dropout": _dropout, "Activation": _activation,
    "GlobalAveragePooling1D": _pooling("ReduceMean"),
    "GlobalMaxPooling1D": _pooling("ReduceMax"),
    "Bidirectional": _bidirectional,
    "NotEqual": _mask_op(_not_equal), "Any": _mask_op(_any),
    **{c: (lambda ctx, n, cfg, i, k, c=c: _recurrent(ctx, n, cfg, i, k, c)) for c in _RECURRENT},
}
SUPPORTED_LAYERS = tuple(sorted(list(_LOWER) + ["InputLayer"]))
_REFUSED = {"Lambda": "Lambda layers hold Python code, which rnncore never runs from a model"}


def _lower_layer(ctx, layer, inputs, kwargs):
    cls, config = layer.get("class_name"), layer.get("config") or {}
    name = config.get("name", layer.get("name"))
    where = f"{ctx.source.origin}: Keras layer {name!r} ({cls})"
    if cls in _REFUSED:
        raise NotImplementedError(f"{where}: {_REFUSED[cls]}")
    if cls not in _LOWER:
        raise NotImplementedError(f"{where} is not supported; supported layers: "
                                  f"{', '.join(SUPPORTED_LAYERS)}")
    dtype = _dtype_name(config.get("dtype"))
    if cls not in ("InputLayer", "NotEqual", "Any") and dtype not in (None, "float32"):
        raise NotImplementedError(f"{where}: dtype policy {dtype!r}; float32 is supported")
    if cls == "Embedding" and config.get("quantization_config"):
        raise NotImplementedError(f"{where}: quantized embeddings are not supported")
    if "mask" in kwargs:  # an explicit mask (as functional configs record) replaces the implicit
        kwargs = dict(kwargs)
        inputs = [(inputs[0][0], kwargs.pop("mask"))] + list(inputs[1:])
    return _LOWER[cls](ctx, name, config, inputs, kwargs)


# ------------------------------------------------------------ model structure

def _input_spec(layer):
    config = layer.get("config", {})
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if shape is None and "shape" in config:
        shape = [None] + list(config["shape"])
    return config.get("name", layer.get("name")), shape, str(config.get("dtype") or "float32")


def _sequential(ctx, config):
    layers = list(config.get("layers", []))
    if layers and layers[0].get("class_name") == "InputLayer":
        spec = _input_spec(layers.pop(0))
    else:
        first = layers[0] if layers else {}
        shape = config.get("build_input_shape") or \
            (first.get("build_config") or {}).get("input_shape")
        if shape is None:
            raise ValueError(f"{ctx.source.origin}: the Sequential model has no input shape "
                             "(not built)")
        dtype = "int32" if first.get("class_name") == "Embedding" else "float32"
        spec = ("input", list(shape), dtype)
    tensors = [(spec[0], None)]
    for k, layer in enumerate(layers):
        if len(tensors) != 1:
            raise ValueError(f"{ctx.source.origin}: Sequential layer {k} receives "
                             f"{len(tensors)} tensors; only the last layer may return several")
        tensors = _lower_layer(ctx, layer, tensors, {})
    return [spec], spec[0], [v for v, _ in tensors] if len(tensors) > 1 else tensors[0][0]


def _history(value):
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return tuple(value["config"]["keras_history"])
    return None


def _structure(refs, fn):
    """refs (one [layer, node, index], a list of them, or a dict) mapped by fn."""
    if isinstance(refs, dict):
        return {k: _structure(v, fn) for k, v in refs.items()}
    if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str) and \
            all(isinstance(v, int) for v in refs[1:]):
        return fn(tuple(refs))
    if isinstance(refs, list):
        return [_structure(r, fn) for r in refs]
    raise ValueError(f"model inputs / outputs {refs!r} are not layer references")


def _functional(ctx, config):
    origin = ctx.source.origin
    layers = {layer.get("name", layer.get("config", {}).get("name")): layer
              for layer in config.get("layers", [])}
    tensors = {}  # (layer, node, index) -> (value, mask)
    specs = []

    def ref(h):
        if h not in tensors:
            raise ValueError(f"{origin}: the functional config reads tensor {list(h)}, which "
                             "no earlier layer makes")
        return tensors[h]

    for lname, layer in layers.items():
        if layer.get("class_name") == "InputLayer":
            spec = _input_spec(layer)
            specs.append(spec)
            tensors[(lname, 0, 0)] = (spec[0], None)
            continue
        for n, call in enumerate(layer.get("inbound_nodes", [])):
            args, kw = call.get("args", []), call.get("kwargs", {})
            first = args[0] if args else None
            items = first if isinstance(first, list) else [first]
            if not items or any(_history(t) is None for t in items):
                raise ValueError(f"{origin}: Keras layer {lname!r}: its input is not a tensor")
            inputs = [ref(_history(t)) for t in items]
            for extra in args[1:]:  # scalar operands of mask operations
                inputs.append((ctx.const(f"{lname}/{n}/arg{len(inputs)}", np.asarray(extra)),
                               None) if _history(extra) is None else ref(_history(extra)))
            kwargs = {}
            for key, value in kw.items():
                if key == "training":
                    continue
                if key == "mask":
                    m = value[0] if isinstance(value, list) else value
                    kwargs["mask"] = None if m is None else ref(_history(m))[0]
                elif key == "initial_state":
                    kwargs["initial_state"] = [ref(_history(s))[0] for s in (
                        value if isinstance(value, list) else [value])]
                else:
                    raise NotImplementedError(f"{origin}: Keras layer {lname!r} is called "
                                              f"with {key}=, which is not supported")
            outs = _lower_layer(ctx, layer, inputs, kwargs)
            for k, t in enumerate(outs):
                tensors[(lname, n, k)] = t
    input_names = _structure(config.get("input_layers", []), lambda h: ref(h)[0])
    outputs = _structure(config.get("output_layers", []), lambda h: ref(h)[0])
    if isinstance(outputs, list) and len(outputs) == 1:  # Keras returns the array itself
        outputs = outputs[0]
    by_name = {s[0]: s for s in specs}
    flat = input_names if isinstance(input_names, list) else (
        list(input_names.values()) if isinstance(input_names, dict) else [input_names])
    return [by_name[n] for n in flat], input_names, outputs


def _flatten(structure):
    if isinstance(structure, dict):
        return [v for s in structure.values() for v in _flatten(s)]
    if isinstance(structure, list):
        return [v for s in structure for v in _flatten(s)]
    return [structure]


def _rebuild(structure, values):
    if isinstance(structure, dict):
        return {k: _rebuild(s, values) for k, s in structure.items()}
    if isinstance(structure, list):
        return [_rebuild(s, values) for s in structure]
    return values[structure]


class KerasModel:
    """A converted Keras model (see the module docstring): ``predict(x)``
    (also ``model(x)``) on NumPy input gives what Keras's ``model.predict(x)``
    gives; ``reset_states()`` clears the states of stateful layers."""

    def __init__(self, source):
        ctx = _Lowering(source)
        top = source.config
        cls, config = top.get("class_name"), top.get("config") or {}
        if cls == "Sequential":
            specs, self._inputs, self._outputs = _sequential(ctx, config)
        elif cls in ("Functional", "Model") and "layers" in config:
            specs, self._inputs, self._outputs = _functional(ctx, config)
        else:
            raise NotImplementedError(f"{source.origin}: Keras model class {cls!r}; Sequential "
                                      "and functional models are supported")
        self.name, self.origin = config.get("name"), source.origin
        self._specs = specs
        self._recurrent = ctx.recurrent
        self.graph = Graph(ctx.consts, [s[0] for s in specs], _flatten(self._outputs), ctx.steps)

    def reset_states(self):
        for step in self._recurrent:
            step.reset_states()

    def _feeds(self, x):
        if isinstance(self._inputs, dict):
            if not isinstance(x, dict):
                raise TypeError(f"this model's inputs are {sorted(self._inputs)}: pass a dict")
            given = {self._inputs[k]: v for k, v in x.items() if k in self._inputs}
        elif isinstance(self._inputs, list):
            if len(self._inputs) == 1 and not isinstance(x, (list, tuple)):
                x = [x]  # one input: the array itself, or in a list, as Keras takes it
            if not isinstance(x, (list, tuple)) or len(x) != len(self._inputs):
                raise TypeError(f"this model has {len(self._inputs)} inputs {self._inputs}: "
                                "pass a list of as many arrays")
            given = dict(zip(self._inputs, x))
        else:
            given = {self._inputs: x}
        feeds = {}
        for name, shape, dtype in self._specs:
            if name not in given:
                raise ValueError(f"missing model input {name!r}")
            v = np.asarray(given[name])
            if v.dtype.kind not in "biuf":
                raise TypeError(f"model input {name!r} must be a numeric array, got dtype "
                                f"{v.dtype}")
            if shape is not None and (v.ndim != len(shape) or any(
                    s is not None and s != d for s, d in zip(shape, v.shape))):
                want = tuple("batch" if s is None and k == 0 else s for k, s in enumerate(shape))
                raise ValueError(f"model input {name!r} must have shape {want}, got {v.shape}")
            if v.ndim == 0 or v.shape[0] == 0:
                raise ValueError(f"model input {name!r} has no samples (shape {v.shape})")
            # integer inputs (token ids) keep their Input dtype; the rest is float32
            integer = dtype in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")
            feeds[name] = v.astype(np.dtype(dtype) if integer else np.float32, copy=False)
        return feeds

    def predict(self, x, batch_size=None, verbose=None):
        """Keras's ``model.predict(x)``: the outputs (an array, or the model's
        list / dict of them) as float32 NumPy arrays. The whole batch runs at
        once (batch_size and verbose are accepted for Keras's signature)."""
        names = self.graph.outputs
        values = dict(zip(names, self.graph.run(self._feeds(x))))
        return _rebuild(self._outputs, values)

    __call__ = predict

    def __repr__(self):
        return f"<rnncore KerasModel {self.name!r} from {self.origin}>"


def from_keras(model):
    """A :class:`KerasModel` from a Keras 3 model object or the path of a
    ``.keras`` file (read without Keras; its weights need h5py)."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        return KerasModel(from_file(os.fsdecode(model)))
    if not hasattr(model, "get_layer") or not hasattr(model, "get_config"):
        raise TypeError(f"from_keras takes a Keras model or a .keras file path, got "
                        f"{type(model).__name__}")
    return KerasModel(from_model(model))
