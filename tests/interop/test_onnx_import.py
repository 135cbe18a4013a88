"""rnncore.from_onnx: graphs of ONNX RNN/GRU/LSTM operators run on rnncore give
what ONNX Runtime gives, attribute by attribute."""
import sys

import numpy as np
import pytest

import rnncore
from conftest import ATOL, RTOL, make_layer

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU_RB", "LSTM_PEEPHOLE", "LSTM_CIFG",
         "LSTM_PEEPHOLE_CIFG"]


def both(model, feeds):
    ours = rnncore.from_onnx(model).run(None, feeds)
    theirs = ort.InferenceSession(model.SerializeToString(),
                                  providers=["CPUExecutionProvider"]).run(None, feeds)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_of_exported_layers(mode, rng, tmp_path):
    layer = make_layer(mode, 4, 6, num_layers=2, bidirectional=True, batch_first=True, seed=3)
    layer.to_onnx(tmp_path / "m.onnx", initial_state=True)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    feeds = {"X": x, "initial_h": rng.standard_normal((4, 3, 6)).astype(np.float32)}
    if layer.mode == "LSTM":
        feeds["initial_c"] = rng.standard_normal((4, 3, 6)).astype(np.float32)
    both(onnx.load(tmp_path / "m.onnx"), feeds)


