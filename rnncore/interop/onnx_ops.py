"""The ONNX operators that surround recurrent layers in real exports, in
vectorised NumPy (MatMul and Gemm on the library's GEMM for float32):
``OPS[op_type](inputs, attrs, opset) -> outputs``.

Semantics follow the ONNX operator specification at the model's opset
(attributes that became inputs, e.g. Squeeze's axes at opset 13, are read
from wherever that opset puts them); ``tests/interop/test_onnx_conformance.py``
runs the node cases shipped in the onnx package against these.
"""
import sys
import threading

import numpy as np

from ..engine.runtime import Linear, softmax_rows
from ..engine.runtime import matmul as _gemm

__all__ = ["OPS", "MAX_ELEMENTS"]

# no tensor of a real model is this large: a hostile graph must not make a
# run allocate absurd memory (ConstantOfShape, Expand, Range, Reshape)
MAX_ELEMENTS = 1 << 31


def _bounded(op, shape):
    """shape as ints, after checking its element count."""
    shape = [int(s) for s in shape]
    count = 1
    for s in shape:
        if s < 0:
            raise ValueError(f"{op}: negative dimension in shape {shape}")
        count *= s
    if count > MAX_ELEMENTS:
        raise ValueError(f"{op}: shape {shape} has {count} elements, more than {MAX_ELEMENTS}")
    return shape


def _ints(a):
    return None if a is None else [int(v) for v in np.asarray(a).reshape(-1)]


def _axis(axis, ndim):
    return axis + ndim if axis < 0 else axis


def _np_dtype(onnx_type):
    from onnx import helper
    return helper.tensor_dtype_to_np_dtype(onnx_type)


# ------------------------------------------------------------ element-wise

def _binary(fn):
    return lambda x, a, o: [fn(x[0], x[1])]


def _arithmetic(ufunc):
    """An element-wise arithmetic operator. It writes into an input the
    load-time plan found to be an intermediate no other node reads
    (``_reusable``: its positions) when that input has the result's shape and
    dtype: a linear layer's bias add on a 2240 x 10k output took 157 ms
    into a fresh array (page faults), 3.4 ms in place."""
    def run(x, a, o):
        shape = np.broadcast_shapes(*(np.shape(v) for v in x))
        dtype = np.result_type(*x)
        for k in a.get("_reusable", ()):
            v = x[k]
            if isinstance(v, np.ndarray) and v.flags.writeable and v.shape == shape \
                    and v.dtype == dtype:
                return [ufunc(x[0], x[1], out=v)]
        return [ufunc(x[0], x[1])]
    return run


def _unary(fn):
    return lambda x, a, o: [fn(x[0])]


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return np.trunc(np.true_divide(a, b)).astype(a.dtype)  # ONNX: toward zero
    return np.divide(a, b)


def _pow(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return np.power(a.astype(np.int64), b.astype(np.int64)).astype(a.dtype)
    return np.power(a, b).astype(a.dtype)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)


def _erf(x):
    """erf in float64: its Maclaurin series for |x| < 3 (terms up to n = 60,
    cancellation costs < 1e-13 there) and the asymptotic series of erfc
    beyond (erfc(3) = 2.2e-5, four terms: error < 1e-9); returned in x's
    dtype."""
    v = np.asarray(x, np.float64)
    a = np.abs(v)
    small = np.minimum(a, 3.0)
    term = small.copy()
    total = small.copy()
    x2 = small * small
    for n in range(1, 61):
        term = term * (-x2) / n
        total = total + term / (2 * n + 1)
    series = total * (2.0 / np.sqrt(np.pi))
    big = np.maximum(a, 3.0)
    inv = 1.0 / (2.0 * big * big)
    tail = np.exp(-big * big) / (big * np.sqrt(np.pi)) * (1 - inv + 3 * inv ** 2 - 15 * inv ** 3)
    out = np.where(a < 3.0, series, 1.0 - tail)
    return (np.sign(v) * out).astype(np.asarray(x).dtype)


def _leaky_relu(x, a, o):
    alpha = a.get("alpha", 0.01)
    return [np.where(x[0] >= 0, x[0], x[0] * np.asarray(alpha, x[0].dtype))]


def _where(x, a, o):
    return [np.where(x[0], x[1], x[2])]


