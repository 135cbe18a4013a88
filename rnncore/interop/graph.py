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

from .onnx_ops import OPS, plan_constant_weight

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
        args = [values[i] if i else None for i in self.inputs]
        with np.errstate(all="ignore"):  # IEEE semantics: NaN and Inf flow, as in ONNX Runtime
            results = self.fn(args, self.attrs, self.opset)
        return {name: value for name, value in zip(self.outputs, results) if name}

    def __repr__(self):
        return f"Node({self.op_type} {self.name!r}: {self.inputs} -> {self.outputs})"


class Graph:
    """Constants, inputs, outputs and steps (see the module docstring),
    planned once at construction:

    * a MatMul / Gemm Node whose second operand is a constant float32 matrix
      gets it packed once (onnx_ops.plan_constant_weight, ``attrs["_linear"]``);
    * a Node may write into an input that is an intermediate (made by a step
      at run time) no other step reads and that is not a graph output
      (``attrs["_reusable"]``: its positions; onnx_ops honours it).
    """

    def __init__(self, consts, inputs, outputs, steps):
        self.consts, self.inputs, self.outputs = consts, list(inputs), list(outputs)
        self.steps = list(steps)
        made = {o for step in self.steps for o in step.outputs}
        reads = {}
        for step in self.steps:
            for i in step.inputs:
                reads[i] = reads.get(i, 0) + 1
        for step in self.steps:
            if isinstance(step, Node):
                self._plan_weights(step)
                step.attrs["_reusable"] = tuple(
                    k for k, i in enumerate(step.inputs)
                    if i in made and reads.get(i) == 1 and i not in self.outputs)

    def _plan_weights(self, node):
        if node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
            return
        B = self.consts.get(node.inputs[1])
        if B is None or B.dtype != np.float32 or B.ndim != 2 or B.size == 0:
            return
        if node.op_type == "Gemm" and node.attrs.get("transB", 0):
            B = B.T
        node.attrs["_linear"] = plan_constant_weight(B)

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
        for step in self.steps:
            values.update(step.run(values))
        # a constant is the graph's own: hand out copies
        return [values[n].copy() if n in self.consts else values[n] for n in names]
