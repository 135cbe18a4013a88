# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Bindings of the rnncore C library: typed memoryviews in, one C call, status
mapped to an exception, the GIL released around every kernel.

Glue only: validation, allocation and policy live in rnncore/engine (the only
importer of this module is rnncore/engine/c_ops.py). Every call takes the
sizes positionally and everything else by keyword; paired states travel as
pairs ``(h, c)`` (``c`` None unless LSTM). The shapes are re-checked cheaply
here, so that even a direct call cannot read or write out of bounds.
"""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_GetBuffer)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t

import sys

import numpy as np

from _crnncore cimport *

# rnc_cell enumerators by name (rnncore.engine.cells.Cell.c_enum)
CELL_ENUM = {"RNC_CELL_RNN_TANH": RNC_CELL_RNN_TANH, "RNC_CELL_RNN_RELU": RNC_CELL_RNN_RELU,
             "RNC_CELL_LSTM": RNC_CELL_LSTM, "RNC_CELL_GRU": RNC_CELL_GRU,
             "RNC_CELL_GRU_RB": RNC_CELL_GRU_RB}
VERSION = RNC_VERSION.decode()


cdef int _check(rnc_status status) except -1:
    if status == RNC_OK:
        return 0
    msg = rnc_status_str(status).decode()
    if status == RNC_ERR_INVALID_ARG:
        raise ValueError(f"rnncore C library rejected its arguments ({msg}); "
                         "the Python validation should have caught this")
    if status == RNC_ERR_NO_MEMORY:
        raise MemoryError(msg)
    if status == RNC_ERR_UNSUPPORTED:
        raise NotImplementedError(msg)
    raise RuntimeError(f"rnncore C library returned status {<int>status}")


cdef int _need(bint ok, str name) except -1:
    if not ok:
        raise ValueError(f"rnncore._core: {name} has the wrong shape for these sizes")
    return 0


# Pointers to optional arguments (None -> NULL) after a shape check. The
# caller keeps the arrays alive for the call, so the pointer outlives the view.

cdef const float *_in1(const float[::1] a, Py_ssize_t n, str name) except? NULL:
    if a is None:
        return NULL
    _need(a.shape[0] == n and n > 0, name)
    return &a[0]


cdef float *_out1(float[::1] a, Py_ssize_t n, str name) except? NULL:
    if a is None:
        return NULL
    _need(a.shape[0] == n and n > 0, name)
    return &a[0]


cdef const float *_in2(const float[:, ::1] a, Py_ssize_t rows, Py_ssize_t cols,
                       str name) except? NULL:
    if a is None:
        return NULL
    _need(a.shape[0] == rows and a.shape[1] == cols, name)
    return &a[0, 0]


cdef float *_out2(float[:, ::1] a, Py_ssize_t rows, Py_ssize_t cols, str name) except? NULL:
    if a is None:
        return NULL
    _need(a.shape[0] == rows and a.shape[1] == cols, name)
    return &a[0, 0]


# The step plans' arrays as raw buffers: a typed memoryview per array (five a
# step) cost about 0.4 us of a 1.5 us H = 8 step (perf: format parsing and
# memoryview objects); a held Py_buffer with its format checked here is the
# same check without them.

cdef bint _LITTLE = sys.byteorder == "little"

cdef struct _Held:
    Py_buffer view[5]
    int n


cdef bint _float32_format(const char *f) noexcept:
    if f == NULL:  # PEP 3118: no format means unsigned bytes
        return False
    if f[0] == c'@' or f[0] == c'=' or (f[0] == c'<' and _LITTLE):
        f += 1
    return f[0] == c'f' and f[1] == 0


cdef void *_hold(_Held *held, object a, bint writable, int ndim, Py_ssize_t n0, Py_ssize_t n1,
                 Py_ssize_t n2, str name) except NULL:
    """a's data as a C-contiguous float32 array of shape (n0, n1) (ndim 2) or
    (n0, n1, n2) (ndim 3), every size > 0, its buffer held until
    _release(held)."""
    cdef Py_buffer *v = &held.view[held.n]
    try:
        PyObject_GetBuffer(a, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0))
    except (BufferError, ValueError, TypeError) as e:  # numpy: ValueError if not C-contiguous
        raise ValueError(f"rnncore._core: {name}: {e}") from None
    held.n += 1
    if not (v.itemsize == 4 and _float32_format(v.format) and v.ndim == ndim and v.shape[0] == n0
            and v.shape[1] == n1 and (ndim == 2 or v.shape[2] == n2)):
        raise ValueError(f"rnncore._core: {name} must be C-contiguous float32 of shape "
                         f"{tuple([n0, n1, n2][:ndim])}")
    return v.buf


cdef void _release(_Held *held) noexcept:
    while held.n > 0:
        held.n -= 1
        PyBuffer_Release(&held.view[held.n])


cdef struct _StepIO:  # a step's arrays (held in held) as pointers
    _Held held
    const float *x
    const float *h0
    const float *c0
    float *h
    float *c


cdef tuple _step_io(_StepIO *io, object x, object state, bint lstm, tuple shape, Py_ssize_t I):
    """A step plan's arrays: x [N, I] and state = (h0, c0) (shape = (L, N, H)
    each, or None) held, new (h, c) made and held (c None unless lstm) and
    returned. The caller releases io.held whatever happens (try / finally)."""
    cdef Py_ssize_t L = shape[0], N = shape[1], H = shape[2]
    h0, c0 = _pair(state, "state")
    _need(c0 is None or lstm, "c0")
    h_array = np.empty(shape, np.float32)
    c_array = np.empty(shape, np.float32) if lstm else None
    io.x = <const float *>_hold(&io.held, x, False, 2, N, I, 0, "x")
    io.h0 = <const float *>_hold(&io.held, h0, False, 3, L, N, H, "h0") if h0 is not None else NULL
    io.c0 = <const float *>_hold(&io.held, c0, False, 3, L, N, H, "c0") if c0 is not None else NULL
    io.h = <float *>_hold(&io.held, h_array, True, 3, L, N, H, "h")
    io.c = <float *>_hold(&io.held, c_array, True, 3, L, N, H, "c") if lstm else NULL
    return h_array, c_array


cdef tuple _pair(object p, str name):
    """(h, c) from a pair or None."""
    if p is None:
        return None, None
    _need(isinstance(p, tuple) and len(<tuple>p) == 2, name)
    return p


def has_openmp():
    return bool(rnc_has_openmp())


def default_threads():
    return rnc_default_threads()


def fwd_workspace_floats(int cell, int64_t T, int64_t N, int64_t I, int64_t H, *, int n_threads,
                         int64_t proj=0):
    """Floats of workspace `forward` needs with n_threads, or 0 when the sizes overflow."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell, proj)
    return rnc_fwd_workspace_floats(&d, n_threads)