def _clip(x, a, o):
    v = x[0]
    if o < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        lo = x[1] if len(x) > 1 else None
        hi = x[2] if len(x) > 2 else None
    if lo is not None:
        v = np.maximum(v, np.asarray(lo, v.dtype))
    if hi is not None:
        v = np.minimum(v, np.asarray(hi, v.dtype))
    return [v.astype(x[0].dtype)]


def _softmax(x, a, o, log=False):
    """softmax = exp(z) / sum exp(z), log-softmax = z - log(sum exp(z)), with
    z = x - max(x) along the axis. Over the last axis (every export's
    classifier head) float32 rows run on rnc_softmax (runtime.softmax_rows:
    one row at a time from cache, a vector exp, the next row prefetched)
    and the result is written into a reusable input: 2240 x 10k float32
    logits took 43 ms in NumPy, 17 ms in NumPy row blocks of 2^16 floats
    (kept for other dtypes), 4.4 ms on rnc_softmax (1 thread, AMD Zen 5)."""
    v = x[0]
    axis = a.get("axis", -1 if o >= 13 else 1)
    ax = _axis(axis, v.ndim)
    if o < 13:  # the input as a 2-D [prod(d < axis), prod(d >= axis)] matrix
        rows = v.reshape(int(np.prod(v.shape[:ax], dtype=np.int64)), -1)
    elif ax == v.ndim - 1:
        rows = v.reshape(-1, v.shape[-1]) if v.ndim else v.reshape(1, 1)
    else:
        z = v - np.max(v, axis=ax, keepdims=True)
        total = np.sum(np.exp(z), axis=ax, keepdims=True)
        return [(z - np.log(total) if log else np.exp(z) / total).astype(v.dtype, copy=False)]
    reuse = 0 in a.get("_reusable", ()) and v.flags.writeable and v.flags.c_contiguous
    out = rows if reuse else np.empty_like(rows)
    if rows.dtype == np.float32 and rows.flags.c_contiguous:  # on rnc_softmax
        return [softmax_rows(rows, out, log).reshape(v.shape)]
    if rows.shape[1]:
        step = max(1, (1 << 16) // rows.shape[1])
        for r in range(0, rows.shape[0], step):
            z = np.subtract(rows[r:r + step], np.max(rows[r:r + step], axis=1, keepdims=True),
                            out=out[r:r + step])
            if log:
                z -= np.log(np.sum(np.exp(z), axis=1, keepdims=True))
            else:
                np.exp(z, out=z)
                z /= np.sum(z, axis=1, keepdims=True)
    return [out.reshape(v.shape)]


def _dropout(x, a, o):
    training = bool(np.asarray(x[2]).item()) if len(x) > 2 and x[2] is not None else False
    ratio = float(np.asarray(x[1]).item()) if len(x) > 1 and x[1] is not None \
        else a.get("ratio", 0.5)
    if training and ratio != 0.0:
        raise NotImplementedError("Dropout in training mode (training_mode = 1) is not "
                                  "supported: rnncore runs ONNX graphs for inference")
    return [x[0].copy(), np.ones(x[0].shape, bool)]


def _cast(x, a, o):
    to = np.dtype(_np_dtype(a["to"]))
    v = x[0]
    to_text, from_text = to == object or to.kind in "US", v.dtype == object or v.dtype.kind in "US"
    if from_text:  # ONNX strings (object arrays): parsed as numbers
        return [v.astype(object) if to_text else np.asarray(v, str).astype(np.float64).astype(to)]
    if to_text:  # numbers as text, floats printed from their float32 value as ONNX does
        shown = v.astype(np.float32) if v.dtype.kind == "f" else v
        return [np.vectorize(str, otypes=[object])(shown)]
    if np.dtype(to).name == "float8_e8m0fnu" and v.dtype.kind == "f":
        return [_to_e8m0(v, to, a)]
    if "float8" in np.dtype(to).name and a.get("saturate", 1) and v.dtype.kind == "f":
        # saturate (the default): out-of-range values and infinities become
        # the largest finite value of the target; NaN stays NaN
        import ml_dtypes  # onnx's own dependency for these types
        top = float(ml_dtypes.finfo(to).max)
        v = np.clip(v.astype(np.float32), -top, top)
    return [v.astype(to)]


def _to_e8m0(v, to, a):
    """Cast to FLOAT8E8M0 (a power of two 2^-127 .. 2^127, no sign, no zero):
    rounded by round_mode ("up", the default, "down" or "nearest" on the
    mantissa), saturated into the range with saturate."""
    w = v.astype(np.float64)
    m, e = np.frexp(w)  # w = m * 2^e, m in [0.5, 1)
    mode = a.get("round_mode", b"up")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    up = {"up": m > 0.5, "down": np.zeros(w.shape, bool), "nearest": m >= 0.75}[mode]
    with np.errstate(all="ignore"):
        p = np.ldexp(1.0, (e - 1 + up).astype(np.int64))
    if a.get("saturate", 1):  # into [2^-127, 2^127]; zero and negatives to the smallest
        p = np.clip(np.where(w > 0, p, 0.0), 2.0 ** -127, 2.0 ** 127)
        invalid = np.isnan(w)
    else:  # no zero, no sign, nothing beyond 2^127: NaN
        invalid = np.isnan(w) | (w <= 0) | (p > 2.0 ** 127)
    return np.where(invalid, np.nan, p).astype(to)


# ------------------------------------------------------------ matrix products

class Recycled:
    """One output buffer of a node, handed out again by the next run once
    nobody holds it (nor a view of it): a fresh 2240 x 10k float32 output
    cost 5 ms a run in page faults (the kernel zeroing 90 MB of new pages:
    np.empty + a write 7.8 ms, a write into the old buffer 3.0 ms). Only
    on CPython, where sys.getrefcount tells; thread-safe (a buffer a run
    holds has more references than the check allows)."""

    def __init__(self):
        self._count = getattr(sys, "getrefcount", None) \
            if sys.implementation.name == "cpython" else None
        self._lock = threading.Lock()
        self._buf = None

    def empty(self, shape, dtype=np.float32):
        with self._lock:
            buf = self._buf
            # references: self._buf, buf, getrefcount's argument
            if buf is not None and self._count is not None and buf.shape == tuple(shape) \
                    and buf.dtype == dtype and self._count(buf) == 3:
                return buf
            buf = np.empty(shape, dtype)
            self._buf = buf if self._count is not None else None
            return buf


def plan_constant_weight(B):
    """The load-time form of a constant MatMul / Gemm operand B [K, N]: a
    Linear holding W = B^T [N, K] contiguous (packed), whose transpose is
    also the GEMM's better layout (2240 x 512 x 10k: 108 ms, 275 ms on B
    row-major)."""
    return Linear(np.ascontiguousarray(B.T))


def _product(A, B, lin, recycled=None):
    """A [..., K] @ B [K, N]; with lin (B planned at load) on rnc_linear
    (weights packed once; for many rows in the GEMM's blocking: x [2240, 512]
    @ [512, 10k] with its bias, 1 thread, AMD Zen 5, 109 ms against 130 for
    the GEMM packing the weights per call and a NumPy bias add), float32 2-D
    products on the GEMM, the rest by NumPy. A bias the plan put into lin (a
    fused Add, Gemm's C) is added here, on every path."""
    bias = None if lin is None else lin.bias
    if A.dtype == np.float32 and B.dtype == np.float32 and A.ndim >= 2 and B.ndim == 2 \
            and A.size and B.size and A.shape[-1] == B.shape[0]:
        rows = np.ascontiguousarray(A).reshape(-1, A.shape[-1])
        if lin is None:
            y = _gemm(rows, B)
        else:
            shape = (rows.shape[0], lin.w.shape[0])
            y = lin(rows, recycled.empty(shape) if recycled is not None else None)
        return y.reshape(A.shape[:-1] + (B.shape[1],))
    y = np.matmul(A, B)
    return y if bias is None else y + bias.astype(y.dtype, copy=False)


def _matmul(x, a, o):
    return [_product(x[0], x[1], a.get("_linear"), a.get("_recycled"))]


def _gemm_op(x, a, o):
    A, B = x[0], x[1]
    C = x[2] if len(x) > 2 else None
    if a.get("transA", 0):
        A = A.T
    if a.get("transB", 0):
        B = B.T
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    y = _product(A, B, a.get("_linear"), a.get("_recycled"))
    if alpha != 1.0:
        y = y * np.asarray(alpha, y.dtype)
    if C is not None and beta != 0.0 and not a.get("_c_in_linear"):
        y = y + np.asarray(beta, y.dtype) * C
    return [y.astype(x[0].dtype, copy=False)]


# ------------------------------------------------------------ shapes

def _reshape(x, a, o):
    data, shape = x[0], _ints(x[1])
    if not a.get("allowzero", 0):
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [np.reshape(data, shape)]


def _squeeze(x, a, o):
    axes = a.get("axes") if o < 13 else _ints(x[1]) if len(x) > 1 else None
    if axes is None:
        return [np.squeeze(x[0])]
    return [np.squeeze(x[0], axis=tuple(_axis(ax, x[0].ndim) for ax in axes))]


def _unsqueeze(x, a, o):
    axes = a.get("axes") if o < 13 else _ints(x[1])
    out = x[0]
    rank = out.ndim + len(axes)
    for ax in sorted(_axis(ax, rank) for ax in axes):
        out = np.expand_dims(out, ax)
    return [out]


def _flatten(x, a, o):
    v = x[0]
    axis = _axis(a.get("axis", 1), v.ndim)
    outer = int(np.prod(v.shape[:axis], dtype=np.int64))
    return [v.reshape(outer, -1) if v.size else v.reshape(outer, int(np.prod(v.shape[axis:])))]


def _concat(x, a, o):
    return [np.concatenate([v for v in x if v is not None], axis=a["axis"])]


def _split(x, a, o):
    v = x[0]
    axis = _axis(a.get("axis", 0), v.ndim)
    split = a.get("split") if o < 13 else (_ints(x[1]) if len(x) > 1 and x[1] is not None
                                           else None)
    n = a.get("num_outputs") or a.get("_outputs")
    if split is None:
        size = v.shape[axis]
        chunk = -(-size // n)  # ceil: the last chunk is the smaller one
        split = [min(chunk, size - i * chunk) for i in range(n)]
    bounds = np.cumsum(split)[:-1]
    return list(np.split(v, bounds, axis=axis))


def _slice(x, a, o):
    data = x[0]
    if o < 10:
        starts, ends, axes = a["starts"], a["ends"], a.get("axes")
        steps = None
    else:
        starts, ends = _ints(x[1]), _ints(x[2])
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else None
        steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = _axis(ax, data.ndim)
        dim = data.shape[ax]
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, -1), dim - 1), min(max(e, -1), dim - 1)
        index[ax] = slice(s, e if e >= 0 else None, st)
    return [data[tuple(index)]]


