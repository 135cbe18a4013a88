"""``layer.to_onnx(path)``: an rnncore layer as an ONNX graph of the ONNX
``RNN``, ``GRU`` and ``LSTM`` operators, so that ONNX Runtime (or any ONNX
consumer) can check or run it. The ``onnx`` package is imported lazily.

Graph (opset 14): inputs ``X`` ``[T, N, I]`` (``[N, T, I]`` if batch_first),
and with ``initial_state=True`` ``initial_h`` (and ``initial_c``)
``[L*D, N, H]``; outputs ``Y`` (rnncore's output layout), ``Y_h`` (and
``Y_c``) ``[L*D, N, H]``. One operator per layer; between layers ONNX's
``[T, D, N, H]`` output becomes the next ``[T, N, D*H]`` input (Transpose,
Reshape). Gate blocks are reordered from PyTorch's (LSTM i,f,g,o -> ONNX
i,o,f,c; GRU r,z,n -> z,r,h; peepholes p_i,p_f,p_o -> ONNX P i,o,f).

An LSTM with a projection (``proj_size`` R) has no ONNX operator: each
layer-direction becomes the input projection of all steps at once (MatMul,
Add) and a ``Scan`` over time whose body is one step of the cell (MatMul
with W_hh, the gates, c_t, then h_t = W_hr (o * tanh(c_t))); ``Y_h`` is then
``[L*D, N, R]``. (torch.onnx.export has no such graph: its TorchScript
exporter refuses projections, and its dynamo exporter writes an LSTM node
of hidden_size R that ONNX Runtime rejects.)
"""
import numpy as np

from ..engine.layers import RNNBase
from .gates import reorder_gates

__all__ = ["to_onnx"]

OPSET = 14


def to_onnx(layer, path=None, *, initial_state=False):
    """The ONNX ModelProto of `layer` (checked with onnx.checker); written to
    `path` too when given."""
    from onnx import TensorProto, helper

    if not isinstance(layer, RNNBase):
        raise TypeError(f"layer must be an rnncore RNN, LSTM or GRU, got {type(layer).__name__}")
    if layer.proj_size:
        return _save(_projected_lstm(layer, initial_state), path)
    mode, H, L = layer.mode, layer.hidden_size, layer.num_layers
    D = layer.num_directions
    op, order = layer.cell.onnx, layer.cell.onnx_order
    sd = layer.state_dict()
    lstm = mode == "LSTM"
    nodes, inits, const, x = _start(layer)
    states = ["h", "c"] if lstm else ["h"]
    h_outs = {s: [] for s in states}
    for li in range(L):
        sfx = [f"_l{li}" + ("_reverse" if d else "") for d in range(D)]
        W = np.stack([reorder_gates(sd["weight_ih" + s], order, H) for s in sfx]).astype(np.float32)
        R = np.stack([reorder_gates(sd["weight_hh" + s], order, H) for s in sfx]).astype(np.float32)
        inputs = [x, const(f"W{li}", W), const(f"R{li}", R)]
        if layer.bias:
            B = np.stack([np.concatenate([reorder_gates(sd["bias_ih" + s], order, H),
                                          reorder_gates(sd["bias_hh" + s], order, H)]) for s in sfx])
            inputs.append(const(f"B{li}", B.astype(np.float32)))
        else:
            inputs.append("")
        inputs.append("")  # sequence_lens
        if initial_state:
            starts, ends = const(f"start{li}", [li * D]), const(f"end{li}", [(li + 1) * D])
        for s in states:
            if initial_state:
                nodes.append(helper.make_node("Slice", [f"initial_{s}", starts, ends],
                                              [f"initial_{s}{li}"]))
                inputs.append(f"initial_{s}{li}")
            else:
                inputs.append("")
        if lstm and getattr(layer, "peephole", False):
            P = np.stack([sd["peephole" + s][[*range(H), *range(2 * H, 3 * H), *range(H, 2 * H)]]
                          for s in sfx])
            inputs.append(const(f"P{li}", P.astype(np.float32)))
        while inputs and inputs[-1] == "":
            inputs.pop()
        attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        for key, value in layer.cell.onnx_options:  # the attributes that select this cell
            attrs[key] = list(value) * D if key == "activations" else value
        if lstm and getattr(layer, "input_forget", False):
            attrs["input_forget"] = 1
        outputs = [f"Y{li}"] + [f"Y_{s}{li}" for s in states]
        nodes.append(helper.make_node(op, inputs, outputs, **attrs))
        for s in states:
            h_outs[s].append(f"Y_{s}{li}")
        # [T, D, N, H] -> [T, N, D*H]
        nodes.append(helper.make_node("Transpose", [f"Y{li}"], [f"Yt{li}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Yt{li}", const(f"shape{li}", [0, 0, -1])],
                                      [f"X{li + 1}" if li + 1 < L or not layer.batch_first
                                       else "Y_tmajor"]))
        x = f"X{li + 1}"
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", ["Y_tmajor"], ["Y"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["Y"]))
    for s in states:
        nodes.append(helper.make_node("Concat", h_outs[s], [f"Y_{s}"], axis=0))

    seq = ["N", "T"] if layer.batch_first else ["T", "N"]
    graph_in = [helper.make_tensor_value_info("X", TensorProto.FLOAT, seq + [layer.input_size])]
    if initial_state:
        graph_in += [helper.make_tensor_value_info(f"initial_{s}", TensorProto.FLOAT, [L * D, "N", H])
                     for s in states]
    graph_out = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, seq + [D * H])]
    graph_out += [helper.make_tensor_value_info(f"Y_{s}", TensorProto.FLOAT, [L * D, "N", H])
                  for s in states]
    graph = helper.make_graph(nodes, f"rnncore_{mode.lower()}", graph_in, graph_out,
                              initializer=inits)
    return _save(_model(graph), path)