def bwd_workspace_floats(int cell, int64_t T, int64_t N, int64_t I, int64_t H, *, int n_threads,
                         int64_t proj=0):
    """Floats of workspace `backward` needs with n_threads, or 0 when the sizes overflow."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell, proj)
    return rnc_bwd_workspace_floats(&d, n_threads)


def tape_floats(int cell, int64_t T, int64_t N, int64_t I, int64_t H):
    """Floats of the tape of a forward pass for training (0 for RNN cells)."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell, 0)
    return rnc_tape_floats(&d)


def packed_floats(int cell, int64_t H, int64_t K):
    """Floats of the packed form of a [G*H, K] weight, or 0 when it overflows."""
    return rnc_packed_floats(<rnc_cell>cell, H, K)


def pack_weights(int cell, int64_t H, *, const float[:, ::1] w, float[::1] packed):
    """packed <- w ([G*H, K], PyTorch's layout) in the kernels' panel layout."""
    cdef int64_t K = w.shape[1]
    _need(w.shape[0] == rnc_cell_gates(<rnc_cell>cell) * H, "w")
    _need(packed.shape[0] == <Py_ssize_t>rnc_packed_floats(<rnc_cell>cell, H, K) > 0, "packed")
    with nogil:
        status = rnc_pack_weights(<rnc_cell>cell, H, K, &w[0, 0], &packed[0])
    _check(status)


def probe_peak_gflops(*, int n_threads, double seconds):
    """Sustained FP32 FMA GFLOP/s of the active CPU path on n_threads threads."""
    with nogil:
        r = rnc_probe_peak_gflops(n_threads, seconds)
    _need(r > 0, "seconds")
    return r


def probe_read_gbps(const float[::1] buf, *, int n_threads, double seconds):
    """Read bandwidth (GB/s) of buf, each thread reading its share."""
    _need(buf.shape[0] > 0, "buf")
    with nogil:
        r = rnc_probe_read_gbps(&buf[0], buf.shape[0], n_threads, seconds)
    _need(r > 0, "seconds")
    return r


def init():
    """Detect the CPU and choose the kernels (idempotent)."""
    rnc_init()


def isa():
    """The active CPU path: 'avx512', 'avx2', 'neon' or 'generic'."""
    return rnc_isa_name().decode()


def compiled_isas():
    return rnc_compiled_isas().decode().split(",")


def isa_available(str name):
    return bool(rnc_isa_available(name.encode()))


def set_isa(str name):
    """Switch the active CPU path (tests and benchmarks; not during other calls)."""
    _check(rnc_set_isa(name.encode()))


def blocking():
    """rnc_get_blocking: the caches detected (or set by RNNCORE_CACHE), the
    active path's registers, the GEMM blocking chosen and why, as a dict."""
    cdef const rnc_blocking *b = rnc_get_blocking()
    cdef int rows[16]
    cdef int n = rnc_gemm_tile_rows(rows, 16)
    return {"l1d": b.l1d, "l2": b.l2, "l3": b.l3, "cache_source": b.cache_source.decode(),
            "cache_error": b.cache_error.decode(), "vregs": b.vregs,
            "vector_floats": b.vector_floats, "mr": b.mr, "tile_cols": b.tile_cols,
            "kchunk": b.kchunk, "kc": b.kc, "mc": b.mc, "nc": b.nc, "prefetch": b.prefetch,
            "tile_rows": [rows[i] for i in range(min(n, 16))], "why": b.why.decode()}


