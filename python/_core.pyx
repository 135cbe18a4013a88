# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Bindings of the rnncore C library: typed memoryviews in, one C call, status
mapped to an exception, the GIL released around every kernel.

Validation, allocation and backend choice live in rnncore/_api.py; these
functions trust their callers except where C re-checks.
"""
from libc.stdint cimport int64_t

from _crnncore cimport *

CELL_RNN_TANH = RNC_CELL_RNN_TANH
CELL_RNN_RELU = RNC_CELL_RNN_RELU
CELL_LSTM = RNC_CELL_LSTM
CELL_GRU = RNC_CELL_GRU
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


def has_openmp():
    return bool(rnc_has_openmp())


def default_threads():
    return rnc_default_threads()


def fwd_workspace_floats(int cell, int64_t T, int64_t N, int64_t I, int64_t H, int n_threads):
    """Floats of workspace `forward` needs with n_threads, or 0 when the sizes overflow."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell)
    return rnc_fwd_workspace_floats(&d, n_threads)


def packed_floats(int cell, int64_t H, int64_t K):
    """Floats of the packed form of a [G*H, K] weight, or 0 when it overflows."""
    return rnc_packed_floats(<rnc_cell>cell, H, K)


def pack_weights(int cell, int64_t H, const float[:, ::1] w, float[::1] packed):
    """packed <- w ([G*H, K], PyTorch's layout) in the kernels' panel layout."""
    cdef int64_t K = w.shape[1]
    _need(w.shape[0] == rnc_cell_gates(<rnc_cell>cell) * H, "w")
    _need(packed.shape[0] == <Py_ssize_t>rnc_packed_floats(<rnc_cell>cell, H, K) > 0, "packed")
    with nogil:
        status = rnc_pack_weights(<rnc_cell>cell, H, K, &w[0, 0], &packed[0])
    _check(status)


def probe_peak_gflops(int n_threads, double seconds):
    """Sustained FP32 FMA GFLOP/s of the active CPU path on n_threads threads."""
    with nogil:
        r = rnc_probe_peak_gflops(n_threads, seconds)
    _need(r > 0, "seconds")
    return r


def probe_read_gbps(const float[::1] buf, int n_threads, double seconds):
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
    """The active CPU path: 'avx512', 'avx2' or 'generic'."""
    return rnc_isa_name().decode()


def compiled_isas():
    return rnc_compiled_isas().decode().split(",")


def isa_available(str name):
    return bool(rnc_isa_available(name.encode()))


def set_isa(str name):
    """Switch the active CPU path (tests and benchmarks; not during other calls)."""
    _check(rnc_set_isa(name.encode()))


def forward(int cell, int64_t T, int64_t N, int64_t I, int64_t H,
            bint batch_first, bint reverse,
            const float[:, ::1] x,
            const float[:, ::1] h0, const float[:, ::1] c0,
            const float[::1] w_ih_p, const float[::1] w_hh_p,
            const float[::1] b_ih, const float[::1] b_hh,
            float[:, ::1] y, int64_t y_col,
            float[:, ::1] h_n, float[:, ::1] c_n,
            float[::1] ws, int n_threads, float[::1] tape=None):
    """One layer-direction: rnc_forward. x: [T*N, I] rows; y: [T*N, ldy] rows,
    this direction's H columns starting at y_col; h0/c0/h_n/c_n: [N, H] or None;
    tape: tape_floats(...) floats for training, or None."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell)
    cdef int G = rnc_cell_gates(<rnc_cell>cell)
    # Cheap shape re-checks, so that even a direct call cannot read or write
    # out of bounds (rnncore/_api.py has validated already).
    _need(G > 0 and T > 0 and N > 0 and I > 0 and H > 0, "sizes")
    _need(x.shape[0] == T * N and x.shape[1] == I, "x")
    _need(w_ih_p.shape[0] == <Py_ssize_t>rnc_packed_floats(<rnc_cell>cell, H, I), "w_ih_p")
    _need(w_hh_p.shape[0] == <Py_ssize_t>rnc_packed_floats(<rnc_cell>cell, H, H), "w_hh_p")
    _need(y.shape[0] == T * N and 0 <= y_col and y_col + H <= y.shape[1], "y")
    _need(n_threads > 0, "n_threads")
    _need(ws.shape[0] >= <Py_ssize_t>rnc_fwd_workspace_floats(&d, n_threads), "ws")
    _need(tape is None or tape.shape[0] == <Py_ssize_t>rnc_tape_floats(&d) > 0, "tape")
    for name, v in (("h0", h0), ("c0", c0), ("h_n", h_n), ("c_n", c_n)):
        _need(v is None or (v.shape[0] == N and v.shape[1] == H), name)
    for name, v in (("b_ih", b_ih), ("b_hh", b_hh)):
        _need(v is None or v.shape[0] == G * H, name)
    cdef rnc_fwd_args a
    a.x = &x[0, 0]
    a.h0 = &h0[0, 0] if h0 is not None else NULL
    a.c0 = &c0[0, 0] if c0 is not None else NULL
    a.w_ih_p = &w_ih_p[0]
    a.w_hh_p = &w_hh_p[0]
    a.b_ih = &b_ih[0] if b_ih is not None else NULL
    a.b_hh = &b_hh[0] if b_hh is not None else NULL
    a.y = &y[0, y_col]
    a.ldy = y.shape[1]
    a.h_n = &h_n[0, 0] if h_n is not None else NULL
    a.c_n = &c_n[0, 0] if c_n is not None else NULL
    a.ws = &ws[0]
    a.batch_first = batch_first
    a.reverse = reverse
    a.tape = &tape[0] if tape is not None else NULL
    with nogil:
        status = rnc_forward(&d, &a, n_threads)
    _check(status)


def tape_floats(int cell, int64_t T, int64_t N, int64_t I, int64_t H):
    """Floats of the tape of a forward pass for training (0 for RNN cells)."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell)
    return rnc_tape_floats(&d)