def _transpose(x, a, o):
    return [np.transpose(x[0], a.get("perm"))]


def _expand(x, a, o):
    shape = np.broadcast_shapes(x[0].shape, tuple(_bounded("Expand", _ints(x[1]))))
    return [np.broadcast_to(x[0], _bounded("Expand", shape)).copy()]


def _shape(x, a, o):
    dims = x[0].shape
    start, end = a.get("start", 0), a.get("end")
    return [np.array(dims[start:end], np.int64)]


def _size(x, a, o):
    return [np.array(x[0].size, np.int64)]


def _constant_of_shape(x, a, o):
    fill = a.get("_fill")
    if fill is None:  # the value attribute, converted on the first run
        from onnx import numpy_helper
        value = a.get("value")
        fill = a["_fill"] = np.zeros(1, np.float32) if value is None else numpy_helper.to_array(value)
    return [np.full(_bounded("ConstantOfShape", _ints(x[0])), fill.reshape(-1)[0],
                    dtype=fill.dtype)]


def _range(x, a, o):
    start, limit, delta = (np.asarray(v).item() for v in x)
    if delta == 0:
        raise ValueError("Range: delta is 0")
    count = max(int(np.ceil((limit - start) / delta)), 0)
    _bounded("Range", [count])
    return [(start + np.arange(count) * delta).astype(np.asarray(x[0]).dtype)]


