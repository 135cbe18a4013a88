# Extern declarations of csrc/include/rnncore.h (the only header the bindings use).
from libc.stdint cimport int64_t


cdef extern from "rnncore.h" nogil:
    ctypedef enum rnc_status:
        RNC_OK
        RNC_ERR_INVALID_ARG
        RNC_ERR_NO_MEMORY
        RNC_ERR_UNSUPPORTED

    ctypedef enum rnc_cell:
        RNC_CELL_RNN_TANH
        RNC_CELL_RNN_RELU
        RNC_CELL_LSTM
        RNC_CELL_GRU
        RNC_CELL_GRU_RB

    ctypedef struct rnc_dims:
        int64_t T, N, I, H
        rnc_cell cell
        int64_t proj

    ctypedef struct rnc_fwd_args:
        const float *x
        const float *h0
        const float *c0
        const float *w_ih_p
        const float *w_hh_p
        const float *b_ih
        const float *b_hh
        float *y
        int64_t ldy
        float *h_n
        float *c_n
        float *ws
        int batch_first
        int reverse
        float *tape
        const int64_t *lengths
        const float *peephole
        int input_forget
        const float *w_hr_p
        int walk_back
        const float *bias_folded

    ctypedef struct rnc_bwd_args:
        const float *x
        const float *h0
        const float *c0
        const float *w_ih
        const float *w_hh
        const float *y
        int64_t ldy
        const float *tape
        const float *dy
        int64_t lddy
        const float *dh_n
        const float *dc_n
        float *dx
        int64_t lddx
        int dx_accumulate
        float *dh0
        float *dc0
        float *dw_ih
        float *dw_hh
        float *db_ih
        float *db_hh
        float *ws
        int batch_first
        int reverse
        const int64_t *lengths
        const float *peephole
        int input_forget
        float *dpeephole
        const float *w_hr
        float *dw_hr

    const char *RNC_VERSION
    const char *rnc_status_str(rnc_status s) noexcept
    int rnc_cell_gates(rnc_cell cell) noexcept
    size_t rnc_fwd_workspace_floats(const rnc_dims *d, int n_threads) noexcept
    rnc_status rnc_forward(const rnc_dims *d, const rnc_fwd_args *a, int n_threads) noexcept
    int64_t rnc_folded_bias_floats(rnc_cell cell, int64_t H) noexcept
    rnc_status rnc_fold_bias(rnc_cell cell, int64_t H, const float *b_ih, const float *b_hh,
                             float *out) noexcept
    size_t rnc_tape_floats(const rnc_dims *d) noexcept
    rnc_status rnc_forward_step(rnc_cell cell, int64_t L, int64_t N, int64_t I, int64_t H,
                                const rnc_fwd_args *layers, const float *x, const float *h0,
                                const float *c0, float *h, float *c, float *ws,
                                int n_threads) noexcept
    size_t rnc_bwd_workspace_floats(const rnc_dims *d, int n_threads) noexcept
    rnc_status rnc_backward(const rnc_dims *d, const rnc_bwd_args *a, int n_threads) noexcept
    rnc_status rnc_softmax_xent(int64_t M, int64_t V, const float *z, int64_t ldz,
                                const int64_t *target, float *loss, float *dz, int64_t lddz,
                                float scale, int n_threads) noexcept
    rnc_status rnc_scatter_add_rows(int64_t M, int64_t E, const int64_t *index, const float *src,
                                    int64_t ld_src, float *dst, int64_t V, int64_t ld_dst,
                                    int n_threads) noexcept
    rnc_status rnc_softmax(int64_t M, int64_t V, const float *x, int64_t ldx, float *y,
                           int64_t ldy, int log_softmax, int n_threads) noexcept
    int64_t rnc_gemm_workspace_floats(int n_threads) noexcept
    rnc_status rnc_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t a_rs,
                        int64_t a_cs, const float *B, int64_t b_rs, int64_t b_cs, float *C,
                        int64_t ldc, int accumulate, float *scratch, int n_threads) noexcept
    size_t rnc_linear_workspace_floats(int64_t K, int n_threads) noexcept
    rnc_status rnc_linear(int64_t M, int64_t K, int64_t Nout, const float *x, int64_t ldx,
                          const float *w_p, const float *bias, float *y, int64_t ldy, float *ws,
                          int n_threads) noexcept
    size_t rnc_packed_floats(rnc_cell cell, int64_t H, int64_t K) noexcept
    rnc_status rnc_pack_weights(rnc_cell cell, int64_t H, int64_t K, const float *src, float *dst) noexcept
    void rnc_init() noexcept
    const char *rnc_isa_name() noexcept
    const char *rnc_compiled_isas() noexcept
    int rnc_isa_available(const char *name) noexcept
    rnc_status rnc_set_isa(const char *name) noexcept
    ctypedef struct rnc_blocking:
        int64_t l1d, l2, l3
        const char *cache_source
        const char *cache_error
        int vregs, vector_floats, mr, tile_cols
        int64_t kchunk, kc, mc, nc, prefetch
        const char *why
    const rnc_blocking *rnc_get_blocking() noexcept
    rnc_status rnc_set_blocking(int mr, int64_t kchunk, int64_t kc, int64_t mc, int64_t nc,
                                int64_t prefetch) noexcept
    int rnc_gemm_tile_rows(int *out, int cap) noexcept
    int rnc_step_walk_alternates(int64_t weight_bytes) noexcept
    double rnc_probe_peak_gflops(int n_threads, double seconds) noexcept
    double rnc_probe_read_gbps(const float *buf, int64_t n, int n_threads, double seconds) noexcept
    int rnc_has_openmp() noexcept
    int rnc_default_threads() noexcept


# csrc/include/rnncore_int8.h: the int8 inference kernels
from libc.stdint cimport int8_t, uint8_t, int32_t

cdef extern from "rnncore_int8.h" nogil:
    ctypedef struct rnc_qfwd_args:
        const float *x
        const float *h0
        const float *c0
        const uint8_t *w_ih_q
        const uint8_t *w_hh_q
        const uint8_t *w_hr_q
        const float *b_ih
        const float *b_hh
        float *y
        int64_t ldy
        float *h_n
        float *c_n
        void *ws
        int batch_first
        int reverse
        const int64_t *lengths
        const float *peephole
        int input_forget
        int walk_back
        const float *bias_folded

    size_t rnc_qpacked_bytes(int64_t G, int64_t H, int64_t K) noexcept
    rnc_status rnc_qpack_weights(int64_t G, int64_t H, int64_t K, const int8_t *wq,
                                 const float *scale, uint8_t *dst) noexcept
    size_t rnc_qfwd_workspace_bytes(const rnc_dims *d, int n_threads) noexcept
    rnc_status rnc_qforward(const rnc_dims *d, const rnc_qfwd_args *a, int n_threads) noexcept
    size_t rnc_qlinear_workspace_bytes(int64_t M, int64_t K, int n_threads) noexcept
    rnc_status rnc_qlinear(int64_t M, int64_t K, int64_t Nout, const float *x, int64_t ldx,
                           const uint8_t *w_q, const float *bias, float *y, int64_t ldy,
                           int32_t *acc, float *x_scale, void *ws, int n_threads) noexcept
    const char *rnc_qisa_name() noexcept
    int rnc_qisa_act_max() noexcept
    const char *rnc_qisa_candidates() noexcept
    rnc_status rnc_set_qisa(const char *name) noexcept
