"""Where the engine runs: the Ops in use (the C kernels, or the NumPy
reference where the extension is missing or ``RNNCORE_BACKEND=reference``
asks for it), the thread count, and the two entry points the models above
share (packing weights, matmul)."""
import contextlib
import os
import threading
import warnings

import numpy as np

try:  # a dependency; the fallback keeps the package importable without it
    import threadpoolctl
except ImportError:  # pragma: no cover
    threadpoolctl = None

from . import cells
from .checks import check_int, shape_str
from .ops import Ops

# a linear layer's weights are packed as one gate of Nout units
_LINEAR_CELL = cells.cell("RNN_TANH")

try:
    from .c_ops import COps
    _C_OPS, CORE_ERROR = COps(), None
except ImportError as exc:  # the extension was not built: the reference still works
    _C_OPS, CORE_ERROR = None, f"{type(exc).__name__}: {exc}"

REFERENCE_OPS = Ops()

if _C_OPS is not None and _C_OPS.blocking()["cache_error"]:  # a bad RNNCORE_CACHE
    warnings.warn(f"rnncore: {_C_OPS.blocking()['cache_error']}; using the detected caches",
                  RuntimeWarning, stacklevel=2)


def _select():
    requested = os.environ.get("RNNCORE_BACKEND", "").strip().lower()
    if requested not in ("", "c", "reference"):
        raise ValueError(f"RNNCORE_BACKEND must be 'c' or 'reference', got {requested!r}")
    if requested == "reference":
        return REFERENCE_OPS
    if _C_OPS is None:
        if requested == "c":
            raise ImportError(f"RNNCORE_BACKEND=c but the C extension failed to import: {CORE_ERROR}")
        warnings.warn(f"rnncore: C extension unavailable ({CORE_ERROR}); "
                      "using the slow NumPy reference backend", RuntimeWarning, stacklevel=4)
        return REFERENCE_OPS
    return _C_OPS


_ops = _select()


def ops():
    """The Ops every layer, loss and model runs on now."""
    return _ops


def c_ops():
    """The C kernels' Ops (whether in use or not), or None when the extension
    is missing."""
    return _C_OPS


def backend():
    """Name of the active backend: ``'c'`` (compiled kernels) or ``'reference'``
    (pure NumPy, forced by ``RNNCORE_BACKEND=reference`` or used when the
    extension is missing)."""
    return _ops.name


@contextlib.contextmanager
def using_backend(name):
    """Run on `name` ('c' or 'reference') inside the block: for the tests and
    ``rnncore info``; it switches the whole process."""
    global _ops
    chosen = {"c": _C_OPS, "reference": REFERENCE_OPS}.get(name)
    if chosen is None:
        raise ValueError(f"backend {name!r} is not available")
    saved, _ops = _ops, chosen
    try:
        yield chosen
    finally:
        _ops = saved


# ---------------------------------------------------------------- threads

_threads_lock = threading.Lock()
_num_threads = None  # None: follow OpenMP (OMP_NUM_THREADS, threadpoolctl limits, cores)


def set_num_threads(n):
    """Set the number of threads the kernels may use (>= 1), or None to follow
    the OpenMP runtime again: ``OMP_NUM_THREADS`` when set, limits applied with
    ``threadpoolctl``, otherwise the cores available to the process. Small
    problems run on fewer threads whatever the setting."""
    if n is not None:
        n = check_int("n", n, minimum=1)
    global _num_threads
    with _threads_lock:
        _num_threads = n


@contextlib.contextmanager
def num_threads(n):
    """Inside the block the kernels use `n` threads (as set_num_threads(n);
    None leaves the setting alone); the previous setting comes back after.
    Yields the thread count in effect. The setting is the process's: every
    Python thread sees it."""
    global _num_threads
    with _threads_lock:
        saved = _num_threads
    if n is not None:
        set_num_threads(n)
    try:
        yield get_num_threads()
    finally:
        with _threads_lock:
            _num_threads = saved


def get_num_threads():
    """Number of threads the kernels may use."""
    if _num_threads is not None:
        return _num_threads
    if _C_OPS is not None:
        return _C_OPS.default_threads()
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_blas = []  # the threadpoolctl controller, made on first use ([None] without threadpoolctl)


def one_blas_thread():
    """A context in which NumPy's BLAS runs on one thread. For code that
    mixes NumPy products (batched attention, for one) with the kernels'
    OpenMP threads: OpenBLAS's threads keep spinning after each product and
    take the cores from the kernels' team. Measured: a Seq2Seq training
    batch (H = 256, 64 pairs, 2 cores, a loaded machine) took 8.9 s with
    OpenBLAS on 2 threads, 0.35 s on 1. A no-op without threadpoolctl."""
    if not _blas:  # made on first use: it lists the BLAS libraries loaded by then
        _blas.append(None if threadpoolctl is None else threadpoolctl.ThreadpoolController())
    if _blas[0] is None:
        return contextlib.nullcontext()
    return _blas[0].limit(limits=1, user_api="blas")


# ---------------------------------------------------------------- shared entry points

def pack(cell, hidden_size, w):
    """The kernels' packed form of a [G*H, K] weight, read-only, or None when
    the extension is missing. Packed whatever the backend in use, so that
    switching backends never needs a re-pack."""
    return None if _C_OPS is None else _C_OPS.pack(cell, hidden_size, w)