def set_blocking(*, int mr=0, int64_t kchunk=0, int64_t kc=0, int64_t mc=0, int64_t nc=0,
                 prefetch=None):
    """rnc_set_blocking (sweeps and tests; not during other calls): 0 (None
    for prefetch, whose 0 means none) derives that value from the rule;
    ValueError for values out of range."""
    cdef int64_t pf = -1 if prefetch is None else prefetch
    if (prefetch is not None and pf < 0) or rnc_set_blocking(mr, kchunk, kc, mc, nc, pf) != RNC_OK:
        raise ValueError(f"blocking out of range: mr={mr} (one of {blocking()['tile_rows']}), "
                         f"kchunk={kchunk}, kc={kc}, mc={mc} (a multiple of mr), "
                         f"nc={nc} (a multiple of 32), prefetch={prefetch} (0-256 rows, or None)")


def forward(int cell, int64_t T, int64_t N, int64_t I, int64_t H, *,
            const float[:, ::1] x, const float[::1] w_ih_p, const float[::1] w_hh_p,
            const float[::1] b_ih=None, const float[::1] b_hh=None,
            state0=None, state_n=None,
            float[:, ::1] y, int64_t y_col=0, float[::1] ws, int n_threads,
            bint batch_first=False, bint reverse=False, float[::1] tape=None,
            const int64_t[::1] lengths=None, const float[::1] peephole=None,
            bint input_forget=False, int64_t proj=0, const float[::1] w_hr_p=None):
    """One layer-direction: rnc_forward. x: [T*N, I] rows; y: [T*N, ldy] rows,
    this direction's R columns starting at y_col (R = proj if proj else H);
    state0 = (h0, c0) and state_n = (h_n, c_n), h [N, R] and c [N, H], or
    None; tape: tape_floats(...) floats for training, or None; lengths: [N]
    non-increasing steps per sequence (time-major, forward only), or None;
    peephole [3H] and input_forget: the LSTM variants of rnncore.h; proj and
    w_hr_p (packed as an RNN cell of proj units over H): the projection."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell, proj)
    cdef int G = rnc_cell_gates(<rnc_cell>cell)
    _need(G > 0 and T > 0 and N > 0 and I > 0 and H > 0 and proj >= 0, "sizes")
    cdef int64_t R = proj if proj > 0 else H
    h0, c0 = _pair(state0, "state0")
    h_n, c_n = _pair(state_n, "state_n")
    cdef rnc_fwd_args a
    a.x = _in2(x, T * N, I, "x")
    a.h0 = _in2(h0, N, R, "h0")
    a.c0 = _in2(c0, N, H, "c0")
    a.w_ih_p = _in1(w_ih_p, rnc_packed_floats(<rnc_cell>cell, H, I), "w_ih_p")
    a.w_hh_p = _in1(w_hh_p, rnc_packed_floats(<rnc_cell>cell, H, R), "w_hh_p")
    a.b_ih = _in1(b_ih, G * H, "b_ih")
    a.b_hh = _in1(b_hh, G * H, "b_hh")
    a.w_hr_p = _in1(w_hr_p, rnc_packed_floats(RNC_CELL_RNN_TANH, proj, H), "w_hr_p")
    _need((proj > 0) == (a.w_hr_p != NULL), "w_hr_p")
    _need(y.shape[0] == T * N and 0 <= y_col and y_col + R <= y.shape[1], "y")
    a.y = &y[0, y_col]
    a.ldy = y.shape[1]
    a.h_n = _out2(h_n, N, R, "h_n")
    a.c_n = _out2(c_n, N, H, "c_n")
    _need(n_threads > 0, "n_threads")
    _need(ws.shape[0] >= <Py_ssize_t>rnc_fwd_workspace_floats(&d, n_threads), "ws")
    a.ws = &ws[0]
    a.batch_first = batch_first
    a.reverse = reverse
    a.tape = _out1(tape, rnc_tape_floats(&d), "tape")
    _need(lengths is None or lengths.shape[0] == N, "lengths")
    a.lengths = &lengths[0] if lengths is not None else NULL
    a.peephole = _in1(peephole, 3 * H, "peephole")
    a.input_forget = input_forget
    a.walk_back = 0
    a.bias_folded = NULL
    with nogil:
        status = rnc_forward(&d, &a, n_threads)
    _check(status)


def backward(int cell, int64_t T, int64_t N, int64_t I, int64_t H, *,
             const float[:, ::1] x, const float[:, ::1] w_ih, const float[:, ::1] w_hh,
             const float[:, ::1] y, int64_t y_col=0, const float[::1] tape=None,
             const float[:, ::1] dy, state0=None, dstate_n=None,
             float[:, ::1] dx=None, bint dx_accumulate=False, dstate0=None,
             float[:, ::1] dw_ih, float[:, ::1] dw_hh, float[::1] db_ih=None,
             float[::1] db_hh=None, float[::1] dpeephole=None,
             float[::1] ws, int n_threads, bint batch_first=False, bint reverse=False,
             const int64_t[::1] lengths=None, const float[::1] peephole=None,
             bint input_forget=False, int64_t proj=0, const float[:, ::1] w_hr=None,
             float[:, ::1] dw_hr=None):
    """One layer-direction: rnc_backward after forward(..., tape=...). y and
    dy: [T*N, ldy] rows, this direction's R columns from y_col (R = proj if
    proj else H); dx: [T*N, I] or None; state0 = (h0, c0), dstate_n =
    (dh_n, dc_n) and dstate0 = (dh0, dc0), h-like [N, R] and c-like [N, H],
    or None; w_hr [proj, H] with a projection; parameter gradients (dw_hr
    too) are added to."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell, proj)
    cdef int G = rnc_cell_gates(<rnc_cell>cell)
    _need(G > 0 and T > 0 and N > 0 and I > 0 and H > 0 and proj >= 0, "sizes")
    cdef int64_t R = proj if proj > 0 else H
    h0, c0 = _pair(state0, "state0")
    dh_n, dc_n = _pair(dstate_n, "dstate_n")
    dh0, dc0 = _pair(dstate0, "dstate0")
    cdef rnc_bwd_args a
    a.x = _in2(x, T * N, I, "x")
    a.h0 = _in2(h0, N, R, "h0")
    a.c0 = _in2(c0, N, H, "c0")
    a.w_ih = _in2(w_ih, G * H, I, "w_ih")
    a.w_hh = _in2(w_hh, G * H, R, "w_hh")
    a.w_hr = _in2(w_hr, proj, H, "w_hr") if proj > 0 else NULL
    a.dw_hr = _out2(dw_hr, proj, H, "dw_hr") if proj > 0 else NULL
    _need((proj > 0) == (a.w_hr != NULL and a.dw_hr != NULL), "w_hr/dw_hr")
    _need(y.shape[0] == T * N and 0 <= y_col and y_col + R <= y.shape[1], "y")
    a.y = &y[0, y_col]
    a.ldy = y.shape[1]
    _need((tape is None and rnc_tape_floats(&d) == 0)
          or (tape is not None and tape.shape[0] == <Py_ssize_t>rnc_tape_floats(&d) > 0), "tape")
    a.tape = &tape[0] if tape is not None else NULL
    _need(dy.shape[0] == T * N and y_col + R <= dy.shape[1], "dy")
    a.dy = &dy[0, y_col]
    a.lddy = dy.shape[1]
    a.dh_n = _in2(dh_n, N, R, "dh_n")
    a.dc_n = _in2(dc_n, N, H, "dc_n")
    a.dx = _out2(dx, T * N, I, "dx")
    a.lddx = I
    a.dx_accumulate = dx_accumulate
    a.dh0 = _out2(dh0, N, R, "dh0")
    a.dc0 = _out2(dc0, N, H, "dc0")
    a.dw_ih = _out2(dw_ih, G * H, I, "dw_ih")
    a.dw_hh = _out2(dw_hh, G * H, R, "dw_hh")
    _need(a.dw_ih != NULL and a.dw_hh != NULL, "dw_ih/dw_hh")
    a.db_ih = _out1(db_ih, G * H, "db_ih")
    a.db_hh = _out1(db_hh, G * H, "db_hh")
    _need(n_threads > 0, "n_threads")
    _need(ws.shape[0] >= <Py_ssize_t>rnc_bwd_workspace_floats(&d, n_threads) > 0, "ws")
    a.ws = &ws[0]
    a.batch_first = batch_first
    a.reverse = reverse
    _need(lengths is None or lengths.shape[0] == N, "lengths")
    a.lengths = &lengths[0] if lengths is not None else NULL
    a.peephole = _in1(peephole, 3 * H, "peephole")
    a.input_forget = input_forget
    a.dpeephole = _out1(dpeephole, 3 * H, "dpeephole")
    with nogil:
        status = rnc_backward(&d, &a, n_threads)
    _check(status)