def single_node(op, *, direction="forward", layout=0, lengths=False, peephole=False,
                input_forget=0, linear_before_reset=None, activations=None, clip=None,
                alpha=None, beta=None, rng):
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    D = 2 if direction == "bidirectional" else 1
    I, H = 3, 5
    inits = [numpy_helper.from_array((rng.standard_normal((D, G * H, I)) * 0.5).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((D, G * H, H)) * 0.5).astype(np.float32), "R"),
             numpy_helper.from_array(rng.standard_normal((D, 2 * G * H)).astype(np.float32), "B")]
    inputs = ["X", "W", "R", "B", "seq" if lengths else "", "h0"] + (["c0"] if op == "LSTM" else [])
    if peephole:
        inputs.append("P")
        inits.append(numpy_helper.from_array(rng.standard_normal((D, 3 * H)).astype(np.float32), "P"))
    attrs = {"hidden_size": H, "direction": direction, "layout": layout}
    if op == "LSTM" and input_forget:
        attrs["input_forget"] = input_forget
    if linear_before_reset is not None:
        attrs["linear_before_reset"] = linear_before_reset
    if activations:
        attrs["activations"] = activations
    if clip is not None:
        attrs["clip"] = clip
    if alpha is not None:
        attrs["activation_alpha"] = alpha
    if beta is not None:
        attrs["activation_beta"] = beta
    states = ["h", "c"] if op == "LSTM" else ["h"]
    outputs = ["Y"] + [f"Y_{s}" for s in states]
    node = helper.make_node(op, inputs, outputs, **attrs)
    x_shape = ["N", "T", I] if layout else ["T", "N", I]
    s_shape = ["N", D, H] if layout else [D, "N", H]
    graph_in = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    graph_in += [helper.make_tensor_value_info(f"{s}0", TensorProto.FLOAT, s_shape) for s in states]
    if lengths:
        graph_in.append(helper.make_tensor_value_info("seq", TensorProto.INT32, ["N"]))
    y_shape = ["N", "T", D, H] if layout else ["T", D, "N", H]
    graph_out = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)]
    graph_out += [helper.make_tensor_value_info(f"Y_{s}", TensorProto.FLOAT, s_shape) for s in states]
    graph = helper.make_graph([node], "g", graph_in, graph_out, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    N, T = 4, 6
    feeds = {"X": rng.standard_normal((N, T, I) if layout else (T, N, I)).astype(np.float32)}
    for s in states:
        feeds[f"{s}0"] = rng.standard_normal((N, D, H) if layout else (D, N, H)).astype(np.float32)
    if lengths:
        feeds["seq"] = np.array([6, 2, 5, 1], np.int32)
    return model, feeds


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_lens"])
def test_operator_attributes_match_onnx_runtime(op, direction, layout, lengths):
    model, feeds = single_node(op, direction=direction, lengths=lengths,
                               rng=np.random.default_rng(1))
    if layout == 0:
        both(model, feeds)
        return
    # ONNX Runtime has no layout = 1 kernels: the same weights with layout 0
    # and transposed feeds are its reference
    model1, _ = single_node(op, direction=direction, layout=1, lengths=lengths,
                            rng=np.random.default_rng(1))
    feeds1 = {k: (v.transpose(1, 0, 2) if v.ndim == 3 else v) for k, v in feeds.items()}
    ours = rnncore.from_onnx(model1).run(None, feeds1)
    theirs = ort.InferenceSession(model.SerializeToString(),
                                  providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_allclose(ours[0], theirs[0].transpose(2, 0, 1, 3), rtol=RTOL, atol=ATOL)
    for a, b in zip(ours[1:], theirs[1:]):
        np.testing.assert_allclose(a, b.transpose(1, 0, 2), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("variant", [dict(op="GRU", linear_before_reset=0),
                                     dict(op="GRU", linear_before_reset=1),
                                     dict(op="LSTM", peephole=True),
                                     dict(op="LSTM", input_forget=1),
                                     dict(op="LSTM", peephole=True, input_forget=1),
                                     dict(op="RNN", activations=["Relu"])],
                         ids=["gru_lbr0", "gru_lbr1", "lstm_P", "lstm_input_forget",
                              "lstm_P_input_forget", "rnn_relu"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_cell_variants_match_onnx_runtime(variant, direction, rng):
    kw = dict(variant)
    if direction == "bidirectional" and "activations" in kw:
        kw["activations"] = kw["activations"] * 2
    model, feeds = single_node(direction=direction, lengths=True, rng=rng, **kw)
    both(model, feeds)


# every ONNX activation function, in each slot of each operator, with and
# without explicit alpha/beta, and clip (tight enough to act: inputs here
# reach |x| ~ 4)
ACTIVATION_CASES = [
    ("RNN", ["Softsign"], None, None, None), ("RNN", ["Softplus"], None, None, None),
    ("RNN", ["Elu"], [0.7], None, None), ("RNN", ["LeakyRelu"], None, None, None),
    ("RNN", ["ThresholdedRelu"], [0.3], None, None), ("RNN", ["Affine"], [0.5], [0.1], None),
    ("RNN", ["Tanh"], None, None, 0.8), ("RNN", ["Relu"], None, None, 1.0),
    ("GRU", ["HardSigmoid", "Tanh"], None, None, None),
    ("GRU", ["HardSigmoid", "ScaledTanh"], [0.3, 1.5], [0.4, 0.7], None),
    ("GRU", ["Sigmoid", "Softsign"], None, None, 0.5),
    ("LSTM", ["HardSigmoid", "Tanh", "Softsign"], [0.25], [0.45], None),
    ("LSTM", ["Sigmoid", "ScaledTanh", "Tanh"], [1.2], [0.8], None),
    ("LSTM", ["Sigmoid", "Tanh", "Tanh"], None, None, 1.5),
    ("LSTM", ["Sigmoid", "Elu", "LeakyRelu"], [0.9, 0.05], None, 2.0),
]


@pytest.mark.parametrize("op, acts, alpha, beta, clip", ACTIVATION_CASES)
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_activations_and_clip_match_onnx_runtime(op, acts, alpha, beta, clip, direction, rng):
    D = 2 if direction == "bidirectional" else 1
    model, feeds = single_node(op, direction=direction, lengths=True, activations=acts * D,
                               alpha=None if alpha is None else alpha * D,
                               beta=None if beta is None else beta * D, clip=clip, rng=rng,
                               peephole=op == "LSTM", linear_before_reset=0 if op == "GRU" else None)
    both(model, feeds)


def test_unsupported_attributes_and_bad_feeds_are_clear(rng):
    model, feeds = single_node("GRU", activations=["Gelu", "Tanh"], rng=rng)
    with pytest.raises(NotImplementedError, match="Gelu"):
        rnncore.from_onnx(model)
    model, feeds = single_node("GRU", activations=["Sigmoid"], rng=rng)
    with pytest.raises(ValueError, match="1 activations, expected 2"):
        rnncore.from_onnx(model)
    model, feeds = single_node("RNN", rng=rng)
    session = rnncore.from_onnx(model)
    with pytest.raises(ValueError, match="missing"):
        session.run(None, {"X": feeds["X"]})
    with pytest.raises(ValueError, match="unknown outputs"):
        session.run(["nope"], feeds)


def test_shape_only_nodes_around_the_operator(rng):
    """The zero initial state built from X's batch size, as exporters do:
    Shape -> Gather -> Unsqueeze -> Concat -> ConstantOfShape, then the LSTM,
    then Squeeze of its direction axis."""
    model, feeds = single_node("LSTM", rng=rng)
    g = model.graph
    H = 5
    const = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    g.initializer.extend([const("one", [1]), const("hidden", [H]), const("idx", 1),
                          const("zero_axis", [0]), const("dir_axis", [1])])
    pre = [helper.make_node("Shape", ["X"], ["xshape"]),
           helper.make_node("Gather", ["xshape", "idx"], ["n"], axis=0),
           helper.make_node("Unsqueeze", ["n", "zero_axis"], ["n1"]),
           helper.make_node("Concat", ["one", "n1", "hidden"], ["state_shape"], axis=0),
           helper.make_node("ConstantOfShape", ["state_shape"], ["zeros"],
                            value=numpy_helper.from_array(np.zeros(1, np.float32)))]
    lstm = g.node[0]
    lstm.input[5], lstm.input[6] = "zeros", "zeros"
    post = [helper.make_node("Squeeze", ["Y", "dir_axis"], ["Y_squeezed"])]
    nodes = pre + [lstm] + post
    del g.node[:]
    g.node.extend(nodes)
    while len(g.input) > 1:
        g.input.pop()
    g.output.append(helper.make_tensor_value_info("Y_squeezed", TensorProto.FLOAT, ["T", "N", H]))
    both(model, {"X": feeds["X"]})


def _graph(nodes, inputs=("X",), outputs=("Y",)):
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    graph = helper.make_graph(nodes, "g", [vi(n) for n in inputs], [vi(n) for n in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_hostile_graphs_are_refused_at_load_naming_the_node():
    with pytest.raises(NotImplementedError, match=r"ONNX operator Gelu \(node 0 \(Gelu 'act'\)\) "
                                                  r"is not supported; supported: .*LSTM"):
        rnncore.from_onnx(_graph([helper.make_node("Gelu", ["X"], ["Y"], name="act")]))
    cycle = [helper.make_node("Identity", ["B"], ["A"], name="a"),
             helper.make_node("Identity", ["A"], ["B"], name="b"),
             helper.make_node("Identity", ["X"], ["Y"])]
    with pytest.raises(ValueError, match=r"node 0 \(Identity 'a'\) reads \['B'\]"):
        rnncore.from_onnx(_graph(cycle))
    with pytest.raises(ValueError, match=r"reads \['nowhere'\]"):
        rnncore.from_onnx(_graph([helper.make_node("Identity", ["nowhere"], ["Y"])]))
    with pytest.raises(ValueError, match=r"outputs \['Y'\] are not produced"):
        rnncore.from_onnx(_graph([helper.make_node("Identity", ["X"], ["Z"])]))
    custom = helper.make_node("Identity", ["X"], ["Y"], domain="com.example")
    with pytest.raises(NotImplementedError, match="not supported"):
        rnncore.from_onnx(_graph([custom]))


@pytest.mark.parametrize("op, inputs", [
    ("ConstantOfShape", [np.array([1 << 20, 1 << 20], np.int64)]),
    ("Expand", [np.ones((1, 1), np.float32), np.array([1 << 20, 1 << 20], np.int64)]),
    ("Range", [np.array(0.0, np.float32), np.array(1e12, np.float32), np.array(1.0, np.float32)]),
    ("Range", [np.array(0, np.int64), np.array(5, np.int64), np.array(0, np.int64)]),
    ("ConstantOfShape", [np.array([-3], np.int64)]),
])
def test_absurd_sizes_are_refused_without_allocating(op, inputs):
    names = [f"in{i}" for i in range(len(inputs))]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["Y"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT if v.dtype == np.float32
                                       else TensorProto.INT64, v.shape)
         for n, v in zip(names, inputs)],
        [helper.make_tensor_value_info("Y", TensorProto.INT64 if op == "Range" and
                                       inputs[0].dtype == np.int64 else TensorProto.FLOAT, None)])
    session = rnncore.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]))
    with pytest.raises(ValueError, match=op):
        session.run(None, dict(zip(names, inputs)))


@pytest.mark.parametrize("rows", [1, 35, 192, 193, 600])
def test_constant_weight_matmul_and_gemm_on_both_paths(rows, rng):
    """MatMul / Gemm with a constant weight on rnc_linear: in row blocks up
    to 192 rows, in the GEMM's order beyond; both equal NumPy's."""
    B = rng.standard_normal((24, 40)).astype(np.float32)
    C = rng.standard_normal(40).astype(np.float32)
    x = rng.standard_normal((rows, 24)).astype(np.float32)
    for op, inits, attrs, expected in [
            ("MatMul", [numpy_helper.from_array(B, "B")], {}, x @ B),
            ("Gemm", [numpy_helper.from_array(B.T.copy(), "B"), numpy_helper.from_array(C, "C")],
             {"transB": 1, "alpha": 0.5}, 0.5 * (x @ B) + C)]:
        names = ["x", "B"] + (["C"] if op == "Gemm" else [])
        graph = helper.make_graph(
            [helper.make_node(op, names, ["y"], **attrs)], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", 24])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
        session = rnncore.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]))
        np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)