class Linear:
    """A linear layer with constant float32 weights w [Nout, K] (and bias
    [Nout] or None), packed once for the kernels: ``lin(x)`` is
    ``x @ w.T + bias`` for x [M, K] on the active Ops."""

    def __init__(self, w, bias=None):
        self.w = np.ascontiguousarray(w, np.float32)
        if self.w.ndim != 2 or self.w.size == 0:
            raise ValueError(f"Linear: w must be a non-empty 2-D array, got {shape_str(self.w.shape)}")
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        if self.bias is not None and self.bias.shape != (self.w.shape[0],):
            raise ValueError(f"Linear: bias must have shape ({self.w.shape[0]},), got "
                             f"{shape_str(self.bias.shape)}")
        self.w_p = None if _C_OPS is None else _C_OPS.pack(_LINEAR_CELL, self.w.shape[0], self.w)

    @classmethod
    def with_bias(cls, lin, bias):
        """lin's weights (and their packed form, shared) with this bias."""
        out = cls.__new__(cls)
        out.w, out.w_p = lin.w, lin.w_p
        out.bias = np.ascontiguousarray(bias, np.float32)
        if out.bias.shape != (lin.w.shape[0],):
            raise ValueError(f"Linear: bias must have shape ({lin.w.shape[0]},), got "
                             f"{shape_str(out.bias.shape)}")
        return out

    def __call__(self, x, out=None):
        """x @ w.T + bias, into `out` (float32 [M, Nout], C-contiguous,
        writeable, not overlapping x) when given."""
        if x.ndim != 2 or x.shape[1] != self.w.shape[1]:
            raise ValueError(f"Linear: x must be (M, {self.w.shape[1]}), got {shape_str(x.shape)}")
        shape = (x.shape[0], self.w.shape[0])
        if out is not None and (not isinstance(out, np.ndarray) or out.dtype != np.float32 or
                                out.shape != shape or not out.flags.c_contiguous or
                                not out.flags.writeable or np.shares_memory(out, x)):
            raise ValueError(f"Linear: out must be a writeable C-contiguous float32 array of "
                             f"shape {shape_str(shape)} not overlapping x")
        if x.shape[0] == 0:
            return np.zeros(shape, np.float32) if out is None else out
        return _ops.linear(x, self.w, self.w_p, self.bias, get_num_threads(), out)


def matmul(a, b, out=None, accumulate=False):
    """a @ b for float32 2-D arrays of any strides (``w.T`` is a stride swap,
    not a copy) on the active Ops (the C backend's blocked GEMM), into `out`
    (added to it with accumulate)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: a {shape_str(a.shape)} and b {shape_str(b.shape)} must be "
                         "2-D with b's rows = a's columns")
    M, N = a.shape[0], b.shape[1]
    if out is not None and out.shape != (M, N):
        raise ValueError(f"matmul: out must have shape {shape_str((M, N))}, got "
                         f"{shape_str(out.shape)}")
    if out is None:
        out = np.empty((M, N), np.float32)
        accumulate = False
    return _ops.matmul(a, b, out, accumulate, get_num_threads())


def softmax_rows(x, out=None, log=False):
    """softmax (log-softmax with log) of each row of a float32 2-D array x
    [M, V] whose columns are contiguous (rows of any stride) on the active
    Ops, into `out` (float32 [M, V], columns contiguous; it may be x itself:
    in place) or a new array."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise TypeError(f"softmax_rows: x must be a float32 array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != 2 or (x.size and (x.strides[1] != 4 or x.strides[0] % 4)):
        raise ValueError(f"softmax_rows: x must be 2-D with contiguous columns, got "
                         f"shape {shape_str(x.shape)}, strides {x.strides}")
    if out is None:
        out = np.empty(x.shape, np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != x.shape \
            or not out.flags.writeable or (out.size and (out.strides[1] != 4 or out.strides[0] % 4)):
        raise ValueError(f"softmax_rows: out must be a writeable float32 array of shape "
                         f"{shape_str(x.shape)} with contiguous columns")
    elif not _same_view(out, x) and np.shares_memory(out, x):
        raise ValueError("softmax_rows: out overlaps x without being x itself")
    if x.size == 0:
        return out
    return _ops.softmax(x, out, bool(log), get_num_threads())


def scatter_add_rows(dst, index, src):
    """dst[index[r]] += src[r] for every row r, in order (the sums of
    ``np.add.at(dst, index, src)``, bit for bit): the gradient of an
    embedding lookup. dst: a writeable C-contiguous float32 [V, E]; index:
    integers [M] in [0, V) (any shape, flattened); src: float32 with M rows
    of E (any shape whose size is M * E). Returns dst."""
    if not isinstance(dst, np.ndarray) or dst.dtype != np.float32 or dst.ndim != 2 or \
            not dst.flags.c_contiguous or not dst.flags.writeable or dst.size == 0:
        raise ValueError("scatter_add_rows: dst must be a writeable, C-contiguous, non-empty "
                         f"float32 2-D array, got {getattr(dst, 'dtype', type(dst).__name__)} "
                         f"{shape_str(getattr(dst, 'shape', ()))}")
    index = np.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"scatter_add_rows: index must hold integers, got {index.dtype}")
    index = np.ascontiguousarray(index.reshape(-1), dtype=np.int64)
    V, E = dst.shape
    if not isinstance(src, np.ndarray) or src.dtype != np.float32 or src.size != index.size * E:
        raise ValueError(f"scatter_add_rows: src must be float32 with {index.size} rows of {E}, "
                         f"got {getattr(src, 'dtype', type(src).__name__)} "
                         f"{shape_str(getattr(src, 'shape', ()))}")
    if index.size == 0:
        return dst
    lo, hi = index.min(), index.max()
    if lo < 0 or hi >= V:
        raise ValueError(f"scatter_add_rows: index must be in [0, {V}), got values in [{lo}, {hi}]")
    return _ops.scatter_add_rows(dst, index, src.reshape(index.size, E), get_num_threads())


def _same_view(a, b):
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and \
        a.strides == b.strides and a.shape == b.shape