def _identity(x, a, o):
    return [x[0]]


# ------------------------------------------------------------ reductions and indexing

def _reduce(fn, axes_input_from, empty):
    def run(x, a, o):
        v = x[0]
        axes = a.get("axes") if o < axes_input_from else (
            _ints(x[1]) if len(x) > 1 and x[1] is not None else None)
        keepdims = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return [v]
            axes = list(range(v.ndim))
        axes = tuple(_axis(ax, v.ndim) for ax in axes)
        if v.size == 0 or any(v.shape[ax] == 0 for ax in axes):
            shape = [1 if i in axes else s for i, s in enumerate(v.shape)] if keepdims else \
                [s for i, s in enumerate(v.shape) if i not in axes]
            return [np.full(shape, empty(v.dtype), v.dtype)]
        return [fn(v, axis=axes, keepdims=keepdims).astype(v.dtype)]
    return run


def _lowest(dtype):
    if dtype == np.bool_:
        return False
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


def _argmax(x, a, o):
    v = x[0]
    axis = _axis(a.get("axis", 0), v.ndim)
    if a.get("select_last_index", 0):
        idx = v.shape[axis] - 1 - np.argmax(np.flip(v, axis=axis), axis=axis)
    else:
        idx = np.argmax(v, axis=axis)
    if a.get("keepdims", 1):
        idx = np.expand_dims(idx, axis)
    return [idx.astype(np.int64)]