def test_graphs_whose_shapes_or_types_contradict_are_refused_at_load():
    """ONNX's strict shape and type inference at load (ONNX Runtime refuses
    these too), naming the operator."""
    f32 = TensorProto.FLOAT
    matmul = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])], "g",
        [helper.make_tensor_value_info("A", f32, [4, 5]),
         helper.make_tensor_value_info("B", f32, [6, 3])],
        [helper.make_tensor_value_info("Y", f32, None)])
    with pytest.raises(ValueError, match="shapes or types do not fit.*MatMul"):
        rnncore.from_onnx(helper.make_model(matmul, opset_imports=[helper.make_opsetid("", 14)]))
    add = helper.make_graph(
        [helper.make_node("Add", ["A", "B"], ["Y"])], "g",
        [helper.make_tensor_value_info("A", f32, [2]),
         helper.make_tensor_value_info("B", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("Y", f32, None)])
    with pytest.raises(ValueError, match="shapes or types do not fit"):
        rnncore.from_onnx(helper.make_model(add, opset_imports=[helper.make_opsetid("", 14)]))


def test_feeds_of_the_wrong_dtype_or_fixed_size_are_refused_naming_the_input():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["X"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", 3])])
    session = rnncore.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]))
    assert session.run(None, {"X": -np.ones((5, 3), np.float32)})[0].sum() == 0
    with pytest.raises(TypeError, match=r"input 'X' must be float32.*got int64"):
        session.run(None, {"X": np.ones((5, 3), np.int64)})
    with pytest.raises(ValueError, match=r"input 'X' must have shape \[\?, 3\], got \[5, 4\]"):
        session.run(None, {"X": np.ones((5, 4), np.float32)})
    with pytest.raises(ValueError, match=r"input 'X' must have shape"):
        session.run(None, {"X": np.ones(3, np.float32)})
    with pytest.raises(TypeError, match="feeds must be a dict"):
        session.run(None, [np.ones((5, 3), np.float32)])


