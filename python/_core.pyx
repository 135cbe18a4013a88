# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Bindings of the rnncore C library: typed memoryviews in, one C call, status
mapped to an exception, the GIL released around every kernel.

Validation, allocation and backend choice live in rnncore/_api.py; these
functions trust their callers except where C re-checks.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t

import numpy as np

from _crnncore cimport *

CELL_RNN_TANH = RNC_CELL_RNN_TANH
CELL_RNN_RELU = RNC_CELL_RNN_RELU
CELL_LSTM = RNC_CELL_LSTM
CELL_GRU = RNC_CELL_GRU
CELL_GRU_RB = RNC_CELL_GRU_RB
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
            float[::1] ws, int n_threads, float[::1] tape=None,
            const int64_t[::1] lengths=None, const float[::1] peephole=None,
            bint input_forget=False):
    """One layer-direction: rnc_forward. x: [T*N, I] rows; y: [T*N, ldy] rows,
    this direction's H columns starting at y_col; h0/c0/h_n/c_n: [N, H] or None;
    tape: tape_floats(...) floats for training, or None; lengths: [N]
    non-increasing steps per sequence (time-major, forward only), or None;
    peephole [3H] and input_forget: the LSTM variants of rnncore.h."""
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
    _need(lengths is None or lengths.shape[0] == N, "lengths")
    a.lengths = &lengths[0] if lengths is not None else NULL
    _need(peephole is None or peephole.shape[0] == 3 * H, "peephole")
    a.peephole = &peephole[0] if peephole is not None else NULL
    a.input_forget = input_forget
    with nogil:
        status = rnc_forward(&d, &a, n_threads)
    _check(status)


def softmax_xent(const float[:, ::1] z, const int64_t[::1] target, float[::1] loss,
                 float[:, ::1] dz, float scale, int n_threads):
    """rnc_softmax_xent: loss[r] for each row of z [M, V]; dz [M, V] or None
    (it may be z's own buffer)."""
    cdef int64_t M = z.shape[0], V = z.shape[1]
    _need(M > 0 and V > 0, "z")
    _need(target.shape[0] == M, "target")
    _need(loss.shape[0] == M, "loss")
    _need(dz is None or (dz.shape[0] == M and dz.shape[1] == V), "dz")
    with nogil:
        status = rnc_softmax_xent(M, V, &z[0, 0], V, &target[0], &loss[0],
                                  &dz[0, 0] if dz is not None else NULL, V, scale, n_threads)
    _check(status)


def gemm(const float[:, :] a, const float[:, :] b, float[:, ::1] c, bint accumulate,
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


def gemm_workspace_floats(int n_threads):
    return rnc_gemm_workspace_floats(n_threads)


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
             float[::1] ws, int n_threads, const int64_t[::1] lengths=None,
             const float[::1] peephole=None, bint input_forget=False,
             float[::1] dpeephole=None):
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
    _need(lengths is None or lengths.shape[0] == N, "lengths")
    a.lengths = &lengths[0] if lengths is not None else NULL
    _need(peephole is None or peephole.shape[0] == 3 * H, "peephole")
    _need(dpeephole is None or dpeephole.shape[0] == 3 * H, "dpeephole")
    a.peephole = &peephole[0] if peephole is not None else NULL
    a.input_forget = input_forget
    a.dpeephole = &dpeephole[0] if dpeephole is not None else NULL
    with nogil:
        status = rnc_backward(&d, &a, n_threads)
    _check(status)


