"""``rnncore.from_onnx(path_or_model)``: run ONNX graphs whose recurrent nodes
(ONNX ``RNN``, ``GRU`` and ``LSTM``) run on rnncore's kernels, with the
operators real exports put around them (embeddings, linear layers, softmax,
pooling, shape arithmetic: rnncore.interop.onnx_ops, SUPPORTED_OPS) and
``Scan`` (its body run step by step). The graph is checked at load
(operators, values read before they are made, outputs nobody makes, then
ONNX's strict shape and type inference) and nodes whose inputs are all
constant are computed once there. The returned object's
``run(output_names, feeds)`` behaves like ``onnxruntime.InferenceSession.run``
and refuses feeds of another element type or fixed size than the graph
declares, naming the input.

ONNX Runtime's ``com.microsoft.DynamicQuantizeLSTM`` (what
``onnxruntime.quantization.quantize_dynamic`` makes of an LSTM node: int8
W [D, I, 4H] and R [D, H, 4H] with per-tensor or per-row scales and zero
points) runs on rnncore's int8 kernels with those very int8 weights and
scales (rnncore.engine.quantized; weights of another zero point are shifted
to it and must then fit [-127, 127]). Its activations are quantized as
rnncore's are (symmetric, per row) rather than as ONNX Runtime's, so the
outputs agree with ONNX Runtime to within the activation quantization.

Supported operator attributes: ``hidden_size``, ``direction`` (forward,
reverse, bidirectional), ``layout`` 0 and 1, ``linear_before_reset`` 0 and 1,
``input_forget``, peepholes ``P``, ``sequence_lens``, ``initial_h`` /
``initial_c`` and the outputs ``Y``, ``Y_h``, ``Y_c``; ``W``, ``R``, ``B`` and
``P`` as initializers or as graph inputs (layers built from the first run's
values, rebuilt when they change; ONNX's own node cases pass them so); ``activations`` (every
function of the specification, with ``activation_alpha`` / ``activation_beta``)
and ``clip``. Nodes with the default activations (or Relu for RNN) and no
clip run on the C kernels; the others on rnncore.reference (float64 NumPy)
with the node's activation functions and clip (about 10-50x slower). Gate blocks are
converted to PyTorch's order once, at load.
"""
import numpy as np

from .. import reference
from ..engine import cells
from ..engine.layers import GRU, LSTM, RNN
from ..engine.quantized import from_quantized_state
from ..reference import reverse_within
from .gates import inverse, reorder_gates
from .graph import Graph, Node
from .onnx_ops import OPS

__all__ = ["from_onnx", "OnnxModel"]

# per operator, the ONNX gate block at each PyTorch position
_TO_TORCH = {c.onnx: inverse(c.onnx_order) for c in cells.CELLS.values()}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"],
                        "RNN": ["Tanh"]}
# ONNX activation functions: (function of x, alpha, beta), default alpha/beta
_ACTIVATIONS = {
    "Relu": (lambda x, a, b: np.maximum(x, 0), None, None),
    "Tanh": (lambda x, a, b: np.tanh(x), None, None),
    "Sigmoid": (lambda x, a, b: 1 / (1 + np.exp(-x)), None, None),
    "Affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "LeakyRelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, None),
    "ThresholdedRelu": (lambda x, a, b: np.where(x >= a, x, 0), 1.0, None),
    "ScaledTanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "HardSigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "Elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))), 1.0, None),
    "Softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "Softplus": (lambda x, a, b: np.logaddexp(0, x), None, None),
}