def softmax_xent(const float[:, ::1] z, const int64_t[::1] target, *, float[::1] loss,
                 float[:, ::1] dz=None, float scale, int n_threads):
    """rnc_softmax_xent: loss[r] for each row of z [M, V]; dz [M, V] or None
    (it may be z's own buffer)."""
    cdef int64_t M = z.shape[0], V = z.shape[1]
    _need(M > 0 and V > 0, "z")
    _need(target.shape[0] == M, "target")
    _need(loss.shape[0] == M, "loss")
    cdef float *pdz = _out2(dz, M, V, "dz")
    with nogil:
        status = rnc_softmax_xent(M, V, &z[0, 0], V, &target[0], &loss[0], pdz, V, scale,
                                  n_threads)
    _check(status)


def scatter_add_rows(const int64_t[::1] index not None, const float[:, ::1] src not None,
                     float[:, ::1] dst not None, *, int n_threads):
    """rnc_scatter_add_rows: dst[index[r]] += src[r] for every row r of src
    [M, E], in row order (np.add.at's sums); dst [V, E]."""
    cdef int64_t M = src.shape[0], E = src.shape[1], V = dst.shape[0]
    _need(index.shape[0] == M, "index")
    _need(E > 0 and dst.shape[1] == E and V > 0, "dst")
    if M == 0:
        return
    with nogil:
        status = rnc_scatter_add_rows(M, E, &index[0], &src[0, 0], E, &dst[0, 0], V, E, n_threads)
    _check(status)


