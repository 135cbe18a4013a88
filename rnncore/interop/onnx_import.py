"""``rnncore.from_onnx(path_or_model)``: run ONNX graphs whose recurrent nodes
(ONNX ``RNN``, ``GRU`` and ``LSTM``) run on rnncore's kernels, with the
operators real exports put around them (embeddings, linear layers, softmax,
pooling, shape arithmetic: rnncore.interop.onnx_ops, SUPPORTED_OPS). The
graph is checked at load (operators, values read before they are made,
outputs nobody makes) and nodes whose inputs are all constant are computed
once there. The returned object's ``run(output_names, feeds)`` behaves like
``onnxruntime.InferenceSession.run``.

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
from ..reference import reverse_within
from .gates import inverse, reorder_gates
from .onnx_ops import OPS, Recycled, plan_constant_weight

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
        self.op, self.node = op, node
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
        inputs = list(node.input) + [""] * (8 - len(node.input))
        self.names = dict(zip(["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"],
                              inputs))
        self.D = D
        # weights, biases and peepholes given as graph inputs rather than
        # initializers: their layers are built from the first run's values
        self.fed = [self.names[n] for n in ("W", "R", "B", "P")
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
        layer.load_state_dict(sd)
        return layer

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
        sd = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
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


# the operators run here: recurrent nodes on the kernels, the rest in onnx_ops
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
SUPPORTED_OPS = tuple(sorted(RECURRENT_OPS + tuple(OPS) + ("Constant",)))


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


def _run_op(node, attrs, opset, values):
    """One NumPy operator node: its outputs by name."""
    args = [values[i] if i else None for i in node.input]
    with np.errstate(all="ignore"):  # IEEE semantics: NaN and Inf flow, as in ONNX Runtime
        results = OPS[node.op_type](args, attrs, opset)
    return {name: value for name, value in zip(node.output, results) if name}


class OnnxModel:
    """An ONNX graph of RNN/GRU/LSTM operators, run on rnncore (see the
    module docstring)."""

    def __init__(self, model):
        from onnx import helper, numpy_helper
        self.model = model
        graph = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in self.consts]
        self.outputs = [o.name for o in graph.output]
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          21)
        self.steps = []
        known = set(self.consts) | set(self.inputs) | {""}  # "": an omitted optional input
        for index, node in enumerate(graph.node):
            what = f"node {index} ({node.op_type} {node.name!r})"
            if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
                raise NotImplementedError(f"ONNX operator {node.op_type} ({what}) is not "
                                          f"supported; supported: {', '.join(SUPPORTED_OPS)}")
            unknown = [i for i in node.input if i not in known]
            if unknown:  # ONNX graphs are in topological order: a cycle or a missing value
                raise ValueError(f"ONNX graph: {what} reads {unknown}, which no graph input, "
                                 "initializer or earlier node provides")
            known.update(node.output)
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            attrs["_outputs"] = len(node.output)
            if node.op_type in RECURRENT_OPS:
                self.steps.append(_RecurrentNode(node, attrs, self.consts))
            elif node.op_type == "Constant":
                self.consts[node.output[0]] = _constant(attrs)
            elif all(i in self.consts or i == "" for i in node.input) and node.op_type != "Dropout":
                # constant folding (shape arithmetic on initializers): once, at load
                self.consts.update(_run_op(node, attrs, self.opset, self.consts))
            else:
                self.steps.append((node, attrs))
        # the plan: a node may write into an input that is an intermediate
        # (made by a node at run time) no other node reads and that is not a
        # graph output (onnx_ops: "_reusable")
        made = {o for step in self.steps for o in (step.node if isinstance(
            step, _RecurrentNode) else step[0]).output}
        reads = {}
        for n in graph.node:
            for i in n.input:
                reads[i] = reads.get(i, 0) + 1
        for step in self.steps:
            if not isinstance(step, _RecurrentNode):
                self._plan_weights(*step)
        self._fuse_bias(reads)
        for step in self.steps:
            if not isinstance(step, _RecurrentNode):
                step[1]["_reusable"] = tuple(
                    k for k, i in enumerate(step[0].input)
                    if i in made and reads.get(i) == 1 and i not in self.outputs)
        unmade = [o for o in self.outputs if o not in known]
        if unmade:
            raise ValueError(f"ONNX graph: outputs {unmade} are not produced by any node")

    def _plan_weights(self, node, attrs):
        """A MatMul or Gemm whose second operand is a constant float32 matrix
        gets it packed once, here (onnx_ops.plan_constant_weight)."""
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            return
        B = self.consts.get(node.input[1])
        if B is None or B.dtype != np.float32 or B.ndim != 2 or B.size == 0:
            return
        if node.op_type == "Gemm" and attrs.get("transB", 0):
            B = B.T
        attrs["_linear"] = plan_constant_weight(B)
        attrs["_recycled"] = Recycled()
        # Gemm's constant C [N] (a torch Linear on 2-D input) as the Linear's
        # bias, when alpha = 1: added by the kernels (onnx_ops._gemm_op skips it)
        C = self.consts.get(node.input[2]) if node.op_type == "Gemm" and len(node.input) > 2 \
            and node.input[2] else None
        if C is not None and C.dtype == np.float32 and C.size == B.shape[1] and C.ndim <= 2 \
                and C.shape[-1] == B.shape[1] and attrs.get("alpha", 1.0) == 1.0 \
                and attrs.get("beta", 1.0) != 0.0:
            beta = np.float32(attrs.get("beta", 1.0))
            attrs["_linear"] = type(attrs["_linear"]).with_bias(attrs["_linear"],
                                                                C.reshape(-1) * beta)
            attrs["_c_in_linear"] = True

    def _fuse_bias(self, reads):
        """A planned product (MatMul, or Gemm with alpha = 1 and no C) whose
        only reader is an Add of a constant float32 bias over its last axis
        (shape [Nout], or [1, ..., 1, Nout] of no higher rank) takes the bias
        into its Linear, and the Add goes: the kernels add it while writing
        the output (a linear layer's Add on a 2240 x 10k output took 3.5 ms,
        a whole pass over memory)."""
        from onnx import helper
        producer = {}
        for k, step in enumerate(self.steps):
            if not isinstance(step, _RecurrentNode):
                for o in step[0].output:
                    producer[o] = k
        drop = set()
        for k, step in enumerate(self.steps):
            if isinstance(step, _RecurrentNode) or step[0].op_type != "Add":
                continue
            node = step[0]
            if len(node.input) != 2:
                continue
            for t_name, b_name in (node.input, node.input[::-1]):
                j = producer.get(t_name)
                b = self.consts.get(b_name)
                if j is None or b is None or reads.get(t_name) != 1 or t_name in self.outputs:
                    continue
                prod, attrs = self.steps[j]
                lin = attrs.get("_linear")
                if lin is None or lin.bias is not None or len(prod.output) != 1 or \
                        (prod.op_type == "Gemm" and (len(prod.input) > 2 or
                                                     attrs.get("alpha", 1.0) != 1.0)):
                    continue
                n_out = lin.w.shape[0]
                if not isinstance(b, np.ndarray) or b.dtype != np.float32 or b.ndim > 2 or \
                        b.size != n_out or b.shape[-1] != n_out:
                    continue  # a Gemm output is 2-D: no bias of higher rank
                attrs["_linear"] = type(lin).with_bias(lin, b.reshape(n_out))
                fused = helper.make_node(prod.op_type, list(prod.input), list(node.output),
                                         name=prod.name)
                fused.attribute.extend(prod.attribute)
                self.steps[j] = (fused, attrs)
                drop.add(k)
                break
        self.steps = [step for k, step in enumerate(self.steps) if k not in drop]

    def run(self, output_names, feeds):
        """Like onnxruntime.InferenceSession.run: the named outputs (all for
        None) computed from the feeds (input name -> array)."""
        missing = [n for n in self.inputs if n not in feeds]
        unknown = [n for n in feeds if n not in self.inputs]
        if missing or unknown:
            raise ValueError(f"feeds must hold exactly the graph's inputs {self.inputs}; "
                             f"missing {missing}, unknown {unknown}")
        values = dict(self.consts)
        values.update({k: np.asarray(v) for k, v in feeds.items()})
        for step in self.steps:
            if isinstance(step, _RecurrentNode):
                values.update(step.run(values))
            else:
                node, attrs = step
                values.update(_run_op(node, attrs, self.opset, values))
        names = self.outputs if output_names is None else list(output_names)
        bad = [n for n in names if n not in self.outputs]
        if bad:
            raise ValueError(f"unknown outputs {bad}; the graph's are {self.outputs}")
        # a folded constant is the model's own: hand out copies
        return [values[n].copy() if n in self.consts else values[n] for n in names]


def from_onnx(model):
    """An :class:`OnnxModel` from an ONNX file path or ``onnx.ModelProto``."""
    import onnx
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(model)
    return OnnxModel(model)