def _scan_model(body_nodes, body_in, body_out, outer_nodes=(), inits=()):
    """A cumulative-sum Scan: state s [2], scan input X [T, 2] -> (s_T, [T, 2])."""
    f32 = TensorProto.FLOAT
    body = helper.make_graph(body_nodes, "body",
                             [helper.make_tensor_value_info(n, f32, [2]) for n in body_in],
                             [helper.make_tensor_value_info(n, f32, [2]) for n in body_out])
    scan = helper.make_node("Scan", ["s0", "X"], ["s_T", "ys"], num_scan_inputs=1, body=body,
                            scan_input_directions=[1])
    graph = helper.make_graph(
        list(outer_nodes) + [scan], "g",
        [helper.make_tensor_value_info("s0", f32, [2]),
         helper.make_tensor_value_info("X", f32, ["T", 2])],
        [helper.make_tensor_value_info("s_T", f32, [2]),
         helper.make_tensor_value_info("ys", f32, ["T", 2])], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_scan_reads_the_enclosing_graph_and_runs_in_reverse(rng):
    """A Scan body that reads a value of the enclosing graph (`scale`, made
    by an outer node from an initializer), scanning its input backwards;
    against ONNX Runtime."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper
    outer = [helper.make_node("Mul", ["two", "two"], ["scale"])]
    body = [helper.make_node("Mul", ["x", "scale"], ["xs"]),
            helper.make_node("Add", ["s", "xs"], ["s_new"]),
            helper.make_node("Identity", ["s_new"], ["y"])]
    model = _scan_model(body, ["s", "x"], ["s_new", "y"], outer,
                        [numpy_helper.from_array(np.full(2, 2.0, np.float32), "two")])
    feeds = {"s0": rng.standard_normal(2).astype(np.float32),
             "X": rng.standard_normal((5, 2)).astype(np.float32)}
    got = rnncore.from_onnx(model).run(None, feeds)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    np.testing.assert_allclose(got[0], feeds["s0"] + 4 * feeds["X"].sum(0), rtol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        rnncore.from_onnx(model).run(None, {"s0": feeds["s0"], "X": np.zeros((0, 2), np.float32)})


def test_hostile_scan_bodies_are_refused_at_load():
    gelu = [helper.make_node("Gelu", ["x"], ["y"]), helper.make_node("Identity", ["s"], ["s_new"])]
    with pytest.raises(NotImplementedError, match="body ONNX operator Gelu"):
        rnncore.from_onnx(_scan_model(gelu, ["s", "x"], ["s_new", "y"]))
    missing = [helper.make_node("Add", ["s", "nowhere"], ["s_new"]),
               helper.make_node("Identity", ["x"], ["y"])]
    with pytest.raises(ValueError, match=r"body .*reads \['nowhere'\]"):
        rnncore.from_onnx(_scan_model(missing, ["s", "x"], ["s_new", "y"]))


@pytest.mark.parametrize("rows", [1, 35, 600])
@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_add_bias_fused(rows, bias_first, rng):
    """MatMul by a constant weight then Add of a constant bias [N] (or
    [1, N]): the plan puts the bias into the product's Linear and drops the
    Add; the result equals NumPy's on both row paths. Not fused when the
    product is read elsewhere too, or the addend is not a bias."""
    B = rng.standard_normal((24, 40)).astype(np.float32)
    x = rng.standard_normal((rows, 24)).astype(np.float32)
    for b, fused in [(rng.standard_normal(40).astype(np.float32), True),
                     (rng.standard_normal((1, 40)).astype(np.float32), True),
                     (rng.standard_normal((rows, 40)).astype(np.float32), rows == 1),  # [1, N] at 1 row
                     (rng.standard_normal(40).astype(np.float64), False)]:
        for extra_reader in (False, True):
            add_in = ["b", "t"] if bias_first else ["t", "b"]
            nodes = [helper.make_node("MatMul", ["x", "B"], ["t"]),
                     helper.make_node("Add", add_in, ["y"])]
            outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
            if extra_reader:
                nodes.append(helper.make_node("Neg", ["t"], ["z"]))
                outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
            graph = helper.make_graph(
                nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", 24])],
                outputs, initializer=[numpy_helper.from_array(B, "B"),
                                      numpy_helper.from_array(b, "b")])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
            if b.dtype != np.float32:  # float + double: refused by the type inference at load
                with pytest.raises(ValueError, match="shapes or types do not fit"):
                    rnncore.from_onnx(model)
                continue
            session = rnncore.from_onnx(model)
            ops = [s.op_type for s in session.graph.steps]
            assert ("Add" not in ops) == (fused and not extra_reader), (ops, b.shape, b.dtype)
            out = session.run(None, {"x": x})
            np.testing.assert_allclose(out[0], x @ B + b, rtol=1e-5, atol=1e-5)
            if extra_reader:
                np.testing.assert_allclose(out[1], -(x @ B), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 600])
def test_gemm_constant_c_in_linear(rows, rng):
    """Gemm(x, B^T, C) with a constant C [N] and alpha = 1: C (times beta)
    becomes the Linear's bias; alpha != 1 or beta = 0 keep the plain path."""
    B = rng.standard_normal((24, 40)).astype(np.float32)
    C = rng.standard_normal(40).astype(np.float32)
    C[3] = np.inf
    x = rng.standard_normal((rows, 24)).astype(np.float32)
    for attrs, in_linear in [({}, True), ({"beta": 2.0}, True), ({"alpha": 0.5}, False),
                             ({"beta": 0.0}, False)]:
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["x", "B", "C"], ["y"], transB=1, **attrs)], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", 24])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            initializer=[numpy_helper.from_array(B.T.copy(), "B"),
                         numpy_helper.from_array(C, "C")])
        session = rnncore.from_onnx(helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 14)]))
        assert bool(session.graph.steps[0].attrs.get("_c_in_linear")) == in_linear
        alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
        expected = alpha * (x @ B) + (beta * C if beta else 0.0)
        np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)


