/*
 * test_forward.c: the C library on its own, from plain C (no Python).
 * Builds with the sources of csrc/src (tests/engine/test_c_library.py and
 * .ci/arm64 do it):
 *   cc -std=c99 -Icsrc/include csrc/tests/test_forward.c csrc/src/ *.c \
 *      csrc/src/isa/kernels_generic.c -lm
 * (plus csrc/src/isa/kernels_<isa>.c, built with its ISA's flags, and
 * -DRNC_HAVE_<ISA> per SIMD path).
 *
 * Every cell (RNN tanh and relu; LSTM plain, with peepholes, with coupled
 * gates, both, with a projection; GRU reset-after and reset-before), forward
 * and backward (rnc_backward), on every CPU path this build and CPU have
 * (rnc_set_isa; RNNCORE_DISABLE_ISA removes paths), at 1 and 2 threads, for
 * odd sizes (H = 1, 7, 17, 33, 65 / 129), time-major and batch-first,
 * forward and reverse in time, and with variable lengths. The expected
 * values come from a scalar double-precision loop written here (ref_forward,
 * nothing of the library's): forward outputs directly, gradients as central
 * differences of that loop's loss
 *   L = sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n)
 * in double (step 1e-6: truncation ~1e-12, rounding ~1e-9), per entry on a
 * spread of entries and along one random +-1 direction over all entries of
 * each gradient. The 1- and 2-thread results must be bit-identical (the
 * library's promise), and y's row padding untouched. Bad arguments are
 * rejected.
 *
 * int8 (rnc_qlinear) on the int8 path of every fp32 path: its int32
 * products equal an exact integer loop over the scheme's quantized rows
 * (written here), and its outputs equal the generic path's bit for bit.
 *
 * Prints "int8 paths: ...", then "N CPU path(s), M case(s), K value(s)
 * compared, F failure(s)" and exits non-zero on any failure. With the
 * argument "int8", runs the int8 checks alone.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnncore.h"
#include "rnncore_int8.h"
#include "../src/kernels.h" /* rnc_step_threads: which cases really run 2 threads */
#include "../src/qkernels.h" /* RNC_Q_TINY */

static int failures = 0;
static long cases = 0, compared = 0, two_thread_cases = 0;
static double worst_fwd = 0, worst_bwd = 0; /* largest error / tolerance seen */
#define CHECK(cond, ...) do { if (!(cond)) { failures++; if (failures <= 30) { \
    printf("FAIL: " __VA_ARGS__); printf("\n"); } } } while (0)

/* Tolerances. Forward: float32 against double, |y - ref| <= FWD_ATOL +
 * FWD_RTOL |ref| (the project's default). Backward: float32 BPTT sums over
 * T*N rows and G*H units, |g - fd| <= BWD_TOL (1 + |fd|). */
#define FWD_ATOL 2e-6
#define FWD_RTOL 2e-5
#define BWD_TOL 1e-5
#define FD_STEP 1e-6
#define FD_PROBES 16 /* entries probed per gradient when it has more than 2x that */

/* ------------------------------------------------------------ cases */

typedef enum { VAR_PLAIN, VAR_PEEP, VAR_COUPLED, VAR_PEEP_COUPLED, VAR_PROJ, VAR_PROJ_PEEP } variant;

typedef struct {
    rnc_cell cell;
    variant var;
    int64_t T, N, I, H, R; /* R: LSTM projection width, 0 for none */
    int batch_first, reverse, lengths;
} config;

/* The parameters, in one vector theta (double for the reference, float for
 * the library), groups at offsets; gradients use the same layout. */
enum { P_X, P_H0, P_C0, P_WIH, P_WHH, P_BIH, P_BHH, P_PEEP, P_WHR, NP };
static const char *PNAME[NP] = {"dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh",
                                "dpeephole", "dw_hr"};

typedef struct {
    int64_t off[NP], len[NP], total;
} layout;

static int64_t width(const config *c) { return c->R > 0 ? c->R : c->H; }
static int has_peep(const config *c) {
    return c->var == VAR_PEEP || c->var == VAR_PEEP_COUPLED || c->var == VAR_PROJ_PEEP;
}
static int coupled(const config *c) { return c->var == VAR_COUPLED || c->var == VAR_PEEP_COUPLED; }

static layout make_layout(const config *c) {
    const int64_t G = rnc_cell_gates(c->cell), R = width(c), H = c->H;
    const int lstm = c->cell == RNC_CELL_LSTM;
    layout L;
    L.len[P_X] = c->T * c->N * c->I;
    L.len[P_H0] = c->N * R;
    L.len[P_C0] = lstm ? c->N * H : 0;
    L.len[P_WIH] = G * H * c->I;
    L.len[P_WHH] = G * H * R;
    L.len[P_BIH] = L.len[P_BHH] = G * H;
    L.len[P_PEEP] = has_peep(c) ? 3 * H : 0;
    L.len[P_WHR] = c->R > 0 ? c->R * H : 0;
    L.total = 0;
    for (int p = 0; p < NP; p++) {
        L.off[p] = L.total;
        L.total += L.len[p];
    }
    return L;
}

static int64_t row_of(const config *c, int64_t t, int64_t n) {
    return c->batch_first ? n * c->T + t : t * c->N + n;
}

