"""Validation, allocation and backend choice between the public layers and the
kernels (the C extension ``rnncore._core`` or the NumPy reference).

Everything a user can pass is checked here, before C sees it, and every error
names the argument.
"""
import contextlib
import operator
import os
import threading
import warnings

import numpy as np

from . import reference

try:
    from . import _core
    _core.init()  # CPU detection and kernel choice, once (RNNCORE_DISABLE_ISA)
    _CORE_ERROR = None
except ImportError as exc:  # the extension was not built: the reference still works
    _core = None
    _CORE_ERROR = f"{type(exc).__name__}: {exc}"

MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU_RB")  # GRU_RB: reset gate before W_hn
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3, "GRU_RB": 3}


def _select_backend():
    requested = os.environ.get("RNNCORE_BACKEND", "").strip().lower()
    if requested not in ("", "c", "reference"):
        raise ValueError(f"RNNCORE_BACKEND must be 'c' or 'reference', got {requested!r}")
    if requested == "reference":
        return "reference"
    if _core is None:
        if requested == "c":
            raise ImportError(f"RNNCORE_BACKEND=c but the C extension failed to import: {_CORE_ERROR}")
        warnings.warn(f"rnncore: C extension unavailable ({_CORE_ERROR}); "
                      "using the slow NumPy reference backend", RuntimeWarning, stacklevel=3)
        return "reference"
    return "c"


_backend = _select_backend()


def backend():
    """Name of the active backend: ``'c'`` (compiled kernels) or ``'reference'``
    (pure NumPy, forced by ``RNNCORE_BACKEND=reference`` or used when the
    extension is missing)."""
    return _backend


@contextlib.contextmanager
def using_backend(name):
    """Run the layers on `name` ('c' or 'reference') inside the block: for the
    tests and ``rnncore info``; it switches the whole process."""
    global _backend
    if name not in ("c", "reference") or (name == "c" and _core is None):
        raise ValueError(f"backend {name!r} is not available")
    saved, _backend = _backend, name
    try:
        yield
    finally:
        _backend = saved


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


def get_num_threads():
    """Number of threads the kernels may use."""
    if _num_threads is not None:
        return _num_threads
    if _core is not None:
        return _core.default_threads()
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------- checks

def check_int(name, value, minimum=None):
    """An integer argument (bool excluded): TypeError for other types,
    ValueError below `minimum`."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_float32(name, value):
    """`value` as a float32 ndarray.

    Real floating input of another precision (float16, float64, longdouble) is
    converted to float32; every other dtype (integers, bool, complex, object,
    strings) raises TypeError. The result may share memory with `value`.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be a float32 array, could not convert "
                        f"{type(value).__name__}: {exc}") from None
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be float32 (other real float types are converted), "
                        f"got {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_shape(name, arr, expected, what):
    """ValueError naming `name` unless arr.shape == expected."""
    if arr.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {what} = {shape_str(expected)}, "
                         f"got {shape_str(arr.shape)}")


def as_state(name, value, expected, what):
    """An initial-state argument: float32, C-contiguous, of shape `expected`."""
    if isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be an array of shape {what} = {shape_str(expected)}, "
                         f"got a {type(value).__name__}")
    arr = as_float32(name, value)
    check_shape(name, arr, expected, what)
    return np.ascontiguousarray(arr)


# ---------------------------------------------------------------- compute

_ws_cache = threading.local()  # per Python thread, so concurrent calls never share


def workspace(floats, what):
    """A float32 scratch buffer of `floats` floats (0 means the C library found
    the sizes overflowing), reused across calls of the same Python thread: a
    fresh multi-megabyte buffer per call cost 3.5% of lstm_t100_n64_h256 in
    page faults and zeroing. Forward and backward share it (never at once)."""
    if floats == 0:
        raise MemoryError(f"rnncore: {what} overflows the address space")
    ws = getattr(_ws_cache, "ws", None)
    if ws is None or ws.size < floats:
        _ws_cache.ws = None  # release the old buffer before allocating the new one
        ws = _ws_cache.ws = np.empty(floats, dtype=np.float32)
    return ws[:floats]