def _gather(x, a, o):
    data, idx = x[0], np.asarray(x[1])
    axis = _axis(a.get("axis", 0), data.ndim)
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    return [np.take(data, idx, axis=axis)]


def _gather_elements(x, a, o):
    data, idx = x[0], np.asarray(x[1])
    axis = _axis(a.get("axis", 0), data.ndim)
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    return [np.take_along_axis(data, idx, axis=axis)]


def _topk(x, a, o):
    v, k = x[0], int(np.asarray(x[1]).reshape(-1)[0])
    axis = _axis(a.get("axis", -1), v.ndim)
    largest = a.get("largest", 1)
    # stable sort: equal values keep the lower index first, in both orders
    # (descending order of unsigned integers by their complement, which
    # does not wrap as a negation would)
    key = (~v if v.dtype.kind == "u" else -v) if largest else v
    order = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return [np.take_along_axis(v, idx, axis=axis), idx.astype(np.int64)]


def _layer_norm(x, a, o):
    v = x[0]
    axis = _axis(a.get("axis", -1), v.ndim)
    eps = a.get("epsilon", 1e-5)
    stash = _np_dtype(a.get("stash_type", 1))
    axes = tuple(range(axis, v.ndim))
    w = v.astype(stash)
    mean = w.mean(axis=axes, keepdims=True)
    var = ((w - mean) ** 2).mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    y = (w - mean) * inv
    y = y * x[1]
    if len(x) > 2 and x[2] is not None:
        y = y + x[2]
    return [y.astype(v.dtype), mean.astype(stash), inv.astype(stash)]


def _not(x, a, o):
    return [np.logical_not(x[0])]


OPS = {
    "Add": _arithmetic(np.add), "Sub": _arithmetic(np.subtract),
    "Mul": _arithmetic(np.multiply), "Div": _binary(_div), "Pow": _binary(_pow),
    "Equal": _binary(np.equal), "Less": _binary(np.less), "Greater": _binary(np.greater),
    "And": _binary(np.logical_and), "Not": _not, "Where": _where,
    "Neg": _unary(np.negative), "Sigmoid": _unary(_sigmoid), "Tanh": _unary(np.tanh),
    "Relu": _unary(lambda v: np.maximum(v, 0).astype(v.dtype)), "LeakyRelu": _leaky_relu,
    "Exp": _unary(np.exp), "Log": _unary(np.log), "Sqrt": _unary(np.sqrt), "Erf": _unary(_erf),
    "Softmax": _softmax, "LogSoftmax": lambda x, a, o: _softmax(x, a, o, log=True),
    "Clip": _clip, "Identity": _identity, "Dropout": _dropout, "Cast": _cast,
    "MatMul": _matmul, "Gemm": _gemm_op,
    "Concat": _concat, "Split": _split, "Slice": _slice, "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze, "Transpose": _transpose, "Reshape": _reshape, "Flatten": _flatten,
    "Expand": _expand, "Shape": _shape, "Size": _size, "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "ReduceMean": _reduce(np.mean, 18, lambda dt: np.nan),
    "ReduceSum": _reduce(np.sum, 13, lambda dt: 0),
    "ReduceMax": _reduce(np.max, 18, _lowest),
    "ArgMax": _argmax, "Gather": _gather, "GatherElements": _gather_elements, "TopK": _topk,
    "LayerNormalization": _layer_norm,
}
