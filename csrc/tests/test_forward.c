/*
 * test_forward.c: the C library on its own, from plain C (no Python).
 * Builds with the sources of csrc/src (tests/test_c_library.py does it):
 *   cc -std=c99 -Icsrc/include csrc/tests/test_forward.c csrc/src/ *.c -lm
 * Checks an LSTM and a GRU against a scalar double-precision loop written
 * here, on every CPU path available, their backward pass against finite
 * differences of that loop, and that bad arguments are rejected.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnncore.h"

/* sizes: steps, batch, inputs, hidden units */
#define ST 4
#define SN 3
#define SI 5
#define SH 7

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL: " __VA_ARGS__); printf("\n"); } } while (0)

static double sig(double v) { return 1.0 / (1.0 + exp(-v)); }

/* Scalar reference of one layer, time-major, PyTorch gate orders. */
static void reference(rnc_cell cell, const float *x, const float *h0, const float *c0,
                      const float *w_ih, const float *w_hh, const float *b_ih,
                      const float *b_hh, double *y) {
    const int G = rnc_cell_gates(cell);
    double h[SN][SH], c[SN][SH];
    for (int n = 0; n < SN; n++)
        for (int u = 0; u < SH; u++) { h[n][u] = h0[n * SH + u]; c[n][u] = c0[n * SH + u]; }
    for (int t = 0; t < ST; t++) {
        double hn[SN][SH];
        for (int n = 0; n < SN; n++) {
            double gi[4 * SH], gh[4 * SH];
            for (int j = 0; j < G * SH; j++) {
                gi[j] = b_ih[j];
                gh[j] = b_hh[j];
                for (int k = 0; k < SI; k++) gi[j] += w_ih[j * SI + k] * x[(t * SN + n) * SI + k];
                for (int k = 0; k < SH; k++) gh[j] += w_hh[j * SH + k] * h[n][k];
            }
            for (int u = 0; u < SH; u++) {
                if (cell == RNC_CELL_LSTM) {
                    double i = sig(gi[u] + gh[u]), f = sig(gi[SH + u] + gh[SH + u]);
                    double g = tanh(gi[2 * SH + u] + gh[2 * SH + u]);
                    double o = sig(gi[3 * SH + u] + gh[3 * SH + u]);
                    c[n][u] = f * c[n][u] + i * g;
                    hn[n][u] = o * tanh(c[n][u]);
                } else { /* GRU */
                    double r = sig(gi[u] + gh[u]), z = sig(gi[SH + u] + gh[SH + u]);
                    double nn = tanh(gi[2 * SH + u] + r * gh[2 * SH + u]);
                    hn[n][u] = (1 - z) * nn + z * h[n][u];
                }
            }
        }
        for (int n = 0; n < SN; n++)
            for (int u = 0; u < SH; u++) { h[n][u] = hn[n][u]; y[(t * SN + n) * SH + u] = hn[n][u]; }
    }
}

static float rnd(unsigned *s) { *s = *s * 1103515245u + 12345u; return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f; }

/* loss = sum(y * dy) of the scalar reference */
static double ref_loss(rnc_cell cell, const float *x, const float *h0, const float *c0,
                       const float *w_ih, const float *w_hh, const float *b_ih,
                       const float *b_hh, const float *dy) {
    double y[ST * SN * SH], loss = 0;
    reference(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, y);
    for (int i = 0; i < ST * SN * SH; i++) loss += y[i] * dy[i];
    return loss;
}

/* rnc_backward's dW_hh, dW_ih and dx against central differences of ref_loss
 * (step 1e-2 on float inputs: the error is O(step^2) ~ 1e-4 relative). */
static void check_backward(rnc_cell cell, const char *isa, const rnc_dims *d, rnc_fwd_args *a,
                           float *w_ih, float *w_hh, const float *b_ih, const float *b_hh) {
    const int G = rnc_cell_gates(cell);
    float *tape = rnc_tape_floats(d) ? malloc(rnc_tape_floats(d) * sizeof(float)) : NULL;
    float *ws = malloc(rnc_bwd_workspace_floats(d, 2) * sizeof(float));
    float dy[ST * SN * SH], dx[ST * SN * SI], dh0[SN * SH], dc0[SN * SH];
    float dw_ih[4 * SH * SI] = {0}, dw_hh[4 * SH * SH] = {0}, db_ih[4 * SH] = {0}, db_hh[4 * SH] = {0};
    unsigned seed = 99;
    for (int i = 0; i < ST * SN * SH; i++) dy[i] = rnd(&seed);
    a->tape = tape;
    CHECK(rnc_forward(d, a, 2) == RNC_OK, "%s forward with a tape", isa);
    a->tape = NULL;
    rnc_bwd_args b = {a->x, a->h0, a->c0, w_ih, w_hh, a->y, SH, tape, dy, SH, NULL, NULL,
                      dx, SI, 0, dh0, cell == RNC_CELL_LSTM ? dc0 : NULL,
                      dw_ih, dw_hh, db_ih, db_hh, ws, 0, 0, NULL, NULL, 0, NULL, NULL, NULL};
    CHECK(rnc_backward(d, &b, 2) == RNC_OK, "%s backward", isa);
    float *x = (float *)a->x;
    struct { float *v; const float *grad; int n; const char *name; } probes[] = {
        {w_hh, dw_hh, G * SH * SH, "dw_hh"}, {w_ih, dw_ih, G * SH * SI, "dw_ih"}, {x, dx, ST * SN * SI, "dx"}};
    for (int p = 0; p < 3; p++)
        for (int j = 0; j < probes[p].n; j += 5) {
            const float saved = probes[p].v[j];
            probes[p].v[j] = saved + 1e-2f;
            const double up = ref_loss(cell, x, a->h0, a->c0 ? a->c0 : a->h0, w_ih, w_hh, b_ih, b_hh, dy);
            const double step_up = (double)probes[p].v[j] - saved;
            probes[p].v[j] = saved - 1e-2f;
            const double down = ref_loss(cell, x, a->h0, a->c0 ? a->c0 : a->h0, w_ih, w_hh, b_ih, b_hh, dy);
            const double step_down = saved - (double)probes[p].v[j];
            probes[p].v[j] = saved;
            const double fd = (up - down) / (step_up + step_down);
            CHECK(fabs(probes[p].grad[j] - fd) < 1e-3 * fmax(1.0, fabs(fd)),
                  "%s cell %d %s[%d]: backward %g, finite difference %g", isa, (int)cell,
                  probes[p].name, j, probes[p].grad[j], fd);
        }
    rnc_bwd_args bad = b;
    bad.tape = NULL;
    CHECK(rnc_backward(d, &bad, 1) == RNC_ERR_INVALID_ARG, "backward without its tape");
    free(tape);
    free(ws);
}