/* non-increasing, the first below T when T > 1 (so steps past every length exist) */
static int64_t length_of(const config *c, int64_t n) {
    if (!c->lengths) return c->T;
    const int64_t l = c->T - 1 - n;
    return l < 1 ? 1 : l;
}

static void describe(const config *c, char *buf, size_t size) {
    static const char *cells[] = {"rnn_tanh", "rnn_relu", "lstm", "gru", "gru_rb"};
    static const char *vars[] = {"", "+peephole", "+coupled", "+peephole+coupled", "+proj", "+proj+peephole"};
    snprintf(buf, size, "%s%s T=%lld N=%lld I=%lld H=%lld R=%lld%s%s%s", cells[c->cell], vars[c->var],
             (long long)c->T, (long long)c->N, (long long)c->I, (long long)c->H, (long long)c->R,
             c->batch_first ? " batch_first" : "", c->reverse ? " reverse" : "",
             c->lengths ? " lengths" : "");
}

/* ------------------------------------------------- double reference */

static double sig(double v) { return 1.0 / (1.0 + exp(-v)); }

/*
 * One layer over the sequence, in double, straight from the equations of
 * rnncore.h (PyTorch's gate orders i,f,g,o and r,z,n; ONNX's peepholes and
 * coupled gates; PyTorch's proj_size). y [rows, R] dense, h_n [N, R],
 * c_n [N, H] (LSTM). Rows past a sequence's length stay 0 and its state
 * stops at its last step.
 */
static void ref_forward(const config *c, const layout *L, const double *th, double *y,
                        double *h_n, double *c_n) {
    const int64_t G = rnc_cell_gates(c->cell), T = c->T, N = c->N, I = c->I, H = c->H, R = width(c);
    const double *x = th + L->off[P_X], *w_ih = th + L->off[P_WIH], *w_hh = th + L->off[P_WHH];
    const double *b_ih = th + L->off[P_BIH], *b_hh = th + L->off[P_BHH];
    const double *pp = th + L->off[P_PEEP], *w_hr = th + L->off[P_WHR];
    const int peep = has_peep(c), coup = coupled(c);
    double *gi = malloc((size_t)(G * H) * sizeof(double)), *gh = malloc((size_t)(G * H) * sizeof(double));
    double *m = malloc((size_t)H * sizeof(double)), *hnew = malloc((size_t)R * sizeof(double));
    memcpy(h_n, th + L->off[P_H0], (size_t)(N * R) * sizeof(double));
    if (c->cell == RNC_CELL_LSTM) memcpy(c_n, th + L->off[P_C0], (size_t)(N * H) * sizeof(double));
    memset(y, 0, (size_t)(T * N * R) * sizeof(double));
    for (int64_t step = 0; step < T; step++) {
        const int64_t t = c->reverse ? T - 1 - step : step;
        for (int64_t n = 0; n < N; n++) {
            if (step >= length_of(c, n)) continue;
            const int64_t row = row_of(c, t, n);
            const double *xr = x + row * I;
            double *h = h_n + n * R, *cs = c_n + n * H;
            for (int64_t j = 0; j < G * H; j++) {
                gi[j] = b_ih[j];
                gh[j] = b_hh[j];
                for (int64_t k = 0; k < I; k++) gi[j] += w_ih[j * I + k] * xr[k];
                if (c->cell == RNC_CELL_GRU_RB && j >= 2 * H) continue; /* W_hn (r * h) below */
                for (int64_t k = 0; k < R; k++) gh[j] += w_hh[j * R + k] * h[k];
            }
            switch (c->cell) {
            case RNC_CELL_RNN_TANH:
            case RNC_CELL_RNN_RELU:
                for (int64_t u = 0; u < H; u++) {
                    const double v = gi[u] + gh[u];
                    hnew[u] = c->cell == RNC_CELL_RNN_TANH ? tanh(v) : (v > 0 ? v : 0);
                }
                break;
            case RNC_CELL_LSTM:
                for (int64_t u = 0; u < H; u++) {
                    const double cp = cs[u];
                    const double i = sig(gi[u] + gh[u] + (peep ? pp[u] * cp : 0));
                    const double f = coup ? 1 - i : sig(gi[H + u] + gh[H + u] + (peep ? pp[H + u] * cp : 0));
                    const double g = tanh(gi[2 * H + u] + gh[2 * H + u]);
                    const double ct = f * cp + i * g;
                    const double o = sig(gi[3 * H + u] + gh[3 * H + u] + (peep ? pp[2 * H + u] * ct : 0));
                    cs[u] = ct;
                    m[u] = o * tanh(ct);
                }
                for (int64_t v = 0; v < R; v++) { /* h = W_hr m, or m */
                    if (c->R == 0) { hnew[v] = m[v]; continue; }
                    hnew[v] = 0;
                    for (int64_t u = 0; u < H; u++) hnew[v] += w_hr[v * H + u] * m[u];
                }
                break;
            case RNC_CELL_GRU:
                for (int64_t u = 0; u < H; u++) {
                    const double r = sig(gi[u] + gh[u]), z = sig(gi[H + u] + gh[H + u]);
                    const double nn = tanh(gi[2 * H + u] + r * gh[2 * H + u]);
                    hnew[u] = (1 - z) * nn + z * h[u];
                }
                break;
            case RNC_CELL_GRU_RB:
                for (int64_t u = 0; u < H; u++) m[u] = sig(gi[u] + gh[u]) * h[u]; /* r * h */
                for (int64_t u = 0; u < H; u++) {
                    double a = gh[2 * H + u];
                    for (int64_t k = 0; k < H; k++) a += w_hh[(2 * H + u) * H + k] * m[k];
                    const double z = sig(gi[H + u] + gh[H + u]);
                    const double nn = tanh(gi[2 * H + u] + a);
                    hnew[u] = (1 - z) * nn + z * h[u];
                }
                break;
            }
            memcpy(h, hnew, (size_t)R * sizeof(double));
            memcpy(y + row * R, hnew, (size_t)R * sizeof(double));
        }
    }
    free(gi);
    free(gh);
    free(m);
    free(hnew);
}