def test_product_output_recycled_only_when_dropped(rng):
    """A constant-weight product writes into its previous output once the
    caller dropped it (no page faults for a fresh buffer); an output the
    caller keeps (or a view of it) is never written again."""
    B = rng.standard_normal((24, 40)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "B"], ["t"]), helper.make_node("Add", ["t", "b"], ["u"]),
         helper.make_node("LogSoftmax", ["u"], ["y"], axis=-1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(B, "B"), numpy_helper.from_array(b, "b")])
    session = rnncore.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]))
    x1, x2 = (rng.standard_normal((50, 24)).astype(np.float32) for _ in range(2))
    ref = lambda x: rnncore.reference.softmax(x @ B + b, log=True)  # noqa: E731
    y1 = session.run(None, {"x": x1})[0]
    kept = y1.copy()
    view = y1[3:5]
    del y1
    y2 = session.run(None, {"x": x2})[0]  # y1's buffer is still held (by `view`)
    np.testing.assert_array_equal(view, kept[3:5])
    np.testing.assert_allclose(y2, ref(x2), rtol=1e-5, atol=1e-5)
    address = y2.ctypes.data
    del y2, view
    y3 = session.run(None, {"x": x1})[0]  # y2's buffer, dropped: written again
    np.testing.assert_array_equal(y3, kept)
    if sys.implementation.name == "cpython":
        assert y3.ctypes.data == address
    y4 = session.run(None, {"x": rng.standard_normal((7, 24)).astype(np.float32)})[0]
    assert y4.shape == (7, 40)  # another shape: a new buffer
    np.testing.assert_array_equal(y3, kept)


