"""ONNX's own operator test cases (the node cases shipped inside the onnx
package, onnx.backend.test), run by rnncore.from_onnx against their expected
outputs at their own tolerances: every case of RNN, GRU and LSTM (they pass
W, R and B as graph inputs) and of every other operator from_onnx runs.

Dropout in training mode draws random masks; rnncore runs graphs for
inference, and those cases must be refused with a clear error instead."""
import warnings

import numpy as np
import pytest

import rnncore

node = pytest.importorskip("onnx.backend.test.case.node", reason="needs the onnx package")


from onnx import TensorProto, numpy_helper  # noqa: E402

from rnncore.interop.onnx_import import RECURRENT_OPS, SUPPORTED_OPS  # noqa: E402


def _cases():
    """The node cases whose graph is one node of an operator from_onnx runs."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some generators of other operators' cases overflow
        found = node.collect_testcases(None)
    return sorted((c for c in found if c.kind == "node" and len(c.model.graph.node) == 1
                   and c.model.graph.node[0].op_type in SUPPORTED_OPS),
                  key=lambda c: c.name)


ALL_CASES = _cases()
CASES = [c for c in ALL_CASES if c.model.graph.node[0].op_type in RECURRENT_OPS]
OTHER_CASES = [c for c in ALL_CASES if c.model.graph.node[0].op_type not in RECURRENT_OPS]


def _array(value):
    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else np.asarray(value)


def _random_training(case):
    """A Dropout case in training mode with a non-zero ratio (random masks)."""
    n = case.model.graph.node[0]
    return n.op_type == "Dropout" and case.name.startswith("test_training_dropout") \
        and "zero_ratio" not in case.name


def run_case(case):
    session = rnncore.from_onnx(case.model)
    names = [i.name for i in case.model.graph.input]
    for inputs, expected in case.data_sets:
        got = session.run(None, dict(zip(names, [_array(v) for v in inputs])))
        assert len(got) == len(expected)
        for g, e in zip(got, (_array(v) for v in expected)):
            g = np.asarray(g)
            assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
            if e.dtype.kind in "fc":  # the case's own tolerances
                np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64),
                                           rtol=case.rtol, atol=case.atol)
            else:
                np.testing.assert_array_equal(g, e)


def test_every_recurrent_case_is_here():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names) >= 18, names  # 6 per operator in onnx 1.14-1.23
    assert {"test_lstm_with_peepholes", "test_gru_seq_length", "test_simple_rnn_batchwise"} <= set(names)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recurrent_node_case(case):
    run_case(case)


def test_every_other_operator_has_cases():
    ops = {c.model.graph.node[0].op_type for c in OTHER_CASES}
    assert ops >= set(SUPPORTED_OPS) - set(RECURRENT_OPS) - {"Constant"}, \
        sorted(set(SUPPORTED_OPS) - ops)


@pytest.mark.parametrize("case", OTHER_CASES, ids=[c.name for c in OTHER_CASES])
def test_operator_node_case(case):
    if _random_training(case):
        with pytest.raises(NotImplementedError, match="training mode"):
            run_case(case)
    else:
        run_case(case)


def test_fed_weights_that_change_between_runs_are_used():
    """Layers built from weights fed as graph inputs are rebuilt when the fed
    arrays change (and reused while they do not)."""
    case = next(c for c in CASES if c.name == "test_lstm_with_initial_bias")
    session = rnncore.from_onnx(case.model)
    names = [i.name for i in case.model.graph.input]
    inputs, expected = case.data_sets[0]
    feeds = dict(zip(names, inputs))
    first = session.run(None, feeds)
    np.testing.assert_allclose(first[0], expected[0], rtol=case.rtol, atol=case.atol)
    changed = dict(feeds, W=feeds["W"] * np.float32(0.5))
    second = session.run(None, changed)
    assert not np.allclose(second[0], first[0])
    np.testing.assert_array_equal(second[0], rnncore.from_onnx(case.model).run(None, changed)[0])
    np.testing.assert_array_equal(session.run(None, feeds)[0], first[0])
    with pytest.raises(ValueError, match="W"):
        session.run(None, dict(feeds, W=feeds["W"][0]))