typedef struct {
    const float *dy, *dh_n, *dc_n; /* the loss's weights: [rows, R], [N, R], [N, H] */
} loss_weights;

static double ref_loss(const config *c, const layout *L, const double *th, const loss_weights *w) {
    const int64_t R = width(c), rows = c->T * c->N;
    double *y = malloc((size_t)(rows * R) * sizeof(double));
    double *hn = malloc((size_t)(c->N * R) * sizeof(double)), *cn = malloc((size_t)(c->N * c->H) * sizeof(double));
    ref_forward(c, L, th, y, hn, cn);
    double loss = 0;
    for (int64_t i = 0; i < rows * R; i++) loss += y[i] * w->dy[i];
    for (int64_t i = 0; i < c->N * R; i++) loss += hn[i] * w->dh_n[i];
    for (int64_t i = 0; i < c->N * c->H && c->cell == RNC_CELL_LSTM; i++) loss += cn[i] * w->dc_n[i];
    free(y);
    free(hn);
    free(cn);
    return loss;
}

/* dL/dtheta_j by central differences; theta restored */
static double fd_entry(const config *c, const layout *L, double *th, const loss_weights *w, int64_t j) {
    const double saved = th[j];
    th[j] = saved + FD_STEP;
    const double up = ref_loss(c, L, th, w);
    th[j] = saved - FD_STEP;
    const double down = ref_loss(c, L, th, w);
    th[j] = saved;
    return (up - down) / (2 * FD_STEP);
}

/* the derivative of L along v over group p's entries */
static double fd_direction(const config *c, const layout *L, double *th, const loss_weights *w,
                           int p, const signed char *v) {
    double *moved = malloc((size_t)L->total * sizeof(double));
    memcpy(moved, th, (size_t)L->total * sizeof(double));
    for (int64_t j = 0; j < L->len[p]; j++) moved[L->off[p] + j] += FD_STEP * v[L->off[p] + j];
    const double up = ref_loss(c, L, moved, w);
    for (int64_t j = 0; j < L->len[p]; j++) moved[L->off[p] + j] = th[L->off[p] + j] - FD_STEP * v[L->off[p] + j];
    const double down = ref_loss(c, L, moved, w);
    free(moved);
    return (up - down) / (2 * FD_STEP);
}

/* entries of group p probed one by one: all, or FD_PROBES spread from the
 * first to the last */
static int64_t probe_count(int64_t len) { return len <= 2 * FD_PROBES ? len : FD_PROBES; }
static int64_t probe_index(int64_t len, int64_t k) {
    return len <= 2 * FD_PROBES ? k : k * (len - 1) / (FD_PROBES - 1);
}

/* -------------------------------------------------------- library run */

typedef struct {
    float *y;     /* rows of ldy floats */
    int64_t ldy;
    float *h_n, *c_n;
    float *grad;  /* theta's layout */
    int team;     /* threads rnc_step_threads gives this call */
} lib_out;

static float rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

#define SENTINEL 12345.0f

/* Forward (with a tape when the cell has one) and backward on the active
 * path with n_threads threads. Returns 0, or -1 when a call failed. */
