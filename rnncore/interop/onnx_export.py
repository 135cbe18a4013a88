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
"""
import numpy as np

from ..engine.layers import RNNBase
from .gates import reorder_gates

__all__ = ["to_onnx"]

OPSET = 14


def to_onnx(layer, path=None, *, initial_state=False):
    """The ONNX ModelProto of `layer` (checked with onnx.checker); written to
    `path` too when given."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(layer, RNNBase):
        raise TypeError(f"layer must be an rnncore RNN, LSTM or GRU, got {type(layer).__name__}")
    mode, H, L = layer.mode, layer.hidden_size, layer.num_layers
    D = layer.num_directions
    op, order = layer.cell.onnx, layer.cell.onnx_order
    sd = layer.state_dict()
    lstm = mode == "LSTM"
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    x = "X"
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_tmajor"], perm=[1, 0, 2]))
        x = "X_tmajor"
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8,
                              producer_name="rnncore")
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, path)
    return model