class _RecurrentNode:
    """One ONNX RNN/GRU/LSTM node as rnncore layers (one per direction)."""

    def __init__(self, node, attrs, consts):
        op = node.op_type
        self.int8 = op == QUANTIZED_LSTM  # int8 W and R with scales and zero points
        op = "LSTM" if self.int8 else op
        self.op, self.node = op, node
        # the graph step's interface (rnncore.interop.graph)
        self.name, self.op_type = node.name, op
        self.inputs, self.outputs = list(node.input), list(node.output)
        self.H = int(attrs["hidden_size"])
        self.direction = attrs.get("direction", b"forward")
        self.direction = self.direction.decode() if isinstance(self.direction, bytes) else self.direction
        if self.direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{op} node {node.name!r}: direction {self.direction!r}")
        self.layout = int(attrs.get("layout", 0))
        acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
        D = 2 if self.direction == "bidirectional" else 1
        default = _DEFAULT_ACTIVATIONS[op]
        if acts and len(acts) != len(default) * D:
            raise ValueError(f"{op} node {node.name!r}: {len(acts)} activations, expected "
                             f"{len(default) * D} ({len(default)} per direction)")
        unknown = sorted(set(acts) - set(_ACTIVATIONS))
        if unknown:
            raise NotImplementedError(f"{op} node {node.name!r}: activations {unknown} are not "
                                      f"ONNX activation functions ({sorted(_ACTIVATIONS)})")
        self.clip = attrs.get("clip")
        self.relu = op == "RNN" and acts == ["Relu"] * D
        self.functions = None  # None: the C kernels; else per direction the activations
        if (acts and acts != default * D and not self.relu) or self.clip is not None:
            self.functions = self._functions(acts or default * D,
                                             list(attrs.get("activation_alpha", [])),
                                             list(attrs.get("activation_beta", [])), D)
        self.linear_before_reset = int(attrs.get("linear_before_reset", 0))
        self.input_forget = int(attrs.get("input_forget", 0))
        inputs = list(node.input) + [""] * (12 - len(node.input))
        self.names = dict(zip(["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P",
                               "W_scale", "W_zero_point", "R_scale", "R_zero_point"], inputs))
        self.D = D
        # weights, biases and peepholes given as graph inputs rather than
        # initializers: their layers are built from the first run's values
        self.fed = [self.names[n] for n in ("W", "R", "B", "P", "W_scale", "W_zero_point",
                                            "R_scale", "R_zero_point")
                    if self.names[n] and self.names[n] not in consts]
        self.layers = None if self.fed else [self._layer(consts, d) for d in range(D)]
        self._built = None  # (the fed arrays, their layers)

    @staticmethod
    def _functions(acts, alphas, betas, D):
        """Per direction, the activation functions with their alpha/beta:
        the attribute lists are consumed in order by the functions that take
        them, ONNX's operator defaults otherwise."""
        fns = []
        for name in acts:
            fn, a, b = _ACTIVATIONS[name]
            if a is not None and alphas:
                a = alphas.pop(0)
            if b is not None and betas:
                b = betas.pop(0)
            fns.append(lambda x, fn=fn, a=a, b=b: fn(x, np.float32(a or 0), np.float32(b or 0)))
        per = len(fns) // D
        return [fns[d * per:(d + 1) * per] for d in range(D)]

    def _layers_from(self, values):
        """The layers of weights fed as graph inputs, rebuilt (and re-packed)
        only when the fed arrays change between runs."""
        fed = [np.asarray(values[name]) for name in self.fed]
        built = self._built
        if built is None or any(a.shape != b.shape or not np.array_equal(a, b)
                                for a, b in zip(fed, built[0])):
            built = self._built = ([a.copy() for a in fed],
                                   [self._layer(values, d) for d in range(self.D)])
        return built[1]

    def _layer(self, consts, d):
        """Direction d's layer from the node's weights in `consts` (the
        initializers, or every value of a run)."""
        op, H = self.op, self.H
        order = _TO_TORCH[op]
        W, R = np.asarray(consts[self.names["W"]]), np.asarray(consts[self.names["R"]])
        if self.int8:  # [D, K, 4H] -> [D, 4H, K] as LSTM's; scales separately
            W, R = W.transpose(0, 2, 1), R.transpose(0, 2, 1)
        if W.ndim != 3 or R.ndim != 3 or d >= min(W.shape[0], R.shape[0]):
            raise ValueError(f"{op} node {self.node.name!r}: W {W.shape} and R {R.shape} must be "
                             f"[num_directions = {self.D}, gates*hidden_size, ...]")
        W, R = W[d], R[d]
        G = len(order)
        if W.shape[0] != G * H or R.shape != (G * H, H):
            raise ValueError(f"{op} node {self.node.name!r}: W {W.shape} / R {R.shape} do not match "
                             f"hidden_size {H}")
        I = W.shape[1]
        B = consts.get(self.names["B"]) if self.names["B"] else None
        P = consts.get(self.names["P"]) if self.names["P"] else None
        if op == "LSTM":
            layer = LSTM(I, H, bias=B is not None, peephole=P is not None,
                         input_forget=bool(self.input_forget), seed=0)
        elif op == "GRU":
            layer = GRU(I, H, bias=B is not None, reset_after=bool(self.linear_before_reset), seed=0)
        else:
            layer = RNN(I, H, nonlinearity="relu" if self.relu else "tanh", bias=B is not None, seed=0)
        sd = {"weight_ih_l0": reorder_gates(W, order, H), "weight_hh_l0": reorder_gates(R, order, H)}
        if B is not None:
            sd["bias_ih_l0"] = reorder_gates(B[d][:G * H], order, H)
            sd["bias_hh_l0"] = reorder_gates(B[d][G * H:], order, H)
        if P is not None:  # ONNX P: i, o, f -> rnncore's p_i, p_f, p_o
            p = P[d]
            sd["peephole_l0"] = np.concatenate([p[:H], p[2 * H:], p[H:2 * H]])
        if self.int8:
            for name, key in (("weight_ih_l0", "W"), ("weight_hh_l0", "R")):
                sd[name] = self._int8_weight(sd[name], consts, key, d, order)
                sd[name + "_scale"] = self._int8_scale(consts, key, d, order)
            return from_quantized_state(layer, sd, f"{QUANTIZED_LSTM} node {self.node.name!r}")
        layer.load_state_dict(sd)
        return layer

    def _int8_weight(self, wq, consts, key, d, order):
        """Direction d's int8 weight (PyTorch gate order) with the node's zero
        point subtracted (0 for what quantize_dynamic writes with QInt8)."""
        zp = self._per_row(consts, key + "_zero_point", d, order, default=0)
        w = wq.astype(np.int32) - zp.astype(np.int32)[:, None]
        if w.min() < -127 or w.max() > 127:
            raise NotImplementedError(
                f"{QUANTIZED_LSTM} node {self.node.name!r}: {key} minus its zero point leaves "
                "[-127, 127] (rnncore's int8 weights are symmetric)")
        return w.astype(np.int8)

    def _int8_scale(self, consts, key, d, order):
        return self._per_row(consts, key + "_scale", d, order).astype(np.float32)

    def _per_row(self, consts, name, d, order, default=None):
        """A scale or zero point ([D] per tensor or [D, 4H] per row) as 4H rows
        in PyTorch's gate order."""
        node_name = self.names[name]
        if not node_name:
            if default is None:
                raise ValueError(f"{QUANTIZED_LSTM} node {self.node.name!r}: no {name}")
            return np.full(4 * self.H, default)
        v = np.asarray(consts[node_name])
        if v.ndim == 1 and v.shape[0] == self.D:
            return np.full(4 * self.H, v[d])
        if v.shape == (self.D, 4 * self.H):
            return reorder_gates(v[d], order, self.H)
        raise ValueError(f"{QUANTIZED_LSTM} node {self.node.name!r}: {name} has shape "
                         f"{list(v.shape)}, expected [{self.D}] or [{self.D}, {4 * self.H}]")

    def run(self, values):
        get = lambda n: values[self.names[n]] if self.names[n] else None  # noqa: E731
        x = np.asarray(get("X"), np.float32)
        if self.layout == 1:
            x = x.transpose(1, 0, 2)
        T, N = x.shape[:2]
        lengths = get("sequence_lens")
        lengths = np.full(N, T, np.int64) if lengths is None else np.asarray(lengths, np.int64)
        # every sequence whole (no sequence_lens, or all T): the layers run
        # without lengths, which skips their padded-batch path (an output
        # buffer of their own and a copy back); with the views below for one
        # direction, a node's time outside the kernels went 0.52 -> 0.16 ms
        # at T = 35, N = 64, H = 512 (bench_onnx_lm, AMD Zen 5)
        run_lengths = None if lengths.shape == (N,) and (lengths == T).all() else lengths
        h0, c0 = get("initial_h"), get("initial_c")
        if self.layout == 1:
            h0 = None if h0 is None else np.asarray(h0).transpose(1, 0, 2)
            c0 = None if c0 is None else np.asarray(c0).transpose(1, 0, 2)
        ys, hs, cs = [], [], []
        for d, layer in enumerate(self.layers or self._layers_from(values)):
            reverse = self.direction == "reverse" or d == 1
            src = reverse_within(x, lengths) if reverse else x
            hx = None
            if h0 is not None or c0 is not None:
                h = np.zeros((1, N, self.H), np.float32) if h0 is None else h0[d:d + 1]
                c = np.zeros((1, N, self.H), np.float32) if c0 is None else c0[d:d + 1]
                hx = (h, c) if self.op == "LSTM" else h
            if self.functions is None:
                y, state = layer(np.ascontiguousarray(src), hx, lengths=run_lengths)
                h_n, c_n = state if self.op == "LSTM" else (state, None)
            else:
                y, h_n, c_n = self._reference_direction(layer, self.functions[d], src, hx, lengths)
            ys.append(reverse_within(y, lengths) if reverse else y)
            hs.append(h_n[0])
            cs.append(c_n[0] if c_n is not None else None)
        if len(ys) == 1:  # one direction: views, not copies (4.5 MB at N = 64)
            Y, Y_h = ys[0][:, None], hs[0][None]
            Y_c = cs[0][None] if self.op == "LSTM" else None
        else:
            Y = np.stack(ys, axis=1)  # [T, D, N, H]
            Y_h = np.stack(hs)        # [D, N, H]
            Y_c = np.stack(cs) if self.op == "LSTM" else None
        if self.layout == 1:
            Y, Y_h = Y.transpose(2, 0, 1, 3), Y_h.transpose(1, 0, 2)
            Y_c = None if Y_c is None else Y_c.transpose(1, 0, 2)
        out = [Y, Y_h, Y_c]
        return {name: value for name, value in zip(self.node.output, out) if name}


    def _reference_direction(self, layer, fns, x, hx, lengths):
        """One direction on rnncore.reference (float64) with the node's
        activation functions and clip, on the layer's PyTorch-ordered
        parameters: returns y [T, N, H] (0 past each length), h_n [1, N, H]
        and c_n (or None), float32."""
        N, H = x.shape[1], self.H
        sd = layer.dequantized_state_dict() if self.int8 else layer.state_dict()
        sd = {k: v.astype(np.float64) for k, v in sd.items()}
        lstm = self.op == "LSTM"
        zeros = np.zeros((N, H))
        h0 = zeros if hx is None else np.asarray(hx[0] if lstm else hx, np.float64)[0]
        c0 = (zeros if hx is None else np.asarray(hx[1], np.float64)[0]) if lstm else None
        y, h_n, c_n = reference.layer_forward(
            layer.mode, x.astype(np.float64), h0, c0, sd["weight_ih_l0"], sd["weight_hh_l0"],
            sd.get("bias_ih_l0"), sd.get("bias_hh_l0"), peephole=sd.get("peephole_l0"),
            input_forget=lstm and layer.input_forget, lengths=lengths, acts=fns, clip=self.clip)
        return (y.astype(np.float32), h_n[None].astype(np.float32),
                None if c_n is None else c_n[None].astype(np.float32))