static int run_library(const config *c, const layout *L, const float *thf, const loss_weights *w,
                       int n_threads, lib_out *o) {
    const int64_t H = c->H, R = width(c), rows = c->T * c->N, I = c->I;
    const rnc_cell cell = c->cell;
    const rnc_dims d = {c->T, c->N, I, H, cell, c->R};
    int64_t *lens = malloc((size_t)c->N * sizeof(int64_t));
    for (int64_t n = 0; n < c->N; n++) lens[n] = length_of(c, n);
    float *w_ih_p = malloc(rnc_packed_floats(cell, H, I) * sizeof(float));
    float *w_hh_p = malloc(rnc_packed_floats(cell, H, R) * sizeof(float));
    float *w_hr_p = c->R ? malloc(rnc_packed_floats(RNC_CELL_RNN_TANH, R, H) * sizeof(float)) : NULL;
    CHECK(rnc_pack_weights(cell, H, I, thf + L->off[P_WIH], w_ih_p) == RNC_OK, "pack w_ih");
    CHECK(rnc_pack_weights(cell, H, R, thf + L->off[P_WHH], w_hh_p) == RNC_OK, "pack w_hh");
    if (c->R) CHECK(rnc_pack_weights(RNC_CELL_RNN_TANH, R, H, thf + L->off[P_WHR], w_hr_p) == RNC_OK, "pack w_hr");
    const size_t tape_n = rnc_tape_floats(&d);
    float *tape = tape_n ? malloc(tape_n * sizeof(float)) : NULL;
    float *fws = malloc(rnc_fwd_workspace_floats(&d, n_threads) * sizeof(float));
    float *bws = malloc(rnc_bwd_workspace_floats(&d, n_threads) * sizeof(float));
    for (int64_t i = 0; i < rows * o->ldy; i++) o->y[i] = SENTINEL;
    memset(o->grad, 0, (size_t)L->total * sizeof(float));
    const int lstm = cell == RNC_CELL_LSTM;
#define GROUP(p) (L->len[p] ? thf + L->off[p] : NULL)
#define GRAD(p) (L->len[p] ? o->grad + L->off[p] : NULL)
    const rnc_fwd_args a = {thf + L->off[P_X], GROUP(P_H0), GROUP(P_C0), w_ih_p, w_hh_p,
                            GROUP(P_BIH), GROUP(P_BHH), o->y, o->ldy, o->h_n, lstm ? o->c_n : NULL,
                            fws, c->batch_first, c->reverse, tape, c->lengths ? lens : NULL,
                            GROUP(P_PEEP), coupled(c), w_hr_p, 0, NULL};
    int ok = rnc_forward(&d, &a, n_threads) == RNC_OK;
    if (ok) { /* the weights' walk and biases folded by the caller change no
               * result (rnncore.h, walk_back and bias_folded) */
        float *y_back = malloc((size_t)(rows * o->ldy) * sizeof(float));
        for (int64_t i = 0; i < rows * o->ldy; i++) y_back[i] = SENTINEL;
        const size_t ws_n = rnc_fwd_workspace_floats(&d, n_threads);
        float *ws_back = malloc(ws_n * sizeof(float)); /* nothing left from the first run */
        for (size_t i = 0; i < ws_n; i++) ws_back[i] = SENTINEL;
        rnc_fwd_args back = a;
        back.y = y_back;
        back.ws = ws_back;
        back.h_n = back.c_n = NULL;
        back.tape = NULL;
        back.walk_back = 1;
        float *folded = malloc((size_t)rnc_folded_bias_floats(cell, H) * sizeof(float));
        CHECK(rnc_fold_bias(cell, H, a.b_ih, a.b_hh, folded) == RNC_OK, "rnc_fold_bias");
        back.bias_folded = folded;
        back.b_ih = back.b_hh = NULL; /* unread */
        CHECK(rnc_forward(&d, &back, n_threads) == RNC_OK, "forward walking back");
        CHECK(memcmp(y_back, o->y, (size_t)(rows * o->ldy) * sizeof(float)) == 0,
              "walk_back = 1 with folded biases changed y (%d thread(s))", n_threads);
        free(y_back);
        free(ws_back);
        free(folded);
    }
    const rnc_bwd_args b = {thf + L->off[P_X], GROUP(P_H0), GROUP(P_C0), thf + L->off[P_WIH],
                            thf + L->off[P_WHH], o->y, o->ldy, tape, w->dy, R, w->dh_n,
                            lstm ? w->dc_n : NULL, GRAD(P_X), I, 0, GRAD(P_H0), GRAD(P_C0),
                            GRAD(P_WIH), GRAD(P_WHH), GRAD(P_BIH), GRAD(P_BHH), bws,
                            c->batch_first, c->reverse, c->lengths ? lens : NULL, GROUP(P_PEEP),
                            coupled(c), GRAD(P_PEEP), GROUP(P_WHR), GRAD(P_WHR)};
    ok = ok && rnc_backward(&d, &b, n_threads) == RNC_OK;
    o->team = rnc_step_threads(&d, rnc_cell_gates(cell), n_threads);
    if (ok && tape) { /* backward needs its tape */
        rnc_bwd_args bad = b;
        bad.tape = NULL;
        CHECK(rnc_backward(&d, &bad, n_threads) == RNC_ERR_INVALID_ARG, "backward without its tape");
    }
#undef GROUP
#undef GRAD
    free(lens);
    free(w_ih_p);
    free(w_hh_p);
    free(w_hr_p);
    free(tape);
    free(fws);
    free(bws);
    return ok ? 0 : -1;
}

/* --------------------------------------------------------------- check */

/* The expected values of one config, computed once for every path. */
typedef struct {
    double *y, *h_n, *c_n; /* ref_forward */
    double *fd;            /* theta's layout; probed entries only */
    double dir[NP];        /* directional derivative per group */
    signed char *v;        /* the directions */
} expected;

static void check_close(double got, double want, double atol, double rtol, double *worst,
                        const char *what, const char *desc, const char *isa, int nt, int64_t j) {
    const double err = fabs(got - want), tol = atol + rtol * fabs(want);
    if (err / tol > *worst) *worst = err / tol;
    compared++;
    CHECK(err <= tol, "%s [%s, %d thread(s)] %s[%lld]: got %.8g, expected %.8g", desc, isa, nt,
          what, (long long)j, got, want);
}