def matmul(a, b, out=None, accumulate=False):
    """a @ b for float32 2-D arrays of any strides (``w.T`` is a stride swap,
    not a copy) on the library's blocked GEMM (rnc_gemm) and its OpenMP
    threads, into `out` (added to it with accumulate); NumPy's matmul on the
    reference backend. Why not NumPy's BLAS: its OpenBLAS threads keep
    spinning after a call and slowed the OpenMP kernels that follow (a GRU
    language-model step took 901 ms, 744 ms with OPENBLAS_NUM_THREADS=1);
    one thread pool avoids that. The GEMMs alone run at about the same speed
    as OpenBLAS's for a 10k-word decoder (37-58 GFLOP/s on 1 thread here)."""
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
    if _backend != "c" or a.size == 0 or b.size == 0:
        r = a @ b
        if accumulate:
            out += r
        else:
            out[...] = r
        return out
    n = get_num_threads()
    _core.gemm(a, b, out, accumulate, workspace(_core.gemm_workspace_floats(n), "gemm"), n)
    return out


def _workspace(mode, T, N, I, H, n_threads):
    """Forward workspace for a layer-direction with up to I input features
    (shared by all of a call's)."""
    floats = _core.fwd_workspace_floats(cell_code(mode), T, N, I, H, n_threads)
    return workspace(floats, f"workspace for T={T}, N={N}, H={H}")


def cell_code(mode):
    return {"RNN_TANH": _core.CELL_RNN_TANH, "RNN_RELU": _core.CELL_RNN_RELU,
            "LSTM": _core.CELL_LSTM, "GRU": _core.CELL_GRU, "GRU_RB": _core.CELL_GRU_RB}[mode]


def pack_weights(mode, hidden_size, w):
    """The kernels' packed form of a [G*H, K] weight (see rnc_pack_weights in
    rnncore.h), read-only; None when the C extension is missing."""
    if _core is None:
        return None
    cell = cell_code(mode)
    floats = _core.packed_floats(cell, hidden_size, w.shape[1])
    if floats == 0:
        raise MemoryError(f"rnncore: packed weights of shape {shape_str(w.shape)} overflow")
    packed = np.empty(floats, dtype=np.float32)
    _core.pack_weights(cell, hidden_size, w, packed)
    packed.flags.writeable = False
    return packed


_pool_lock = threading.Lock()  # tape pools may be shared by several Python threads


def _take(pool, floats):
    """A float32 buffer of `floats` from `pool` (tapes that backward has
    consumed), or a new one. Fresh 27 MB tapes per step (lstm h512 n64 t35)
    cost 4% of a training step in page faults."""
    with _pool_lock:
        for i, buf in enumerate(pool):
            if buf.size == floats:
                return pool.pop(i)
    return np.empty(floats, dtype=np.float32)


def recycle(record, pool, limit):
    """Return a consumed training record's tape buffers to `pool` (at most
    `limit` buffers)."""
    with _pool_lock:
        for rec in record.get("layers", ()):
            for tape in rec["tapes"]:
                if tape is not None and len(pool) < limit:
                    pool.append(tape)