class _ScanNode:
    """ONNX ``Scan``: its body graph (lowered like the main graph, reading
    values of the enclosing graph by name) run once per step of the scan
    inputs, carrying the state variables. Opset >= 9 semantics (axes and
    directions per input and output); opset 8's leading batch axis with
    ``sequence_lens`` runs each batch entry alone. What rnncore's own
    ``to_onnx`` writes for an LSTM with a projection, and what exporters
    write for loops the operators above do not cover; it runs the body's
    nodes step by step in NumPy, so it is the slow path of this module."""

    def __init__(self, node, attrs, opset, outer, where):
        self.op_type, self.name, self.node = "Scan", node.name, node
        self.legacy = opset < 9
        body = attrs["body"]
        where = f"{where}Scan {node.name!r}: body "
        self.free = _check(body, outer, where)
        self.body = _lower(body, opset, self.free, where)
        self.body_inputs = [i.name for i in body.input]
        self.M = int(attrs["num_scan_inputs"])
        names = list(node.input)
        if self.legacy:
            self.seq_lens, names = (names[0] or None), names[1:]
        self.state_names, self.scan_names = names[:len(names) - self.M], names[len(names) - self.M:]
        self.S, self.K = len(self.state_names), len(body.output) - len(self.state_names)
        if self.M < 1 or self.K < 0 or len(self.body_inputs) != self.S + self.M:
            raise ValueError(f"Scan node {node.name!r}: {self.S} states and {self.M} scan inputs "
                             f"do not fit a body of {len(self.body_inputs)} inputs and "
                             f"{len(body.output)} outputs")
        self.in_dirs = list(attrs.get("scan_input_directions", attrs.get("directions", [0] * self.M)))
        self.in_axes = list(attrs.get("scan_input_axes", [0] * self.M))
        self.out_dirs = list(attrs.get("scan_output_directions", [0] * self.K))
        self.out_axes = list(attrs.get("scan_output_axes", [0] * self.K))
        if self.legacy and (any(self.in_axes) or any(self.out_axes)):
            raise ValueError(f"Scan node {node.name!r}: opset 8 has no scan axes")
        self.inputs = [n for n in node.input if n] + self.free
        self.outputs = list(node.output)

    def _scan(self, states, scans, free, T):
        """One scan over T steps: (final states, stacked scan outputs)."""
        collected = [[] for _ in range(self.K)]
        for step in range(T):
            feeds = dict(zip(self.body_inputs[:self.S], states))
            for name, x, axis, rev in zip(self.body_inputs[self.S:], scans, self.in_axes,
                                          self.in_dirs):
                feeds[name] = np.take(x, T - 1 - step if rev else step, axis=axis)
            feeds.update(free)
            out = self.body.run(feeds)
            states = out[:self.S]
            for k, v in enumerate(out[self.S:]):
                collected[k].append(v)
        stacked = []
        for k, parts in enumerate(collected):
            if self.out_dirs[k]:
                parts = parts[::-1]
            axis = self.out_axes[k]
            stacked.append(np.stack(parts, axis=axis % (parts[0].ndim + 1)))
        return states, stacked

    def run(self, values):
        states = [np.asarray(values[n]) for n in self.state_names]
        scans = [np.asarray(values[n]) for n in self.scan_names]
        free = {n: values[n] for n in self.free}
        what = f"Scan node {self.name!r}"
        if self.legacy:  # [batch, ...] states, [batch, steps, ...] scan inputs
            B = scans[0].shape[0]
            lens = (np.full(B, scans[0].shape[1], np.int64) if self.seq_lens is None
                    else np.asarray(values[self.seq_lens], np.int64))
            if lens.shape != (B,) or lens.min() < 1 or lens.max() > scans[0].shape[1]:
                raise ValueError(f"{what}: sequence_lens {lens} do not fit {scans[0].shape[1]} steps")
            results = [self._scan([s[b] for s in states], [x[b] for x in scans], free, int(lens[b]))
                       for b in range(B)]
            finals = [np.stack([r[0][i] for r in results]) for i in range(self.S)]
            outs = [np.stack([r[1][k] for r in results]) for k in range(self.K)]
        else:
            lengths = {x.shape[axis % x.ndim] for x, axis in zip(scans, self.in_axes)}
            if len(lengths) != 1:
                raise ValueError(f"{what}: scan inputs of different lengths {sorted(lengths)}")
            T = lengths.pop()
            if T < 1:
                raise ValueError(f"{what}: the scan inputs are empty (0 steps)")
            finals, outs = self._scan(states, scans, free, T)
        return dict(zip(self.outputs, list(finals) + list(outs)))