static void check_against(const config *c, const layout *L, const expected *e, const lib_out *o,
                          const char *desc, const char *isa, int nt) {
    const int64_t R = width(c), rows = c->T * c->N;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t v = 0; v < R; v++)
            check_close(o->y[r * o->ldy + v], e->y[r * R + v], FWD_ATOL, FWD_RTOL, &worst_fwd, "y", desc,
                        isa, nt, r * R + v);
        for (int64_t v = R; v < o->ldy; v++)
            CHECK(o->y[r * o->ldy + v] == SENTINEL, "%s [%s]: y's row padding written", desc, isa);
    }
    for (int64_t i = 0; i < c->N * R; i++)
        check_close(o->h_n[i], e->h_n[i], FWD_ATOL, FWD_RTOL, &worst_fwd, "h_n", desc, isa, nt, i);
    for (int64_t i = 0; i < c->N * c->H && c->cell == RNC_CELL_LSTM; i++)
        check_close(o->c_n[i], e->c_n[i], FWD_ATOL, FWD_RTOL, &worst_fwd, "c_n", desc, isa, nt, i);
    for (int p = 0; p < NP; p++) {
        const int64_t len = L->len[p];
        if (len == 0) continue;
        const float *g = o->grad + L->off[p];
        for (int64_t k = 0; k < probe_count(len); k++) {
            const int64_t j = probe_index(len, k);
            check_close(g[j], e->fd[L->off[p] + j], BWD_TOL, BWD_TOL, &worst_bwd, PNAME[p], desc, isa, nt, j);
        }
        double along = 0, scale = 0;
        for (int64_t j = 0; j < len; j++) {
            along += (double)g[j] * e->v[L->off[p] + j];
            scale += fabs(g[j]);
        }
        const double err = fabs(along - e->dir[p]), tol = BWD_TOL * (1 + scale);
        if (err / tol > worst_bwd) worst_bwd = err / tol;
        compared++;
        CHECK(err <= tol, "%s [%s, %d thread(s)] %s along a random direction: %.8g, expected %.8g",
              desc, isa, nt, PNAME[p], along, e->dir[p]);
    }
}

static void run_config(const config *c, unsigned seed) {
    char desc[160];
    describe(c, desc, sizeof desc);
    const layout L = make_layout(c);
    const int64_t R = width(c), rows = c->T * c->N;
    /* inputs U(-1, 1); weights U(-1, 1) / sqrt(fan-in); states, biases,
     * peepholes smaller; every value a float, the same in both thetas */
    double *th = malloc((size_t)L.total * sizeof(double));
    float *thf = malloc((size_t)L.total * sizeof(float));
    for (int p = 0; p < NP; p++) {
        const double fan = p == P_WIH ? (double)c->I : p == P_WHH ? (double)R : p == P_WHR ? (double)c->H : 1;
        const float scale = p == P_X ? 1.0f : p == P_H0 || p == P_C0 || p == P_PEEP ? 0.5f
                          : p == P_BIH || p == P_BHH ? 0.1f : (float)(1.0 / sqrt(fan));
        for (int64_t j = 0; j < L.len[p]; j++) thf[L.off[p] + j] = scale * rnd(&seed);
    }
    for (int64_t j = 0; j < L.total; j++) th[j] = thf[j];
    float *dy = malloc((size_t)(rows * R) * sizeof(float));
    float *dh_n = malloc((size_t)(c->N * R) * sizeof(float)), *dc_n = malloc((size_t)(c->N * c->H) * sizeof(float));
    for (int64_t i = 0; i < rows * R; i++) dy[i] = rnd(&seed);
    for (int64_t i = 0; i < c->N * R; i++) dh_n[i] = rnd(&seed);
    for (int64_t i = 0; i < c->N * c->H; i++) dc_n[i] = rnd(&seed);
    const loss_weights w = {dy, dh_n, dc_n};

    expected e;
    e.y = malloc((size_t)(rows * R) * sizeof(double));
    e.h_n = malloc((size_t)(c->N * R) * sizeof(double));
    e.c_n = malloc((size_t)(c->N * c->H) * sizeof(double));
    e.fd = calloc((size_t)L.total, sizeof(double));
    e.v = malloc((size_t)L.total);
    ref_forward(c, &L, th, e.y, e.h_n, e.c_n);
    for (int64_t j = 0; j < L.total; j++) e.v[j] = rnd(&seed) < 0 ? -1 : 1;
    for (int p = 0; p < NP; p++) {
        if (L.len[p] == 0) continue;
        for (int64_t k = 0; k < probe_count(L.len[p]); k++) {
            const int64_t j = L.off[p] + probe_index(L.len[p], k);
            e.fd[j] = fd_entry(c, &L, th, &w, j);
        }
        e.dir[p] = fd_direction(c, &L, th, &w, p, e.v);
    }

    const int64_t ldy = R + (c->batch_first ? 3 : 0); /* a row stride > R on some cases */
    lib_out out[2];
    for (int k = 0; k < 2; k++) {
        out[k].ldy = ldy;
        out[k].y = malloc((size_t)(rows * ldy) * sizeof(float));
        out[k].h_n = malloc((size_t)(c->N * R) * sizeof(float));
        out[k].c_n = malloc((size_t)(c->N * c->H) * sizeof(float));
        out[k].grad = malloc((size_t)L.total * sizeof(float));
    }
    static const char *paths[] = {"avx512", "avx2", "neon", "generic"};
    for (int i = 0; i < 4; i++) {
        if (rnc_set_isa(paths[i]) != RNC_OK) continue;
        for (int k = 0; k < 2; k++) { /* 1 and 2 threads */
            const int nt = k + 1;
            const int ok = run_library(c, &L, thf, &w, nt, &out[k]) == 0;
            CHECK(ok, "%s [%s, %d thread(s)]: a call failed", desc, paths[i], nt);
            if (!ok) continue;
            cases++;
            two_thread_cases += out[k].team == 2;
            check_against(c, &L, &e, &out[k], desc, paths[i], nt);
        }
        const int same = memcmp(out[0].y, out[1].y, (size_t)(rows * ldy) * sizeof(float)) == 0 &&
                         memcmp(out[0].h_n, out[1].h_n, (size_t)(c->N * R) * sizeof(float)) == 0 &&
                         (c->cell != RNC_CELL_LSTM ||
                          memcmp(out[0].c_n, out[1].c_n, (size_t)(c->N * c->H) * sizeof(float)) == 0) &&
                         memcmp(out[0].grad, out[1].grad, (size_t)L.total * sizeof(float)) == 0;
        CHECK(same, "%s [%s]: 1 and 2 threads differ", desc, paths[i]);
    }
    for (int k = 0; k < 2; k++) {
        free(out[k].y);
        free(out[k].h_n);
        free(out[k].c_n);
        free(out[k].grad);
    }
    free(th);
    free(thf);
    free(dy);
    free(dh_n);
    free(dc_n);
    free(e.y);
    free(e.h_n);
    free(e.c_n);
    free(e.fd);
    free(e.v);
}