static void run_cell(rnc_cell cell, const char *isa) {
    const int G = rnc_cell_gates(cell);
    unsigned seed = 7;
    float x[ST * SN * SI], h0[SN * SH], c0[SN * SH], w_ih[4 * SH * SI], w_hh[4 * SH * SH], b_ih[4 * SH], b_hh[4 * SH];
    for (int i = 0; i < ST * SN * SI; i++) x[i] = rnd(&seed);
    for (int i = 0; i < SN * SH; i++) { h0[i] = rnd(&seed); c0[i] = rnd(&seed); }
    for (int i = 0; i < G * SH * SI; i++) w_ih[i] = 0.4f * rnd(&seed);
    for (int i = 0; i < G * SH * SH; i++) w_hh[i] = 0.4f * rnd(&seed);
    for (int i = 0; i < G * SH; i++) { b_ih[i] = 0.1f * rnd(&seed); b_hh[i] = 0.1f * rnd(&seed); }

    rnc_dims d = {ST, SN, SI, SH, cell, 0};
    float *w_ih_p = malloc(rnc_packed_floats(cell, SH, SI) * sizeof(float));
    float *w_hh_p = malloc(rnc_packed_floats(cell, SH, SH) * sizeof(float));
    float *ws = malloc(rnc_fwd_workspace_floats(&d, 2) * sizeof(float));
    float y[ST * SN * SH], h_n[SN * SH], c_n[SN * SH];
    double y_ref[ST * SN * SH];
    CHECK(rnc_pack_weights(cell, SH, SI, w_ih, w_ih_p) == RNC_OK, "pack w_ih");
    CHECK(rnc_pack_weights(cell, SH, SH, w_hh, w_hh_p) == RNC_OK, "pack w_hh");
    const int lstm = cell == RNC_CELL_LSTM;
    rnc_fwd_args a = {x, h0, lstm ? c0 : NULL, w_ih_p, w_hh_p, b_ih, b_hh, y, SH, h_n,
                      lstm ? c_n : NULL, ws, 0, 0, NULL, NULL, NULL, 0, NULL};
    CHECK(rnc_forward(&d, &a, 2) == RNC_OK, "%s forward", isa);
    reference(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, y_ref);
    double worst = 0;
    for (int i = 0; i < ST * SN * SH; i++) worst = fmax(worst, fabs(y[i] - y_ref[i]));
    CHECK(worst < 1e-5, "%s cell %d: max |y - reference| = %g", isa, (int)cell, worst);
    CHECK(memcmp(h_n, y + (ST - 1) * SN * SH, sizeof h_n) == 0, "%s h_n is the last output", isa);

    check_backward(cell, isa, &d, &a, w_ih, w_hh, b_ih, b_hh);

    /* bad arguments are rejected, never crash */
    rnc_fwd_args bad = a;
    bad.x = NULL;
    CHECK(rnc_forward(&d, &bad, 1) == RNC_ERR_INVALID_ARG, "NULL x");
    bad = a;
    bad.ldy = SH - 1;
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
    free(w_ih_p);
    free(w_hh_p);
    free(ws);
}

int main(void) {
    rnc_init();
    const char *isas[] = {"avx512", "avx2", "generic"};
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        if (rnc_set_isa(isas[i]) != RNC_OK) continue;
        run_cell(RNC_CELL_LSTM, isas[i]);
        run_cell(RNC_CELL_GRU, isas[i]);
        ran++;
    }
    CHECK(rnc_set_isa("no-such-isa") == RNC_ERR_UNSUPPORTED, "unknown ISA name");
    printf("%d CPU path(s), %d failure(s)\n", ran, failures);
    return failures != 0;
}