def _start(layer):
    """(nodes, initializers, const, x) of a layer's graph: const(name, value)
    adds an initializer and returns its name; x is the time-major input (X,
    transposed when the layer is batch first)."""
    from onnx import helper, numpy_helper
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    if not layer.batch_first:
        return nodes, inits, const, "X"
    nodes.append(helper.make_node("Transpose", ["X"], ["X_tmajor"], perm=[1, 0, 2]))
    return nodes, inits, const, "X_tmajor"


def _model(graph):
    from onnx import helper
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8,
                             producer_name="rnncore")


def _save(model, path):
    import onnx
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, path)
    return model


def _step_body(sd, sfx, H, R, peephole, input_forget):
    """The Scan body of one projected LSTM step: state (h [N, R], c [N, H])
    and scan input gx_t [N, 4H] (x_t W_ih^T + b_ih + b_hh) ->
    (h_t, c_t, y_t = h_t). Gates in PyTorch's order i, f, g, o."""
    from onnx import TensorProto, helper, numpy_helper
    consts = {"W_hh_T": sd["weight_hh" + sfx].T, "W_hr_T": sd["weight_hr" + sfx].T}
    nodes = [
        helper.make_node("MatMul", ["h_prev", "W_hh_T"], ["rec"]),
        helper.make_node("Add", ["gx_t", "rec"], ["a"]),
        helper.make_node("Split", ["a"], ["a_i", "a_f", "a_g", "a_o"], axis=1),
    ]
    if peephole:  # p_i, p_f on c_{t-1}, p_o on c_t
        p = sd["peephole" + sfx]
        consts.update(p_i=p[:H], p_f=p[H:2 * H], p_o=p[2 * H:])
        nodes += [helper.make_node("Mul", ["c_prev", "p_i"], ["pc_i"]),
                  helper.make_node("Add", ["a_i", "pc_i"], ["a_i2"]),
                  helper.make_node("Mul", ["c_prev", "p_f"], ["pc_f"]),
                  helper.make_node("Add", ["a_f", "pc_f"], ["a_f2"])]
    a_i, a_f = ("a_i2", "a_f2") if peephole else ("a_i", "a_f")
    nodes += [helper.make_node("Sigmoid", [a_i], ["i"]), helper.make_node("Tanh", ["a_g"], ["g"])]
    if input_forget:  # f = 1 - i
        consts["one"] = np.ones(1, np.float32)
        nodes.append(helper.make_node("Sub", ["one", "i"], ["f"]))
    else:
        nodes.append(helper.make_node("Sigmoid", [a_f], ["f"]))
    nodes += [helper.make_node("Mul", ["f", "c_prev"], ["fc"]),
              helper.make_node("Mul", ["i", "g"], ["ig"]),
              helper.make_node("Add", ["fc", "ig"], ["c_t"])]
    if peephole:
        nodes += [helper.make_node("Mul", ["c_t", "p_o"], ["pc_o"]),
                  helper.make_node("Add", ["a_o", "pc_o"], ["a_o2"])]
    nodes += [helper.make_node("Sigmoid", ["a_o2" if peephole else "a_o"], ["o"]),
              helper.make_node("Tanh", ["c_t"], ["tc"]),
              helper.make_node("Mul", ["o", "tc"], ["m"]),
              helper.make_node("MatMul", ["m", "W_hr_T"], ["h_t"]),
              helper.make_node("Identity", ["h_t"], ["y_t"])]
    f32 = TensorProto.FLOAT
    return helper.make_graph(
        nodes, "lstm_projected_step",
        [helper.make_tensor_value_info("h_prev", f32, ["N", R]),
         helper.make_tensor_value_info("c_prev", f32, ["N", H]),
         helper.make_tensor_value_info("gx_t", f32, ["N", 4 * H])],
        [helper.make_tensor_value_info("h_t", f32, ["N", R]),
         helper.make_tensor_value_info("c_t", f32, ["N", H]),
         helper.make_tensor_value_info("y_t", f32, ["N", R])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(v, np.float32), k)
                     for k, v in consts.items()])