def run_layers(mode, x, h0, c0, layers, *, hidden_size, bidirectional, batch_first,
               masks=None, record=None, pool=(), lengths=None):
    """Stacked, optionally bidirectional recurrent layers over a whole batch.

    x: float32 C-contiguous ``[T, N, I]`` (``[N, T, I]`` if batch_first);
    h0, c0: ``[L*D, N, H]`` or None (zeros; c0 only for LSTM);
    layers: per layer, per direction, a dict with 'w_ih', 'w_hh', 'b_ih', 'b_hh'
    (PyTorch layout, biases may be None) and 'w_ih_p', 'w_hh_p' (packed).
    Returns ``(y, h_n, c_n)``: y ``[T, N, D*H]`` (``[N, T, D*H]`` if batch_first),
    h_n and c_n ``[L*D, N, H]`` (c_n None unless LSTM).

    Training (rnncore._bptt): ``masks`` per layer multiplies that layer's input
    (inter-layer dropout; None entries for none); a ``record`` dict is filled
    with what backward needs: each layer's input, output and tapes (tape
    buffers taken from ``pool`` when it has them).

    lengths: None, or validated int64 ``[N]`` steps of each sequence (see
    rnncore._lengths).
    """
    L = len(layers)
    masks = masks or [None] * L
    if lengths is not None:
        from . import _lengths
        return _lengths.run_layers(mode, x, h0, c0, layers, lengths, hidden_size=hidden_size,
                                   bidirectional=bidirectional, batch_first=batch_first,
                                   masks=masks, record=record, pool=pool)
    if _backend == "reference":
        return _run_reference(mode, x, h0, c0, layers, masks, record, hidden_size=hidden_size,
                              bidirectional=bidirectional, batch_first=batch_first)
    D = 2 if bidirectional else 1
    H = hidden_size
    if batch_first:
        N, T = x.shape[:2]
    else:
        T, N = x.shape[:2]
    h_n = np.empty((L * D, N, H), dtype=np.float32)
    c_n = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    n_threads = get_num_threads()  # resolved once: the workspace depends on it
    ws = _workspace(mode, T, N, max(x.shape[2], D * H), H, n_threads)
    cell = cell_code(mode)
    inp = x.reshape(T * N, x.shape[2])
    for layer, directions in enumerate(layers):
        if masks[layer] is not None:
            inp = inp * masks[layer].reshape(T * N, -1)
        y = np.empty((T * N, D * H), dtype=np.float32)
        tape_floats = _core.tape_floats(cell, T, N, inp.shape[1], H) if record is not None else 0
        tapes = [_take(pool, tape_floats) if tape_floats else None for _ in directions]
        for d, p in enumerate(directions):
            k = layer * D + d
            _core.forward(
                cell, T, N, inp.shape[1], H, batch_first, d == 1, inp,
                h0[k] if h0 is not None else None,
                c0[k] if c0 is not None else None,
                p["w_ih_p"], p["w_hh_p"], p["b_ih"], p["b_hh"],
                y, d * H, h_n[k], c_n[k] if c_n is not None else None,
                ws, n_threads, tapes[d], None, p.get("peep"), p.get("coupled", False))
        if record is not None:
            record.setdefault("layers", []).append({"inp": inp, "y": y, "tapes": tapes})
        inp = y
    if record is not None:
        record.update(backend="c", T=T, N=N)
    shape = (N, T, D * H) if batch_first else (T, N, D * H)
    return inp.reshape(shape), h_n, c_n


def _time_major64(a, batch_first):
    a = np.asarray(a, dtype=np.float64)
    return a.transpose(1, 0, 2) if batch_first else a


def _run_reference(mode, x, h0, c0, layers, masks, record, *, hidden_size, bidirectional,
                   batch_first):
    """run_layers on the float64 NumPy reference, results cast to float32; the
    record keeps each layer's float64 time-major input."""
    D = 2 if bidirectional else 1
    H = hidden_size
    inp = _time_major64(x, batch_first)
    T, N = inp.shape[:2]
    L = len(layers)
    h_n = np.empty((L * D, N, H), dtype=np.float32)
    c_n = np.empty((L * D, N, H), dtype=np.float32) if mode == "LSTM" else None
    zeros = np.zeros((N, H))

    def f64(a):
        return None if a is None else a.astype(np.float64)

    for layer, directions in enumerate(layers):
        if masks[layer] is not None:
            inp = inp * _time_major64(masks[layer], batch_first)
        if record is not None:
            record.setdefault("inputs", []).append(inp)
        outs = []
        for d, p in enumerate(directions):
            k = layer * D + d
            y, hk, ck = reference.layer_forward(
                mode, inp, f64(h0[k]) if h0 is not None else zeros,
                f64(c0[k]) if c0 is not None else zeros,
                f64(p["w_ih"]), f64(p["w_hh"]), f64(p["b_ih"]), f64(p["b_hh"]),
                reverse=d == 1, peephole=f64(p.get("peep")),
                input_forget=p.get("coupled", False))
            outs.append(y)
            h_n[k] = hk
            if c_n is not None:
                c_n[k] = ck
        inp = np.concatenate(outs, axis=2)
    if record is not None:
        record.update(backend="reference", T=T, N=N)
    y = inp.astype(np.float32)
    if batch_first:
        y = np.ascontiguousarray(y.transpose(1, 0, 2))
    return y, h_n, c_n