# the operators run here: recurrent nodes on the kernels, Scan by its body,
# the rest in onnx_ops
QUANTIZED_LSTM = "DynamicQuantizeLSTM"  # ONNX Runtime's, domain com.microsoft
RECURRENT_OPS = ("LSTM", "GRU", "RNN", QUANTIZED_LSTM)
SUPPORTED_OPS = tuple(sorted(RECURRENT_OPS + tuple(OPS) + ("Constant", "Scan")))


def _constant(attrs):
    """The value of a Constant node, from whichever attribute holds it."""
    from onnx import numpy_helper
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype)
    if "value_string" in attrs:
        return np.array(attrs["value_string"].decode(), dtype=object)
    if "value_strings" in attrs:
        return np.array([v.decode() for v in attrs["value_strings"]], dtype=object)
    raise NotImplementedError(f"Constant attributes {sorted(attrs)} are not supported")


class OnnxModel:
    """An ONNX graph of RNN/GRU/LSTM operators, run on rnncore (see the
    module docstring): lowered at load to rnncore.interop.graph (recurrent
    nodes as _RecurrentNode steps, the rest as onnx_ops Nodes)."""

    def __init__(self, model):
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          21)
        _check(model.graph)
        _infer_shapes(model)
        self.graph = _lower(model.graph, self.opset)
        self.input_types = _input_types(model.graph, set(self.graph.consts))

    @property
    def inputs(self):
        return self.graph.inputs

    @property
    def outputs(self):
        return self.graph.outputs

    def run(self, output_names, feeds):
        """Like onnxruntime.InferenceSession.run: the named outputs (all for
        None) computed from the feeds (input name -> array)."""
        if not hasattr(feeds, "items"):
            raise TypeError(f"feeds must be a dict of input name -> array, got {type(feeds).__name__}")
        feeds = {k: np.asarray(v) for k, v in feeds.items()}
        for name, value in feeds.items():
            if name in self.input_types:
                _check_feed(name, value, *self.input_types[name])
        return self.graph.run(feeds, output_names)