cdef class StepPlan:
    """One time step of stacked unidirectional layers (rnncore's ``step()``):
    the packed weights, the workspace and the sizes, fixed at construction, so
    that a step converts only its own arrays and makes one C call per layer
    with the GIL released."""
    cdef int cell, L, n_threads
    cdef int64_t N, I, H
    cdef list params      # keeps the weight arrays alive
    cdef object ws_array
    cdef tuple state_shape  # (L, N, H), built once: a step allocates only its results
    cdef object f32
    cdef float[::1] ws
    cdef rnc_fwd_args *args

    def __cinit__(self):
        self.args = NULL

    def __init__(self, int cell, int64_t N, int64_t I, int64_t H, list layers, int n_threads):
        """layers: per layer (w_ih_p, w_hh_p, b_ih or None, b_hh or None,
        peephole or None, input_forget)."""
        cdef int G = rnc_cell_gates(<rnc_cell>cell)
        cdef rnc_dims d
        cdef size_t floats = 0, f
        cdef const float[::1] w
        _need(G > 0 and N > 0 and I > 0 and H > 0 and n_threads > 0 and len(layers) > 0, "sizes")
        self.cell, self.N, self.I, self.H = cell, N, I, H
        self.L, self.n_threads = len(layers), n_threads
        self.params = []
        for l, (w_ih_p, w_hh_p, b_ih, b_hh, peep, coupled) in enumerate(layers):
            d = rnc_dims(1, N, I if l == 0 else H, H, <rnc_cell>cell)
            f = rnc_fwd_workspace_floats(&d, n_threads)
            _need(f > 0, "sizes")
            floats = f if f > floats else floats
            w = w_ih_p
            _need(w.shape[0] == <Py_ssize_t>rnc_packed_floats(<rnc_cell>cell, H, d.I), "w_ih_p")
            w = w_hh_p
            _need(w.shape[0] == <Py_ssize_t>rnc_packed_floats(<rnc_cell>cell, H, H), "w_hh_p")
            for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
                if b is not None:
                    w = b
                    _need(w.shape[0] == G * H, name)
            if peep is not None:
                w = peep
                _need(w.shape[0] == 3 * H, "peephole")
            self.params.append((w_ih_p, w_hh_p, b_ih, b_hh, peep, bool(coupled)))
        self.state_shape = (self.L, N, H)
        self.f32 = np.float32
        self.ws_array = np.empty(floats, dtype=np.float32)
        self.ws = self.ws_array
        self.args = <rnc_fwd_args *>PyMem_Malloc(self.L * sizeof(rnc_fwd_args))
        if self.args == NULL:
            raise MemoryError()
        cdef const float[::1] v
        for l in range(self.L):
            w_ih_p, w_hh_p, b_ih, b_hh, peep, coupled = self.params[l]
            v = w_ih_p
            self.args[l].w_ih_p = &v[0]
            v = w_hh_p
            self.args[l].w_hh_p = &v[0]
            self.args[l].b_ih = NULL
            self.args[l].b_hh = NULL
            if b_ih is not None:
                v = b_ih
                self.args[l].b_ih = &v[0]
            if b_hh is not None:
                v = b_hh
                self.args[l].b_hh = &v[0]
            self.args[l].ldy = H
            self.args[l].ws = &self.ws[0]
            self.args[l].batch_first = 0
            self.args[l].reverse = 0
            self.args[l].tape = NULL
            self.args[l].lengths = NULL
            self.args[l].peephole = NULL
            self.args[l].input_forget = coupled
            if peep is not None:
                v = peep
                self.args[l].peephole = &v[0]
            self.args[l].c_n = NULL

    def __dealloc__(self):
        PyMem_Free(self.args)

    def step(self, const float[:, ::1] x, const float[:, :, ::1] h0, const float[:, :, ::1] c0):
        """(y, h, c) after one step from states h0, c0 ([L, N, H] or None
        for zeros) on x [N, I]: h, c new [L, N, H] arrays (c None unless
        LSTM), y = h[L - 1]. Layer l > 0 reads h[l - 1]."""
        cdef int l
        cdef int64_t N = self.N, H = self.H
        cdef bint lstm = self.cell == RNC_CELL_LSTM
        cdef rnc_dims d
        cdef rnc_status status = RNC_OK
        _need(x.shape[0] == N and x.shape[1] == self.I, "x")
        _need(h0 is None or (h0.shape[0] == self.L and h0.shape[1] == N and h0.shape[2] == H), "h0")
        _need(c0 is None or (lstm and c0.shape[0] == self.L and c0.shape[1] == N
                             and c0.shape[2] == H), "c0")
        h_array = np.empty(self.state_shape, self.f32)
        c_array = np.empty(self.state_shape, self.f32) if lstm else None
        cdef float[:, :, ::1] h_out = h_array
        cdef float[:, :, ::1] c_out = c_array
        for l in range(self.L):
            self.args[l].x = &x[0, 0] if l == 0 else &h_out[l - 1, 0, 0]
            self.args[l].h0 = &h0[l, 0, 0] if h0 is not None else NULL
            self.args[l].c0 = &c0[l, 0, 0] if c0 is not None else NULL
            self.args[l].y = &h_out[l, 0, 0]  # one step: the output is the new state
            self.args[l].h_n = NULL
            self.args[l].c_n = &c_out[l, 0, 0] if lstm else NULL
        with nogil:
            for l in range(self.L):
                d = rnc_dims(1, N, self.I if l == 0 else H, H, <rnc_cell>self.cell)
                status = rnc_forward(&d, &self.args[l], self.n_threads)
                if status != RNC_OK:
                    break
        _check(status)
        return h_array[self.L - 1], h_array, c_array
