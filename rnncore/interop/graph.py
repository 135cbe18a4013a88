"""The one graph executor of rnncore.interop: imported ONNX graphs
(onnx_import) and converted Keras models (keras_model) are both lowered to
it. A graph is a dict of constants, named inputs and outputs, and a list of
steps in topological order; each step reads named values and makes named
values. Steps are :class:`Node` (a NumPy operator of onnx_ops, or a function
with its signature) or a recurrent step of the importer that made the graph
(anything with ``name``, ``op_type``, ``inputs``, ``outputs`` and
``run(values) -> {name: value}``). Nothing here needs the onnx package.
"""
import numpy as np

from .onnx_ops import OPS, Recycled, plan_constant_weight

__all__ = ["Node", "Graph"]


class Node:
    """One operator: ``fn(args, attrs, opset) -> outputs`` (by default
    ``onnx_ops.OPS[op_type]``) on the values named by ``inputs`` ("" for an
    omitted optional input, passed as None); its results are stored under
    ``outputs`` ("" drops one)."""

    def __init__(self, op_type, name, inputs, outputs, attrs=None, *, fn=None, opset=21):
        self.op_type, self.name = op_type, name
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.attrs = {} if attrs is None else attrs
        self.fn = OPS[op_type] if fn is None else fn
        self.opset = opset

    def run(self, values):
        """(Graph.run sets IEEE semantics, NaN and Inf flowing without
        warnings as in ONNX Runtime, once for all its steps.)"""
        args = [values[i] if i else None for i in self.inputs]
        results = self.fn(args, self.attrs, self.opset)
        return {name: value for name, value in zip(self.outputs, results) if name}

    def __repr__(self):
        return f"Node({self.op_type} {self.name!r}: {self.inputs} -> {self.outputs})"


# small arrays (shape arithmetic) are compared by value, others by identity
_BY_VALUE = 64


def _same(a, b):
    if a is b:
        return True
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return False
    return a.size <= _BY_VALUE and a.dtype == b.dtype and a.shape == b.shape and \
        bool(np.array_equal(a, b))


class _ShapeMemo:
    """A Node of the graph's shape arithmetic (every input a constant, a
    Shape / Size result or another such node's output: the zero initial
    states and index vectors of exported models), whose results are kept
    and handed out again while its inputs are the same as on the last run.
    An exported LSTM language model has 9 such nodes; recomputing them took
    0.2 of 7.8 ms at batch 1. Their outputs are read-only to the graph
    (never ``_reusable``) and copied when they are graph outputs."""

    def __init__(self, node):
        self.node = node
        self.op_type, self.name = node.op_type, node.name
        self.inputs, self.outputs = node.inputs, node.outputs
        self._last = None  # (inputs, results)

    def run(self, values):
        args = [values[i] if i else None for i in self.inputs]
        last = self._last
        if last is not None and all(_same(a, b) for a, b in zip(args, last[0])):
            return last[1]
        results = self.node.run(values)
        self._last = (args, results)
        return results

    def __repr__(self):
        return f"_ShapeMemo({self.node!r})"