def _infer_shapes(model):
    """ONNX's own shape and type inference over the whole graph, strict: a
    graph whose shapes or types contradict each other (a Concat of ranks 1
    and 2, a MatMul of 4 by 5 against 6 by 3, an Add of float and int64) is
    refused at load, as ONNX Runtime refuses it, instead of failing in the
    middle of a run."""
    from onnx import shape_inference
    try:
        shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError, ValidationError or RuntimeError
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"ONNX graph: shapes or types do not fit: {message}") from None


def _input_types(graph, consts):
    """Per graph input: (NumPy dtype or None, dims: an int where fixed, None
    where symbolic or unknown; None for an unknown rank)."""
    from onnx import helper
    types = {}
    for value in graph.input:
        if value.name in consts or not value.type.HasField("tensor_type"):
            continue
        t = value.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)) if t.elem_type else None
        except (KeyError, TypeError):
            dtype = None
        dims = ([d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
                if t.HasField("shape") else None)
        types[value.name] = (dtype, dims)
    return types


def _check_feed(name, value, dtype, dims):
    """A feed of the declared element type and of the declared fixed sizes
    (ONNX Runtime refuses others as well)."""
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"input {name!r} must be {dtype} (the graph declares it so), "
                        f"got {value.dtype}")
    if dims is not None and (value.ndim != len(dims) or any(
            d is not None and d != n for d, n in zip(dims, value.shape))):
        want = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
        raise ValueError(f"input {name!r} must have shape {want}, got {list(value.shape)}")