def bwd_workspace_floats(int cell, int64_t T, int64_t N, int64_t I, int64_t H, int n_threads):
    """Floats of workspace `backward` needs with n_threads, or 0 when the sizes overflow."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell)
    return rnc_bwd_workspace_floats(&d, n_threads)


def backward(int cell, int64_t T, int64_t N, int64_t I, int64_t H,
             bint batch_first, bint reverse,
             const float[:, ::1] x, const float[:, ::1] h0, const float[:, ::1] c0,
             const float[:, ::1] w_ih, const float[:, ::1] w_hh,
             const float[:, ::1] y, int64_t y_col, const float[::1] tape,
             const float[:, ::1] dy, const float[:, ::1] dh_n, const float[:, ::1] dc_n,
             float[:, ::1] dx, bint dx_accumulate, float[:, ::1] dh0, float[:, ::1] dc0,
             float[:, ::1] dw_ih, float[:, ::1] dw_hh, float[::1] db_ih, float[::1] db_hh,
             float[::1] ws, int n_threads):
    """One layer-direction: rnc_backward after forward(..., tape). y and dy:
    [T*N, ldy] rows, this direction's H columns from y_col; dx: [T*N, I] or
    None; states [N, H] or None; parameter gradients are added to."""
    cdef rnc_dims d = rnc_dims(T, N, I, H, <rnc_cell>cell)
    cdef int G = rnc_cell_gates(<rnc_cell>cell)
    _need(G > 0 and T > 0 and N > 0 and I > 0 and H > 0, "sizes")
    _need(x.shape[0] == T * N and x.shape[1] == I, "x")
    _need(w_ih.shape[0] == G * H and w_ih.shape[1] == I, "w_ih")
    _need(w_hh.shape[0] == G * H and w_hh.shape[1] == H, "w_hh")
    _need(dw_ih.shape[0] == G * H and dw_ih.shape[1] == I, "dw_ih")
    _need(dw_hh.shape[0] == G * H and dw_hh.shape[1] == H, "dw_hh")
    _need(y.shape[0] == T * N and 0 <= y_col and y_col + H <= y.shape[1], "y")
    _need(dy is None or (dy.shape[0] == T * N and y_col + H <= dy.shape[1]), "dy")
    _need(dx is None or (dx.shape[0] == T * N and dx.shape[1] == I), "dx")
    _need((tape is None and rnc_tape_floats(&d) == 0)
          or (tape is not None and tape.shape[0] == <Py_ssize_t>rnc_tape_floats(&d) > 0), "tape")
    _need(n_threads > 0, "n_threads")
    _need(ws.shape[0] >= <Py_ssize_t>rnc_bwd_workspace_floats(&d, n_threads) > 0, "ws")
    for name, v in (("h0", h0), ("c0", c0), ("dh_n", dh_n), ("dc_n", dc_n), ("dh0", dh0), ("dc0", dc0)):
        _need(v is None or (v.shape[0] == N and v.shape[1] == H), name)
    for name, v in (("db_ih", db_ih), ("db_hh", db_hh)):
        _need(v is None or v.shape[0] == G * H, name)
    cdef rnc_bwd_args a
    a.x = &x[0, 0]
    a.h0 = &h0[0, 0] if h0 is not None else NULL
    a.c0 = &c0[0, 0] if c0 is not None else NULL
    a.w_ih = &w_ih[0, 0]
    a.w_hh = &w_hh[0, 0]
    a.y = &y[0, y_col]
    a.ldy = y.shape[1]
    a.tape = &tape[0] if tape is not None else NULL
    a.dy = &dy[0, y_col] if dy is not None else NULL
    a.lddy = dy.shape[1] if dy is not None else 0
    a.dh_n = &dh_n[0, 0] if dh_n is not None else NULL
    a.dc_n = &dc_n[0, 0] if dc_n is not None else NULL
    a.dx = &dx[0, 0] if dx is not None else NULL
    a.lddx = I
    a.dx_accumulate = dx_accumulate
    a.dh0 = &dh0[0, 0] if dh0 is not None else NULL
    a.dc0 = &dc0[0, 0] if dc0 is not None else NULL
    a.dw_ih = &dw_ih[0, 0]
    a.dw_hh = &dw_hh[0, 0]
    a.db_ih = &db_ih[0] if db_ih is not None else NULL
    a.db_hh = &db_hh[0] if db_hh is not None else NULL
    a.ws = &ws[0]
    a.batch_first = batch_first
    a.reverse = reverse
    with nogil:
        status = rnc_backward(&d, &a, n_threads)
    _check(status)
