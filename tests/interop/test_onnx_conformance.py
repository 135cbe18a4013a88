"""ONNX's own operator test cases (the node cases shipped inside the onnx
package, onnx.backend.test) for RNN, GRU and LSTM, run by rnncore.from_onnx
against their expected outputs. They pass W, R and B as graph inputs."""
import warnings

import numpy as np
import pytest

import rnncore

node = pytest.importorskip("onnx.backend.test.case.node", reason="needs the onnx package")


def _cases():
    """The node cases whose graph is one RNN, GRU or LSTM node."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some generators of other operators' cases overflow
        found = node.collect_testcases(None)
    return sorted((c for c in found if c.kind == "node" and len(c.model.graph.node) == 1
                   and c.model.graph.node[0].op_type in ("RNN", "GRU", "LSTM")),
                  key=lambda c: c.name)


CASES = _cases()


def test_every_recurrent_case_is_here():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names) >= 18, names  # 6 per operator in onnx 1.14-1.23
    assert {"test_lstm_with_peepholes", "test_gru_seq_length", "test_simple_rnn_batchwise"} <= set(names)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case(case):
    session = rnncore.from_onnx(case.model)
    names = [i.name for i in case.model.graph.input]
    for inputs, expected in case.data_sets:
        got = session.run(None, dict(zip(names, inputs)))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol)  # the case's own


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