def _check(graph, outer=frozenset(), where="ONNX graph: "):
    """The structural checks of a GraphProto, before anything runs:
    supported operators, every value read made before (ONNX graphs are in
    topological order, so a cycle or a missing value shows here), every
    output made; Scan bodies likewise. Returns the names of the enclosing
    graph (`outer`) it reads, in order of first use."""
    from onnx import helper
    free = []
    known = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    for index, node in enumerate(graph.node):  # "": an omitted optional input
        what = f"node {index} ({node.op_type} {node.name!r})"
        microsoft = node.domain == "com.microsoft" and node.op_type == QUANTIZED_LSTM
        if not microsoft and (node.domain not in ("", "ai.onnx") or node.op_type == QUANTIZED_LSTM
                              or node.op_type not in SUPPORTED_OPS):
            raise NotImplementedError(f"{where}ONNX operator {node.op_type} ({what}) is not "
                                      f"supported; supported: {', '.join(SUPPORTED_OPS)}")
        reads = list(node.input)
        if node.op_type == "Scan":
            body = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "body"),
                        None)
            if body is None:
                raise ValueError(f"{where}{what} has no body")
            reads += _check(body, known | set(outer), f"{where}{what}: body ")
        for name in reads:
            if name not in known and name in outer:  # a value of the enclosing graph
                free.append(name)
                known.add(name)
        unknown = [i for i in reads if i not in known]
        if unknown:
            raise ValueError(f"{where}{what} reads {unknown}, which no graph input, "
                             "initializer or earlier node provides")
        known.update(node.output)
    unmade = [o.name for o in graph.output if o.name not in known]
    if unmade:
        raise ValueError(f"{where}outputs {unmade} are not produced by any node")
    return free