/* ------------------------------------------------------- bad arguments */

static void check_bad_arguments(void) {
    enum { T = 2, N = 2, I = 3, H = 5 };
    const rnc_cell cell = RNC_CELL_LSTM;
    float x[T * N * I] = {0}, w_ih_p[1024], w_hh_p[1024], y[T * N * H], ws[1 << 14];
    CHECK(rnc_packed_floats(cell, H, I) <= 1024 && rnc_packed_floats(cell, H, H) <= 1024, "packed sizes");
    const rnc_dims d = {T, N, I, H, cell, 0};
    CHECK(rnc_fwd_workspace_floats(&d, 1) <= sizeof ws / sizeof ws[0], "workspace size");
    const rnc_fwd_args a = {x, NULL, NULL, w_ih_p, w_hh_p, NULL, NULL, y, H, NULL, NULL, ws,
                            0, 0, NULL, NULL, NULL, 0, NULL, 0, NULL};
    rnc_fwd_args bad = a;
    bad.x = NULL;
    CHECK(rnc_forward(&d, &bad, 1) == RNC_ERR_INVALID_ARG, "NULL x");
    bad = a;
    bad.ldy = H - 1;
    CHECK(rnc_forward(&d, &bad, 1) == RNC_ERR_INVALID_ARG, "ldy < H");
    rnc_dims zero = d;
    zero.T = 0;
    CHECK(rnc_forward(&zero, &a, 1) == RNC_ERR_INVALID_ARG, "T = 0");
    rnc_dims huge = d;
    huge.T = huge.N = (int64_t)1 << 40;
    CHECK(rnc_fwd_workspace_floats(&huge, 1) == 0, "overflowing workspace size");
    rnc_dims unknown = d;
    unknown.cell = (rnc_cell)42;
    CHECK(rnc_forward(&unknown, &a, 1) == RNC_ERR_UNSUPPORTED, "unknown cell");
    int64_t rising[N] = {1, 2};
    bad = a;
    bad.lengths = rising;
    CHECK(rnc_forward(&d, &bad, 1) == RNC_ERR_INVALID_ARG, "increasing lengths");
    CHECK(rnc_set_isa("no-such-isa") == RNC_ERR_UNSUPPORTED, "unknown ISA name");
}

/* rnc_scatter_add_rows against a plain loop: the same float32 sums bit for
 * bit (rows summed in order) at 1 and 2 threads, with repeated rows and a
 * size past the one-thread limit; an index out of range writes nothing. */
static void check_scatter(void) {
    enum { M = 300, E = 517, V = 7 };
    static float src[M * E], dst[V * E], want[V * E];
    static int64_t index[M];
    unsigned s = 11;
    for (int64_t i = 0; i < M * E; i++) src[i] = rnd(&s);
    for (int64_t r = 0; r < M; r++) index[r] = (r * 5 + r / 3) % V;
    for (int threads = 1; threads <= 2; threads++) {
        for (int64_t i = 0; i < V * E; i++) dst[i] = want[i] = (float)i * 0.25f;
        for (int64_t r = 0; r < M; r++)
            for (int64_t j = 0; j < E; j++) want[index[r] * E + j] += src[r * E + j];
        CHECK(rnc_scatter_add_rows(M, E, index, src, E, dst, V, E, threads) == RNC_OK,
              "scatter_add_rows status");
        CHECK(memcmp(dst, want, sizeof dst) == 0, "scatter_add_rows sums, %d thread(s)", threads);
        compared += V * E;
    }
    int64_t bad[2] = {0, V};
    memcpy(want, dst, sizeof dst);
    CHECK(rnc_scatter_add_rows(2, E, bad, src, E, dst, V, E, 1) == RNC_ERR_INVALID_ARG,
          "scatter_add_rows index >= V");
    bad[1] = -1;
    CHECK(rnc_scatter_add_rows(2, E, bad, src, E, dst, V, E, 1) == RNC_ERR_INVALID_ARG,
          "scatter_add_rows index < 0");
    CHECK(memcmp(dst, want, sizeof dst) == 0, "scatter_add_rows wrote on a bad index");
    CHECK(rnc_scatter_add_rows(0, E, NULL, NULL, E, dst, V, E, 1) == RNC_OK, "scatter M = 0");
}