def softmax(const float[:, :] x not None, float[:, :] y not None, *, bint log, int n_threads):
    """rnc_softmax: y = softmax(x) (log-softmax with log) over each row of x
    [M, V]; rows of any stride, columns contiguous; y may be x itself."""
    cdef int64_t M = x.shape[0], V = x.shape[1]
    _need(M > 0 and V > 0, "x")
    _need(x.strides[1] == 4 and x.strides[0] % 4 == 0 and x.strides[0] // 4 >= V, "x")
    _need(y.shape[0] == M and y.shape[1] == V and y.strides[1] == 4 and y.strides[0] % 4 == 0
          and y.strides[0] // 4 >= V, "y")
    with nogil:
        status = rnc_softmax(M, V, &x[0, 0], x.strides[0] // 4, &y[0, 0], y.strides[0] // 4, log,
                             n_threads)
    _check(status)


def gemm(const float[:, :] a, const float[:, :] b, *, float[:, ::1] c, bint accumulate,
         float[::1] scratch, int n_threads):
    """rnc_gemm: c (+)= a @ b for float32 matrices of any strides (a
    transposed view is a stride swap, no copy); scratch holds
    gemm_workspace_floats(n_threads) floats."""
    cdef int64_t M = a.shape[0], K = a.shape[1], N = b.shape[1]
    _need(M > 0 and K > 0 and N > 0, "a")
    _need(b.shape[0] == K, "b")
    _need(c.shape[0] == M and c.shape[1] == N, "c")
    _need(scratch.shape[0] >= rnc_gemm_workspace_floats(n_threads), "scratch")
    cdef int64_t a_rs = a.strides[0] // 4, a_cs = a.strides[1] // 4
    cdef int64_t b_rs = b.strides[0] // 4, b_cs = b.strides[1] // 4
    with nogil:
        status = rnc_gemm(M, N, K, &a[0, 0], a_rs, a_cs, &b[0, 0], b_rs, b_cs, &c[0, 0], N,
                          accumulate, &scratch[0], n_threads)
    _check(status)


def linear_workspace_floats(int64_t K, *, int n_threads):
    """Floats of workspace `linear` needs, or 0 when K is out of range."""
    return rnc_linear_workspace_floats(K, n_threads)


def linear(const float[:, :] x, const float[::1] w_p, *, int64_t n_out,
           const float[::1] bias=None, float[:, ::1] y, float[::1] ws, int n_threads):
    """rnc_linear: y = x W^T (+ bias), W [n_out, K] packed by pack_weights
    (RNN cell, H = n_out); x rows of any stride, columns contiguous."""
    cdef int64_t M = x.shape[0], K = x.shape[1]
    _need(M > 0 and K > 0 and n_out > 0, "x")
    _need(x.strides[1] == 4 and x.strides[0] % 4 == 0 and x.strides[0] // 4 >= K, "x")
    _need(w_p.shape[0] == <Py_ssize_t>rnc_packed_floats(RNC_CELL_RNN_TANH, n_out, K) > 0, "w_p")
    _need(y.shape[0] == M and y.shape[1] == n_out, "y")
    _need(ws.shape[0] >= <Py_ssize_t>rnc_linear_workspace_floats(K, n_threads) > 0, "ws")
    cdef const float *pb = _in1(bias, n_out, "bias")
    cdef int64_t ldx = x.strides[0] // 4
    with nogil:
        status = rnc_linear(M, K, n_out, &x[0, 0], ldx, &w_p[0], pb, &y[0, 0], n_out, &ws[0],
                            n_threads)
    _check(status)


def gemm_workspace_floats(int n_threads):
    return rnc_gemm_workspace_floats(n_threads)


cdef class StepPlan:
    """The arguments of rnc_forward_step for stacked unidirectional layers,
    fixed at construction (packed weights, workspace, sizes), so that a step
    converts only its own arrays and makes one C call with the GIL
    released."""
    cdef int cell, n_threads
    cdef int64_t L, N, I, H
    cdef list params      # keeps the weight arrays alive
    cdef readonly object ws_array  # the workspace (readable: tests check its alignment)
    cdef tuple state_shape  # (L, N, H), built once: a step allocates only its results
    cdef float[::1] ws
    cdef rnc_fwd_args *args
    cdef list folded  # per layer its biases as rnc_fold_bias folds them
    cdef int walk  # rnc_fwd_args.walk_back of the next step
    cdef int alternates  # rnc_step_walk_alternates of the packed weights a step reads

    def __cinit__(self):
        self.args = NULL

    def __init__(self, int cell, int64_t N, int64_t I, int64_t H, *, list layers,
                 int n_threads):
        """layers: per layer a dict with 'w_ih_p', 'w_hh_p', 'b_ih', 'b_hh',
        'peephole' (each array or None) and 'input_forget'."""
        cdef int G = rnc_cell_gates(<rnc_cell>cell)
        cdef rnc_dims d = rnc_dims(1, N, I if I > H else H, H, <rnc_cell>cell, 0)
        _need(G > 0 and N > 0 and I > 0 and H > 0 and n_threads > 0 and len(layers) > 0, "sizes")
        cdef size_t floats = rnc_fwd_workspace_floats(&d, n_threads)
        _need(floats > 0, "sizes")
        cdef int64_t weight_bytes = 0
        self.cell, self.N, self.I, self.H = cell, N, I, H
        self.L, self.n_threads = len(layers), n_threads
        self.params = list(layers)
        self.state_shape = (self.L, N, H)
        # on a 64-byte boundary, as the engine's buffers (engine/buffers.py)
        raw = np.empty(floats + 16, dtype=np.float32)
        skip = ((-raw.ctypes.data) % 64) // 4
        self.ws_array = raw[skip:skip + floats]
        self.ws = self.ws_array
        self.args = <rnc_fwd_args *>PyMem_Malloc(self.L * sizeof(rnc_fwd_args))
        if self.args == NULL:
            raise MemoryError()
        cdef size_t n_ih, n_hh
        cdef float[::1] out
        self.folded = []
        for l, p in enumerate(self.params):
            n_ih = rnc_packed_floats(<rnc_cell>cell, H, I if l == 0 else H)
            n_hh = rnc_packed_floats(<rnc_cell>cell, H, H)
            self.args[l].w_ih_p = _in1(p["w_ih_p"], n_ih, "w_ih_p")
            self.args[l].w_hh_p = _in1(p["w_hh_p"], n_hh, "w_hh_p")
            _need(self.args[l].w_ih_p != NULL and self.args[l].w_hh_p != NULL, "weights")
            self.args[l].b_ih = _in1(p["b_ih"], G * H, "b_ih")
            self.args[l].b_hh = _in1(p["b_hh"], G * H, "b_hh")
            # folded once here: each step would read b_ih, b_hh and write the fold
            folded = np.empty(rnc_folded_bias_floats(<rnc_cell>cell, H), np.float32)
            out = folded
            _check(rnc_fold_bias(<rnc_cell>cell, H, self.args[l].b_ih, self.args[l].b_hh, &out[0]))
            self.folded.append(folded)
            self.args[l].bias_folded = &out[0]
            self.args[l].peephole = _in1(p["peephole"], 3 * H, "peephole")
            self.args[l].input_forget = bool(p["input_forget"])
            self.args[l].w_hr_p = NULL  # projected LSTMs step as T = 1 sequences
            self.args[l].walk_back = 0
            weight_bytes += 4 * (n_ih + n_hh)
        self.walk = 0
        self.alternates = rnc_step_walk_alternates(weight_bytes)

    def __dealloc__(self):
        PyMem_Free(self.args)

    def step(self, x, state=None):
        """(y, (h, c)) after one step from state = (h0, c0) ([L, N, H] each,
        or None for zeros) on x [N, I] (float32, C-contiguous): h, c new
        [L, N, H] arrays (c None unless LSTM), y = h[L - 1]."""
        cdef int64_t L = self.L, l
        cdef _StepIO io
        cdef rnc_status status
        io.held.n = 0
        try:
            h_array, c_array = _step_io(&io, x, state, self.cell == RNC_CELL_LSTM,
                                        self.state_shape, self.I)
            for l in range(L):
                self.args[l].walk_back = self.walk
            self.walk = (self.walk ^ 1) & self.alternates
            with nogil:
                status = rnc_forward_step(<rnc_cell>self.cell, L, self.N, self.I, self.H, self.args,
                                          io.x, io.h0, io.c0, io.h, io.c, &self.ws[0],
                                          self.n_threads)
        finally:
            _release(&io.held)
        _check(status)
        return h_array[L - 1], (h_array, c_array)


# ---------------------------------------------------------------- int8 (rnncore_int8.h)

def qisa():
    """The int8 path that goes with the active fp32 path: 'amx', 'avx512vnni', 'avx2_7bit', 'avx2', 'neon_dotprod', 'neon' or 'generic'."""
    return rnc_qisa_name().decode()


def qisa_act_max():
    """The active int8 path's activation range Q (q in [-Q, Q]): 127, or 63 on 'avx2_7bit'."""
    return rnc_qisa_act_max()


def qisa_candidates():
    """The int8 paths usable with the active fp32 path, the default first."""
    return rnc_qisa_candidates().decode().split(",")


def set_qisa(str name):
    """Use int8 path `name` (one of qisa_candidates(); "" for the default) while the fp32 path offers it."""
    _check(rnc_set_qisa(name.encode()))


def qpacked_bytes(int64_t G, int64_t H, int64_t K):
    """Bytes of packed int8 weights of a [G*H, K] weight (0: out of range)."""
    return rnc_qpacked_bytes(G, H, K)


def qpack_weights(int64_t G, int64_t H, *, const int8_t[:, ::1] wq, const float[::1] scale,
                  uint8_t[::1] packed):
    """packed <- wq [G*H, K] int8 with row scales [G*H] in the int8 kernels' layout."""
    cdef int64_t K = wq.shape[1]
    _need(wq.shape[0] == G * H and scale.shape[0] == G * H, "wq/scale")
    _need(packed.shape[0] == <Py_ssize_t>rnc_qpacked_bytes(G, H, K) > 0, "packed")
    with nogil:
        status = rnc_qpack_weights(G, H, K, &wq[0, 0], &scale[0], &packed[0])
    _check(status)


def qfwd_workspace_bytes(int cell, int64_t T, int64_t N, int64_t I, int64_t H, *, int n_threads,
                         int64_t proj=0):
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell, proj)
    return rnc_qfwd_workspace_bytes(&d, n_threads)


cdef const uint8_t *_qin(const uint8_t[::1] a, size_t n, str name) except? NULL:
    if a is None:
        return NULL
    _need(n > 0 and a.shape[0] == <Py_ssize_t>n, name)
    return &a[0]


def qforward(int cell, int64_t T, int64_t N, int64_t I, int64_t H, *,
             const float[:, ::1] x, const uint8_t[::1] w_ih_q, const uint8_t[::1] w_hh_q,
             const float[::1] b_ih=None, const float[::1] b_hh=None,
             state0=None, state_n=None, float[:, ::1] y, int64_t y_col=0, uint8_t[::1] ws,
             int n_threads, bint batch_first=False, bint reverse=False,
             const int64_t[::1] lengths=None, const float[::1] peephole=None,
             bint input_forget=False, int64_t proj=0, const uint8_t[::1] w_hr_q=None):
    """One layer-direction on int8 weights: rnc_qforward; arguments as forward
    (no tape: inference only), weights packed by qpack_weights."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell, proj)
    cdef int G = rnc_cell_gates(<rnc_cell>cell)
    _need(G > 0 and T > 0 and N > 0 and I > 0 and H > 0 and proj >= 0, "sizes")
    cdef int64_t R = proj if proj > 0 else H
    h0, c0 = _pair(state0, "state0")
    h_n, c_n = _pair(state_n, "state_n")
    cdef rnc_qfwd_args a
    a.x = _in2(x, T * N, I, "x")
    a.h0 = _in2(h0, N, R, "h0")
    a.c0 = _in2(c0, N, H, "c0")
    a.w_ih_q = _qin(w_ih_q, rnc_qpacked_bytes(G, H, I), "w_ih_q")
    a.w_hh_q = _qin(w_hh_q, rnc_qpacked_bytes(G, H, R), "w_hh_q")
    a.w_hr_q = _qin(w_hr_q, rnc_qpacked_bytes(1, proj, H), "w_hr_q") if proj > 0 else NULL
    _need(a.w_ih_q != NULL and a.w_hh_q != NULL, "weights")
    _need((proj > 0) == (a.w_hr_q != NULL), "w_hr_q")
    a.b_ih = _in1(b_ih, G * H, "b_ih")
    a.b_hh = _in1(b_hh, G * H, "b_hh")
    _need(y.shape[0] == T * N and 0 <= y_col and y_col + R <= y.shape[1], "y")
    a.y = &y[0, y_col]
    a.ldy = y.shape[1]
    a.h_n = _out2(h_n, N, R, "h_n")
    a.c_n = _out2(c_n, N, H, "c_n")
    _need(n_threads > 0, "n_threads")
    cdef size_t need = rnc_qfwd_workspace_bytes(&d, n_threads)
    _need(need > 0 and ws.shape[0] >= <Py_ssize_t>need, "ws")
    a.ws = &ws[0]
    a.batch_first = batch_first
    a.reverse = reverse
    _need(lengths is None or lengths.shape[0] == N, "lengths")
    a.lengths = &lengths[0] if lengths is not None else NULL
    a.peephole = _in1(peephole, 3 * H, "peephole")
    a.input_forget = input_forget
    a.walk_back = 0
    a.bias_folded = NULL
    with nogil:
        status = rnc_qforward(&d, &a, n_threads)
    _check(status)


def qlinear_workspace_bytes(int64_t M, int64_t K, *, int n_threads):
    return rnc_qlinear_workspace_bytes(M, K, n_threads)


def qlinear(const float[:, :] x, const uint8_t[::1] w_q, *, int64_t n_out,
            const float[::1] bias=None, float[:, ::1] y, int32_t[:, ::1] acc=None,
            float[::1] x_scale=None, uint8_t[::1] ws, int n_threads):
    """y = deq(q(x) Wq^T) (+ bias): rnc_qlinear; acc [M, n_out] and x_scale
    [M] receive the int32 products and the rows' scales when given."""
    cdef int64_t M = x.shape[0], K = x.shape[1]
    _need(M > 0 and K > 0 and x.strides[1] == 4 and x.strides[0] % 4 == 0, "x")
    _need(w_q.shape[0] == <Py_ssize_t>rnc_qpacked_bytes(1, n_out, K) > 0, "w_q")
    _need(y.shape[0] == M and y.shape[1] == n_out, "y")
    cdef const float *pb = _in1(bias, n_out, "bias")
    cdef int32_t *pacc = NULL
    if acc is not None:
        _need(acc.shape[0] == M and acc.shape[1] == n_out, "acc")
        pacc = &acc[0, 0]
    cdef float *psx = _out1(x_scale, M, "x_scale")
    cdef size_t need = rnc_qlinear_workspace_bytes(M, K, n_threads)
    _need(n_threads > 0 and need > 0 and ws.shape[0] >= <Py_ssize_t>need, "ws")
    cdef int64_t ldx = x.strides[0] // 4
    with nogil:
        status = rnc_qlinear(M, K, n_out, &x[0, 0], ldx, &w_q[0], pb, &y[0, 0], n_out, pacc, psx,
                             &ws[0], n_threads)
    _check(status)


cdef class QStepPlan:
    """StepPlan for int8 layers: the rnc_qforward arguments of stacked
    unidirectional layers fixed at construction; a step runs each layer as a
    T = 1 sequence in one GIL-free loop."""
    cdef int cell, n_threads
    cdef int64_t L, N, I, H
    cdef list params
    cdef readonly object ws_array  # the workspace (readable: tests check its alignment)
    cdef tuple state_shape
    cdef uint8_t[::1] ws
    cdef rnc_qfwd_args *args
    cdef list folded  # per layer its biases as rnc_fold_bias folds them
    cdef int walk, alternates  # as StepPlan's

    def __cinit__(self):
        self.args = NULL

    def __init__(self, int cell, int64_t N, int64_t I, int64_t H, *, list layers,
                 int n_threads):
        """layers: per layer a dict with 'w_ih_q', 'w_hh_q', 'b_ih', 'b_hh',
        'peephole' (each array or None) and 'input_forget'."""
        cdef int G = rnc_cell_gates(<rnc_cell>cell)
        cdef rnc_dims d = rnc_dims(1, N, I if I > H else H, H, <rnc_cell>cell, 0)
        _need(G > 0 and N > 0 and I > 0 and H > 0 and n_threads > 0 and len(layers) > 0, "sizes")
        cdef size_t nbytes = rnc_qfwd_workspace_bytes(&d, n_threads)
        _need(nbytes > 0, "sizes")
        cdef int64_t weight_bytes = 0
        self.cell, self.N, self.I, self.H = cell, N, I, H
        self.L, self.n_threads = len(layers), n_threads
        self.params = list(layers)
        self.state_shape = (self.L, N, H)
        self.ws_array = np.empty(nbytes, dtype=np.uint8)
        self.ws = self.ws_array
        self.args = <rnc_qfwd_args *>PyMem_Malloc(self.L * sizeof(rnc_qfwd_args))
        if self.args == NULL:
            raise MemoryError()
        cdef size_t n_ih, n_hh
        cdef float[::1] out
        self.folded = []
        for l, p in enumerate(self.params):
            n_ih = rnc_qpacked_bytes(G, H, I if l == 0 else H)
            n_hh = rnc_qpacked_bytes(G, H, H)
            self.args[l].w_ih_q = _qin(p["w_ih_q"], n_ih, "w_ih_q")
            self.args[l].w_hh_q = _qin(p["w_hh_q"], n_hh, "w_hh_q")
            # (w_ih_q, w_hh_q: the packed bytes of rnc_qpack_weights)
            _need(self.args[l].w_ih_q != NULL and self.args[l].w_hh_q != NULL, "weights")
            weight_bytes += n_ih + n_hh
            self.args[l].w_hr_q = NULL
            self.args[l].b_ih = _in1(p["b_ih"], G * H, "b_ih")
            self.args[l].b_hh = _in1(p["b_hh"], G * H, "b_hh")
            # folded once here: each step would read b_ih, b_hh and write the fold
            folded = np.empty(rnc_folded_bias_floats(<rnc_cell>cell, H), np.float32)
            out = folded
            _check(rnc_fold_bias(<rnc_cell>cell, H, self.args[l].b_ih, self.args[l].b_hh, &out[0]))
            self.folded.append(folded)
            self.args[l].bias_folded = &out[0]
            self.args[l].peephole = _in1(p["peephole"], 3 * H, "peephole")
            self.args[l].input_forget = bool(p["input_forget"])
            self.args[l].batch_first = 0
            self.args[l].reverse = 0
            self.args[l].lengths = NULL
            self.args[l].h_n = NULL
        self.walk = 0
        self.alternates = rnc_step_walk_alternates(weight_bytes)

    def __dealloc__(self):
        PyMem_Free(self.args)

    def step(self, x, state=None):
        """(y, (h, c)) after one step, as StepPlan.step."""
        cdef int64_t L = self.L, N = self.N, H = self.H, l
        cdef bint lstm = self.cell == RNC_CELL_LSTM
        cdef _StepIO io
        cdef rnc_dims d
        cdef rnc_status status = RNC_OK
        io.held.n = 0
        try:
            h_array, c_array = _step_io(&io, x, state, lstm, self.state_shape, self.I)
            with nogil:
                for l in range(L):
                    d = rnc_dims(1, N, self.I if l == 0 else H, H, <rnc_cell>self.cell, 0)
                    self.args[l].x = io.x if l == 0 else io.h + (l - 1) * N * H
                    self.args[l].h0 = io.h0 + l * N * H if io.h0 != NULL else NULL
                    self.args[l].c0 = io.c0 + l * N * H if io.c0 != NULL else NULL
                    self.args[l].y = io.h + l * N * H
                    self.args[l].ldy = H
                    self.args[l].c_n = io.c + l * N * H if lstm else NULL
                    self.args[l].ws = &self.ws[0]
                    self.args[l].walk_back = self.walk
                    status = rnc_qforward(&d, &self.args[l], self.n_threads)
                    if status != RNC_OK:
                        break
            self.walk = (self.walk ^ 1) & self.alternates
        finally:
            _release(&io.held)
        _check(status)
        return h_array[L - 1], (h_array, c_array)