def _lower(graph, opset, free=(), where="ONNX graph: "):
    """A checked (:func:`_check`) GraphProto as a rnncore.interop.graph.Graph,
    planned: nodes whose inputs are all constant are computed here, once;
    `free`: the enclosing graph's values it reads, extra inputs of the Graph."""
    from onnx import helper, numpy_helper
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in consts]
    outputs = [o.name for o in graph.output]
    steps = []
    known = set(consts) | set(inputs) | set(free)
    for index, node in enumerate(graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs["_outputs"] = len(node.output)
        if node.op_type == "Scan":
            steps.append(_ScanNode(node, attrs, opset, known, f"{where}node {index}: "))
        elif node.op_type in RECURRENT_OPS:
            steps.append(_RecurrentNode(node, attrs, consts))
        elif node.op_type == "Constant":
            consts[node.output[0]] = _constant(attrs)
        else:
            op = Node(node.op_type, node.name, node.input, node.output, attrs, opset=opset)
            if all(i in consts or i == "" for i in node.input) and node.op_type != "Dropout":
                # constant folding (shape arithmetic on initializers): once, at load
                consts.update(op.run(consts))
            else:
                steps.append(op)
        known.update(node.output)
    return Graph(consts, inputs + list(free), outputs, steps)


def from_onnx(model):
    """An :class:`OnnxModel` from an ONNX file path or ``onnx.ModelProto``."""
    import onnx
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(model)
    return OnnxModel(model)