def test_shape_arithmetic_is_kept_per_input_shape(rng):
    """The shape subgraph of an export (Shape -> Gather -> Unsqueeze -> Concat
    -> ConstantOfShape) runs once per input shape: its nodes are kept
    (graph._ShapeMemo), recomputed when the batch size changes, and a kept
    value that is a graph output is handed out as a copy, so that a caller
    writing into it changes nothing the next run sees; a node that may write
    into its input never gets a kept one."""
    from rnncore.interop.graph import _ShapeMemo
    const = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Gather", ["s", "idx"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n", "axis0"], ["n1"]),
         helper.make_node("Concat", ["n1", "width"], ["shape"], axis=0),
         helper.make_node("ConstantOfShape", ["shape"], ["zeros"],
                          value=numpy_helper.from_array(np.ones(1, np.float32))),
         helper.make_node("Add", ["x", "zeros"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("shape", TensorProto.INT64, None)],
        initializer=[const("idx", 0), const("axis0", [0]), const("width", [3])])
    session = rnncore.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]))
    kept = [s for s in session.graph.steps if isinstance(s, _ShapeMemo)]
    assert [s.op_type for s in kept] == ["Gather", "Unsqueeze", "Concat", "ConstantOfShape"]
    add = [s for s in session.graph.steps if s.op_type == "Add"][0]
    assert add.attrs["_reusable"] == (), "Add must not write into the kept ones"
    for n in (4, 4, 2, 4):
        x = rng.standard_normal((n, 3)).astype(np.float32)
        y, shape = session.run(None, {"x": x})
        np.testing.assert_array_equal(y, x + 1)
        assert shape.tolist() == [n, 3]
        shape[...] = 7  # the caller's copy