/* --------------------------------------------------------------- main */

/* ------------------------------------------------------------ int8 */

/* The scheme's row quantization (rnncore_int8.h): q = rint(v * (Q / a)),
 * a = max |v|, in float32; 0 for a row below 2^-100. Returns a. */
static float quantize_row(int64_t K, const float *v, float Q, int32_t *q) {
    float a = 0.0f;
    for (int64_t k = 0; k < K; k++) a = fabsf(v[k]) > a ? fabsf(v[k]) : a;
    const float inv = a < RNC_Q_TINY ? 0.0f : Q / a;
    for (int64_t k = 0; k < K; k++) q[k] = (int32_t)nearbyintf(v[k] * inv);
    return a;
}

/* Use the i-th of the active fp32 path's int8 candidates; 0 past the last. */
static int use_qisa(int i) {
    const char *p = rnc_qisa_candidates();
    for (int k = 0; k < i && p; k++) {
        p = strchr(p, ',');
        if (p) p++;
    }
    if (!p || !*p) return 0;
    char name[32];
    size_t len = strcspn(p, ",");
    if (len >= sizeof name) return 0;
    memcpy(name, p, len);
    name[len] = 0;
    return rnc_set_qisa(name) == RNC_OK;
}

/* y and the int32 products of rnc_qlinear on the active int8 path */
static void run_qlinear(int64_t M, int64_t K, int64_t Nout, const float *x, const uint8_t *wp,
                        const float *bias, float *y, int32_t *acc, int threads) {
    const size_t bytes = rnc_qlinear_workspace_bytes(M, K, threads);
    void *ws = malloc(bytes + 4);
    CHECK(bytes > 0 && ws, "qlinear workspace");
    if (!ws) return;
    CHECK(rnc_qlinear(M, K, Nout, x, K, wp, bias, y, Nout, acc, NULL, ws, threads) == RNC_OK,
          "rnc_qlinear M=%lld K=%lld Nout=%lld", (long long)M, (long long)K, (long long)Nout);
    free(ws);
}

static void check_int8(const char *const *paths, int n) {
    static const int64_t Ms[] = {1, 2, 3, 5, 9}, Ks[] = {1, 5, 64, 130}, Ns[] = {1, 16, 17, 40};
    unsigned seed = 99;
    printf("int8 paths:");
    for (int i = 0; i < n; i++)
        if (rnc_set_isa(paths[i]) == RNC_OK) printf(" %s (with %s)", rnc_qisa_candidates(), paths[i]);
    printf("\n");
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof Ks[0]; b++)
            for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++) {
                const int64_t M = Ms[a], K = Ks[b], Nout = Ns[c];
                float *x = malloc(sizeof(float) * M * K), *sc = malloc(sizeof(float) * Nout);
                float *bias = malloc(sizeof(float) * Nout), *y = malloc(sizeof(float) * M * Nout);
                float *y_ref = malloc(sizeof(float) * M * Nout);
                int8_t *wq = malloc((size_t)(Nout * K));
                int32_t *q = malloc(sizeof(int32_t) * K), *acc = malloc(sizeof(int32_t) * M * Nout);
                int32_t *exact = malloc(sizeof(int32_t) * M * Nout);
                float *amax = malloc(sizeof(float) * M);
                uint8_t *wp = malloc(rnc_qpacked_bytes(1, Nout, K) + 4);
                for (int64_t i = 0; i < M * K; i++) x[i] = 3.0f * rnd(&seed);
                for (int64_t i = 0; i < Nout * K; i++) /* the extremes +-127 included */
                    wq[i] = (int8_t)(i % 7 == 0 ? (i % 2 ? 127 : -127) : (int)(127 * rnd(&seed)));
                for (int64_t j = 0; j < Nout; j++) sc[j] = 0.01f * (1 + j % 3), bias[j] = rnd(&seed);
                CHECK(rnc_qpack_weights(1, Nout, K, wq, sc, wp) == RNC_OK, "rnc_qpack_weights");
                rnc_set_isa("generic");
                run_qlinear(M, K, Nout, x, wp, bias, y_ref, acc, 1);
                for (int i = 0; i < n; i++)
                    for (int c = 0; rnc_set_isa(paths[i]) == RNC_OK && use_qisa(c); c++) {
                    /* the exact sums for this path's activation range Q */
                    const float Q = (float)rnc_qisa_act_max();
                    for (int64_t m = 0; m < M; m++) {
                        amax[m] = quantize_row(K, x + m * K, Q, q);
                        for (int64_t j = 0; j < Nout; j++) {
                            int32_t s = 0;
                            for (int64_t k = 0; k < K; k++) s += q[k] * wq[j * K + k];
                            exact[m * Nout + j] = s;
                        }
                    }
                    for (int threads = 1; threads <= 2; threads++) {
                        memset(acc, 0, sizeof(int32_t) * M * Nout);
                        run_qlinear(M, K, Nout, x, wp, bias, y, acc, threads);
                        cases++;
                        for (int64_t e = 0; e < M * Nout; e++, compared++) {
                            CHECK(acc[e] == exact[e], "int8 %s M=%lld K=%lld Nout=%lld: product %lld is %d, "
                                  "exact %d", rnc_qisa_name(), (long long)M, (long long)K,
                                  (long long)Nout, (long long)e, acc[e], exact[e]);
                            /* Q = 127: the generic path's bits; else the
                             * scheme's dequantisation of the exact sum */
                            const float sv = amax[e / Nout] / Q;
                            const float want = Q == 127.0f ? y_ref[e]
                                : (float)exact[e] * (sv * sc[e % Nout]) + bias[e % Nout];
                            CHECK(Q == 127.0f ? memcmp(&y[e], &want, sizeof(float)) == 0
                                              : fabsf(y[e] - want) <= 1e-6f * (1 + fabsf(want)),
                                  "int8 %s M=%lld K=%lld Nout=%lld: y[%lld] %.9g, expected %.9g",
                                  rnc_qisa_name(), (long long)M, (long long)K, (long long)Nout,
                                  (long long)e, y[e], want);
                        }
                    }
                    }
                rnc_set_qisa("");
                free(x), free(sc), free(bias), free(y), free(y_ref), free(wq), free(q), free(acc);
                free(exact), free(amax), free(wp);
            }
}