class Graph:
    """Constants, inputs, outputs and steps (see the module docstring),
    planned once at construction:

    * a MatMul / Gemm Node whose second operand is a constant float32 matrix
      gets it packed once (onnx_ops.plan_constant_weight, ``attrs["_linear"]``),
      with a Gemm's constant C, or the constant bias of an Add that is the
      product's only reader, added by the kernels (the Add goes), and its
      output buffer reused between runs (onnx_ops.Recycled);
    * a Node may write into an input that is an intermediate (made by a step
      at run time) no other step reads and that is not a graph output
      (``attrs["_reusable"]``: its positions; onnx_ops honours it);
    * the shape arithmetic is computed once per input shape (_ShapeMemo).
    """

    def __init__(self, consts, inputs, outputs, steps):
        self.consts, self.inputs, self.outputs = consts, list(inputs), list(outputs)
        self.steps = list(steps)
        reads = {}
        for step in self.steps:
            for i in step.inputs:
                reads[i] = reads.get(i, 0) + 1
        for step in self.steps:
            if isinstance(step, Node):
                self._plan_weights(step)
        self._fuse_bias(reads)
        self._memoize_shapes()
        made = {o for step in self.steps for o in step.outputs  # after the fusion
                if not isinstance(step, _ShapeMemo)}
        self._kept = {o for step in self.steps if isinstance(step, _ShapeMemo)
                      for o in step.outputs}
        for step in self.steps:
            if isinstance(step, Node):
                step.attrs["_reusable"] = tuple(
                    k for k, i in enumerate(step.inputs)
                    if i in made and reads.get(i) == 1 and i not in self.outputs)

    def _memoize_shapes(self):
        shape_made = set(self.consts)
        for k, step in enumerate(self.steps):
            if not isinstance(step, Node):
                continue
            if step.op_type in ("Shape", "Size"):
                shape_made.update(step.outputs)
            elif all(not i or i in shape_made for i in step.inputs):
                shape_made.update(step.outputs)
                self.steps[k] = _ShapeMemo(step)

    def _plan_weights(self, node):
        if node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
            return
        B = self.consts.get(node.inputs[1])
        if B is None or B.dtype != np.float32 or B.ndim != 2 or B.size == 0:
            return
        attrs = node.attrs
        if node.op_type == "Gemm" and attrs.get("transB", 0):
            B = B.T
        attrs["_linear"] = plan_constant_weight(B)
        attrs["_recycled"] = Recycled()
        # Gemm's constant C [N] (a torch Linear on 2-D input) as the Linear's
        # bias, when alpha = 1: added by the kernels (onnx_ops._gemm_op skips it)
        C = self.consts.get(node.inputs[2]) if node.op_type == "Gemm" and len(node.inputs) > 2 \
            and node.inputs[2] else None
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
        producer = {o: k for k, step in enumerate(self.steps) if isinstance(step, Node)
                    for o in step.outputs}
        drop = set()
        for k, node in enumerate(self.steps):
            if not isinstance(node, Node) or node.op_type != "Add" or len(node.inputs) != 2:
                continue
            for t_name, b_name in (node.inputs, node.inputs[::-1]):
                j = producer.get(t_name)
                b = self.consts.get(b_name)
                if j is None or b is None or reads.get(t_name) != 1 or t_name in self.outputs:
                    continue
                prod = self.steps[j]
                lin = prod.attrs.get("_linear")
                if lin is None or lin.bias is not None or len(prod.outputs) != 1 or \
                        (prod.op_type == "Gemm" and (len(prod.inputs) > 2 or
                                                     prod.attrs.get("alpha", 1.0) != 1.0)):
                    continue
                n_out = lin.w.shape[0]
                if not isinstance(b, np.ndarray) or b.dtype != np.float32 or b.ndim > 2 or \
                        b.size != n_out or b.shape[-1] != n_out:
                    continue  # a Gemm output is 2-D: no bias of higher rank
                prod.attrs["_linear"] = type(lin).with_bias(lin, b.reshape(n_out))
                prod.outputs = list(node.outputs)  # the product now makes the Add's output
                drop.add(k)
                break
        self.steps = [step for k, step in enumerate(self.steps) if k not in drop]

    def run(self, feeds, output_names=None):
        """The named outputs (all for None), in order, computed from `feeds`
        (input name -> array, exactly the graph's inputs)."""
        missing = [n for n in self.inputs if n not in feeds]
        unknown = [n for n in feeds if n not in self.inputs]
        if missing or unknown:
            raise ValueError(f"feeds must hold exactly the graph's inputs {self.inputs}; "
                             f"missing {missing}, unknown {unknown}")
        names = self.outputs if output_names is None else list(output_names)
        bad = [n for n in names if n not in self.outputs]
        if bad:
            raise ValueError(f"unknown outputs {bad}; the graph's are {self.outputs}")
        values = dict(self.consts)
        values.update({k: np.asarray(v) for k, v in feeds.items()})
        with np.errstate(all="ignore"):  # IEEE semantics: NaN and Inf flow, as in ONNX Runtime
            for step in self.steps:
                values.update(step.run(values))
        # constants and kept shape results are the graph's own: hand out copies
        return [values[n].copy() if n in self.consts or n in self._kept else values[n]
                for n in names]