def _projected_lstm(layer, initial_state):
    """The graph of an LSTM with proj_size (see the module docstring); the
    same inputs and outputs as the other layers' graphs."""
    from onnx import TensorProto, helper, numpy_helper
    H, R, L, D = layer.hidden_size, layer.proj_size, layer.num_layers, layer.num_directions
    sd = layer.state_dict()
    peephole, input_forget = layer.peephole, layer.input_forget
    nodes, inits, const, x = _start(layer)
    if not initial_state:  # zero states [N, width], N read off the input
        nodes += [helper.make_node("Shape", [x], ["x_shape"]),
                  helper.make_node("Slice", ["x_shape", const("one_i", [1]), const("two_i", [2])],
                                   ["batch"])]
        for s, width in (("h", R), ("c", H)):
            nodes += [helper.make_node("Concat", ["batch", const(f"{s}_width", [width])],
                                       [f"{s}_zero_shape"], axis=0),
                      helper.make_node("ConstantOfShape", [f"{s}_zero_shape"], [f"{s}_zero"],
                                       value=numpy_helper.from_array(np.zeros(1, np.float32)))]
    outs = {"h": [], "c": []}
    for li in range(L):
        ys = []
        for d in range(D):
            k, sfx = li * D + d, f"_l{li}" + ("_reverse" if d else "")
            bias = (sd["bias_ih" + sfx] + sd["bias_hh" + sfx]) if layer.bias else None
            nodes.append(helper.make_node("MatMul", [x, const(f"W_ih_T{k}", np.ascontiguousarray(
                sd["weight_ih" + sfx].T))], [f"xw{k}"]))
            gx = f"xw{k}"
            if bias is not None:
                nodes.append(helper.make_node("Add", [gx, const(f"b{k}", bias)], [f"gx{k}"]))
                gx = f"gx{k}"
            start = {s: f"{s}_zero" for s in ("h", "c")}
            if initial_state:  # state k of initial_h / initial_c: Gather of a scalar index
                for s in ("h", "c"):
                    nodes.append(helper.make_node("Gather", [f"initial_{s}", const(
                        f"state{s}{k}", np.array(k, np.int64))], [f"{s}0_{k}"], axis=0))
                    start[s] = f"{s}0_{k}"
            nodes.append(helper.make_node(
                "Scan", [start["h"], start["c"], gx], [f"h_n{k}", f"c_n{k}", f"y{k}"],
                num_scan_inputs=1, scan_input_directions=[d], scan_output_directions=[d],
                body=_step_body(sd, sfx, H, R, peephole, input_forget)))
            ys.append(f"y{k}")
            for s in ("h", "c"):
                nodes.append(helper.make_node("Unsqueeze", [f"{s}_n{k}", const(f"axis0_{s}{k}", [0])],
                                              [f"{s}_n{k}_3d"]))
                outs[s].append(f"{s}_n{k}_3d")
        nxt = f"X{li + 1}" if li + 1 < L else "Y_tmajor"
        nodes.append(helper.make_node("Concat", ys, [nxt], axis=2) if D == 2
                     else helper.make_node("Identity", ys, [nxt]))
        x = nxt
    nodes.append(helper.make_node("Transpose", ["Y_tmajor"], ["Y"], perm=[1, 0, 2])
                 if layer.batch_first else helper.make_node("Identity", ["Y_tmajor"], ["Y"]))
    for s in ("h", "c"):
        nodes.append(helper.make_node("Concat", outs[s], [f"Y_{s}"], axis=0))
    f32 = TensorProto.FLOAT
    seq = ["N", "T"] if layer.batch_first else ["T", "N"]
    graph_in = [helper.make_tensor_value_info("X", f32, seq + [layer.input_size])]
    if initial_state:
        graph_in += [helper.make_tensor_value_info("initial_h", f32, [L * D, "N", R]),
                     helper.make_tensor_value_info("initial_c", f32, [L * D, "N", H])]
    graph = helper.make_graph(
        nodes, "rnncore_lstm_projected", graph_in,
        [helper.make_tensor_value_info("Y", f32, seq + [D * R]),
         helper.make_tensor_value_info("Y_h", f32, [L * D, "N", R]),
         helper.make_tensor_value_info("Y_c", f32, [L * D, "N", H])],
        initializer=inits)
    return _model(graph)