int main(int argc, char **argv) {
    rnc_init();
    /* "test_forward int8": the int8 checks alone (.ci/arm64 on a second CPU model) */
    const int int8_only = argc > 1 && strcmp(argv[1], "int8") == 0;
    static const struct { rnc_cell cell; variant var; } kinds[] = {
        {RNC_CELL_RNN_TANH, VAR_PLAIN}, {RNC_CELL_RNN_RELU, VAR_PLAIN},
        {RNC_CELL_LSTM, VAR_PLAIN},     {RNC_CELL_LSTM, VAR_PEEP},
        {RNC_CELL_LSTM, VAR_COUPLED},   {RNC_CELL_LSTM, VAR_PEEP_COUPLED},
        {RNC_CELL_LSTM, VAR_PROJ},      {RNC_CELL_LSTM, VAR_PROJ_PEEP},
        {RNC_CELL_GRU, VAR_PLAIN},      {RNC_CELL_GRU_RB, VAR_PLAIN}};
    /* T, N, I, H, R (the projection width, when the variant has one) */
    static const int64_t sizes[][5] = {{1, 1, 1, 1, 1}, {4, 3, 5, 7, 3}, {3, 5, 6, 17, 5}, {5, 2, 3, 33, 17}};
    /* time-major, batch-first, reverse, both, lengths */
    static const int layouts[][3] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {1, 1, 0}, {0, 0, 1}};
    static const char *paths[] = {"avx512", "avx2", "neon", "generic"};
    const char *avail[4]; /* the paths this CPU and RNNCORE_DISABLE_ISA leave */
    int n_paths = 0;
    printf("CPU paths:");
    for (int i = 0; i < 4; i++)
        if (rnc_isa_available(paths[i])) {
            printf(" %s", paths[i]);
            avail[n_paths++] = paths[i];
        }
    printf(" (compiled: %s; OpenMP %s)\n", rnc_compiled_isas(), rnc_has_openmp() ? "on" : "off");
    unsigned seed = 7;
    int configs = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0] && !int8_only; k++) {
        const int proj = kinds[k].var == VAR_PROJ || kinds[k].var == VAR_PROJ_PEEP;
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
                const config c = {kinds[k].cell, kinds[k].var, sizes[s][0], sizes[s][1], sizes[s][2],
                                  sizes[s][3], proj ? sizes[s][4] : 0, layouts[l][0], layouts[l][1],
                                  layouts[l][2]};
                run_config(&c, seed++);
                configs++;
            }
        /* big enough for a team of 2 (N G H^2 >= 2 RNC_MIN_STEP_MACS and 2+
         * panels of units): time-major, batch-first reversed, lengths */
        const int64_t G = rnc_cell_gates(kinds[k].cell), H = G == 1 ? 129 : 65;
        const int64_t N = 2 * RNC_MIN_STEP_MACS / (G * H * H) + 1;
        for (int l = 0; l < 3; l++) {
            const int lay = l == 0 ? 0 : l == 1 ? 3 : 4;
            const config c = {kinds[k].cell, kinds[k].var, 3, N, 4, H, proj ? 33 : 0,
                              layouts[lay][0], layouts[lay][1], layouts[lay][2]};
            run_config(&c, seed++);
            configs++;
        }
    }
    check_int8(avail, n_paths);
    check_bad_arguments();
    check_scatter();
    if (rnc_has_openmp() && !int8_only)
        CHECK(two_thread_cases > 0, "no case ran with a team of 2 threads");
    printf("%d configuration(s), %ld case(s) with a 2-thread team; worst error / tolerance: "
           "forward %.3f, backward %.3f\n", configs, two_thread_cases, worst_fwd, worst_bwd);
    printf("%d CPU path(s), %ld case(s), %ld value(s) compared, %d failure(s)\n", n_paths, cases,
           compared, failures);
    return failures != 0;
}
