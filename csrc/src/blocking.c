/*
 * blocking.c: the GEMM blocking, derived once from the CPU (rnc_init(), and
 * again by rnc_set_isa()) instead of constants tuned on one machine:
 *
 *   facts:  L1d, L2 (one core's) and L3 from cpu_features.c, or the
 *           RNNCORE_CACHE override; the active ISA's vector registers and
 *           width and its compiled tile heights (dispatch.c).
 *   tile:   mr rows x 2 vectors: mr x 2 accumulators + 2 panel vectors + 1
 *           broadcast must fit the register file (AVX-512 32 zmm: mr <= 14;
 *           AVX2 16 ymm: mr <= 6; a 12-row tile spills on AVX2), and mr
 *           divides the 48-row blocks of the input projection and of
 *           rnc_linear so that they have no row tail; the largest such mr.
 *   kchunk: the micro-kernel walks a panel in chunks of kchunk rows of K:
 *           the panel's chunk (kchunk x 32 floats) fills L1d, a multiple of
 *           32; the tile's chunk of A (mr x kchunk) streams beside it from
 *           L2 (a 12-row tile reads 48 bytes of A per 24 FMAs). Every chunk
 *           costs a pass of C through the tile and restarts the stream of a
 *           panel that comes from L3 (the LSTM's recurrent weights at N =
 *           64, H = 512), so fewer, larger chunks won in every sweep
 *           (`rnncore bench --tune`, 1 thread, kernel group): Zen 4 (32 KB
 *           L1d) 256 rows x0.94 the time of 160 (panel + A in L1d, the
 *           previous rule), Xeon (48 KB) 384 ahead of 256 by 3 %, Zen 5
 *           (48 KB) 384 the best, 128 (half of L1d) 10-16 % behind; on AVX2
 *           (a tile covers half a panel row) Zen 3 256 within 0.5 % of 192
 *           and 384 14 % behind, Zen 4 192-384 within 2 %.
 *   KC:     gemm.c's K block: about 2 chunks (C is read and written once
 *           per KC: 2 x 32 floats a row per 2 x kchunk x 32 FMAs, about 1 %),
 *           rounded down to a multiple of RNC_TAIL_KSEG (128).
 *   MC:     gemm.c's block of A rows, packed: MC x KC floats fill an eighth
 *           of L2, a multiple of mr: the rest of L2 holds the B group's
 *           panels streaming through (up to 2 MB, each read once per A
 *           block) and the C rows each panel updates. Measured (`rnncore
 *           bench --tune`, 1 thread): MC 48-240 within 2 % on Zen 5 (1 MB
 *           L2); head to head on Zen 3 (512 KB) MC 48 the best twice against
 *           84 (a quarter: x0.96-0.98); on the Xeon (2 MB L2) a quarter (MC
 *           252) lost 8-10 % to MC 48-120 in two sweeps, 13 % on the dW GEMM
 *           (2048 x 1280 x 512), while MC 24-120 were within 2 % of each
 *           other: a B panel chunk reloaded from L2 every 2-4 tiles costs
 *           little (4 GB/s at MC 48), an A block crowding L2 more.
 *   NC:     gemm.c's group of B panels, packed once per K block: NC x KC
 *           floats fill a quarter of L3 (or L2 if larger), at most the 2 MB
 *           group scratch. The group need not fit L2: each MC block of A
 *           reads it once, panel by panel, 2 / MC bytes a flop (2 GB/s at MC
 *           = 84 and 90 GFLOP/s, against 50 GB/s from L3), while every group
 *           more packs each A block again (a group of half of L2 packed A
 *           twice for 512 columns: 8 % of an LSTM training step). Measured
 *           (Zen 3, L2 512 KB, 1 thread, in-process alternation, medians of
 *           6 rounds, KC 384), against NC 320 (L2-sized): NC 1024 took the
 *           LSTM backward's dW and dx (T*N = 2240, H = 512) and the 10k
 *           decoder's dW x0.93-0.96 of the time, its logits x0.91-1.01; NC
 *           1344 (this rule there) x0.97 / 0.97 / 0.94, logits x1.02; the
 *           tune's gemm sweep then put it within 2.5 % of its best.
 *   prefetch: tiles of 1-2 rows (a batch-1 step, bound by streaming W_hh
 *           from L2 or L3) may prefetch the panel that many 128-byte rows
 *           ahead; the rule is not at all. Zen 4 (32 KB L1d): none the
 *           fastest of 0 / 1 / 2 / 4 / 8 KB for every batch-1 forward of
 *           `rnncore bench`'s sizes, warm or cold, 1 and 2 threads (LSTM
 *           h512 T = 100 7.34 ms against 8.0-9.3); Zen 3 (32 KB), AVX2 int8
 *           row tile: within noise (2 KB 41.5 / 50.7 us, none 40.8 / 46.7).
 *           Zen 5 (48 KB) once measured 4 KB ahead the best under load 7-9
 *           (LSTM 2 x h512, T = 35: 4.8-5.3 -> 4.4-4.5 ms), which a quiet
 *           re-measure (load 0.6, 2026-12-06) did not reproduce: none was
 *           as fast or faster in every case, 1 and 2 threads, T = 100, N = 1
 *           (1 thread, against 4 KB: LSTM h256 0.853 / 0.902 ms, h1024
 *           19.11 / 19.72, GRU h1024 13.76 / 14.16, RNN h512 0.884 / 0.910;
 *           LSTM 2 x h1024 T = 35 13.70 / 13.90, 2 threads 7.18 / 7.37;
 *           int8 level). `rnncore bench --tune` sweeps it (the prefetch
 *           group) for a CPU where it might pay.
 *   walk:   one-step calls (layer.step()) alternate the direction of
 *           their weights' walk (rnc_fwd_args.walk_back) when those weights
 *           fit half of L3: each call then starts on the part of them the
 *           last one left in L2. Beyond that they come from DRAM, where a
 *           walk in reverse panel order breaks the prefetcher's streams.
 *           Zen 5 (1 MB L2, 32 MB L3), N = 1, 1 thread, us a step, forward
 *           only -> alternating: fp32 RNN h512 (2 MB) 21.9 -> 19.1, GRU
 *           h512 (6 MB) 63.2 -> 57.2, LSTM h512 (8 MB) 84.6 -> 76.8, int8
 *           LSTM h512 (2 MB) 25.1 -> 22.3; LSTM h768 (19 MB) 180 / 192 ->
 *           174 / 196, h1024 (32 MB) 567-583 -> 577-620, h1280 (52 MB)
 *           1015 -> 1139-1155.
 * The recurrent weights are split across threads in whole 32-unit panels
 * (fwd.c, bwd.c), each thread keeping its slice for the whole sequence.
 * `why` states each choice with its numbers.
 *
 * Sums: every output element of a tile of 4 rows or more is one float32 FMA
 * chain over k whatever the blocking (partial sums pass through C), and a
 * tail of 1-3 rows sums in fixed segments of RNC_TAIL_KSEG rows that every
 * KC is a multiple of: kchunk, KC, MC and NC never change a result. Only the
 * tile height does, for the rows it puts in a 1-3 row tail (M mod mr), and
 * it depends on the ISA alone, not on the caches.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define NV 2             /* vectors per tile row (kernels_simd.inc: CW = 2 VW) */
#define ROW_BLOCK 48     /* fwd.c GEMM_ROW_BLOCK, linear.c LINEAR_ROWS */

/* Defaults before rnc_init(): the constants this file replaces. */
rnc_blocking rnc_blk = {32 << 10, 256 << 10, 8 << 20, "default", "", 16, 4, 4, 32,
                        128, 512, 96, 512, 32, ""};

static char why_text[1536], cache_error[256];

/* "32K" -> 32768; K, M, G (powers of 1024), optionally followed by B or iB.
 * 0 on success with *p past the number, -1 if malformed or out of range. */
static int parse_size(const char **p, int64_t *out) {
    const char *s = *p;
    while (*s == ' ') s++;
    if (!isdigit((unsigned char)*s)) return -1;
    char *end;
    const long long v = strtoll(s, &end, 10);
    if (v <= 0 || v > (1LL << 40)) return -1;
    int64_t scale = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': scale = 1 << 10; end++; break;
    case 'M': scale = 1 << 20; end++; break;
    case 'G': scale = 1 << 30; end++; break;
    default: break;
    }
    if (scale > 1 && *end == 'i') end++;
    if (toupper((unsigned char)*end) == 'B') end++;
    while (*end == ' ') end++;
    if ((int64_t)v > (1LL << 40) / scale) return -1;
    *out = (int64_t)v * scale;
    *p = end;
    return 0;
}

/* RNNCORE_CACHE="L1,L2,L3": 0 and the three sizes, or -1 with cache_error set. */
static int parse_override(const char *text, int64_t size[3]) {
    const char *p = text;
    for (int i = 0; i < 3; i++) {
        if (parse_size(&p, &size[i]) != 0) {
            snprintf(cache_error, sizeof cache_error,
                     "RNNCORE_CACHE=\"%s\" ignored: want three sizes L1d,L2,L3 in bytes "
                     "(K/M/G suffixes allowed), e.g. 32K,512K,32M", text);
            return -1;
        }
        if (*p != (i < 2 ? ',' : '\0')) {
            snprintf(cache_error, sizeof cache_error,
                     "RNNCORE_CACHE=\"%s\" ignored: want exactly three comma-separated "
                     "sizes L1d,L2,L3", text);
            return -1;
        }
        if (i < 2) p++;
    }
    if (size[0] < 4096 || size[1] < size[0] || size[2] < size[1]) {
        snprintf(cache_error, sizeof cache_error,
                 "RNNCORE_CACHE=\"%s\" ignored: want 4K <= L1d <= L2 <= L3", text);
        return -1;
    }
    return 0;
}

static int64_t round_down(int64_t v, int64_t m) { return v / m * m; }
static int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The rule's tile: the largest compiled mr that fits the registers and
 * divides ROW_BLOCK (then the largest that fits; then the smallest). */
static int rule_mr(const rnc_isa_gemm *g, int table_mr) {
    if (g->n_tiles == 0) return table_mr;
    int best = 0, fit = 0, smallest = g->tiles[0].mr;
    for (int i = 0; i < g->n_tiles; i++) {
        const int mr = g->tiles[i].mr;
        if (mr < smallest) smallest = mr;
        if (mr * NV + NV + 1 > g->vregs) continue;
        if (mr > fit) fit = mr;
        if (ROW_BLOCK % mr == 0 && mr > best) best = mr;
    }
    return best ? best : fit ? fit : smallest;
}

static int64_t rule_kchunk(int64_t l1d) {
    return clamp(round_down(l1d / (4 * RNC_PANEL), 32), 32, RNC_KCHUNK_MAX);
}
static int64_t rule_kc(int64_t kchunk) {
    return clamp(round_down(2 * kchunk, RNC_TAIL_KSEG), RNC_TAIL_KSEG, RNC_KC_MAX);
}
static int64_t rule_mc(int64_t l2, int64_t kc, int mr) {
    return clamp(round_down(l2 / 8 / (4 * kc), mr), mr, round_down(RNC_MC_MAX, mr));
}
static int64_t rule_nc(int64_t l2, int64_t l3, int64_t kc) {
    const int64_t bytes = l3 / 4 > l2 ? l3 / 4 : l2;
    const int64_t panels = clamp(bytes / (kc * RNC_PANEL * 4), 1, RNC_GROUP_FLOATS_MAX / (kc * RNC_PANEL));
    return panels * RNC_PANEL;
}

/* Tile, kchunk, KC, MC, NC: each given value (> 0) or the rule's, in that
 * order (a rule uses the values before it); the prefetch distance given (>=
 * 0) or the rule's. 0, or -1 if a given value is out of range (nothing
 * changed). */
static int choose(int mr, int64_t kchunk, int64_t kc, int64_t mc, int64_t nc, int64_t prefetch) {
    const rnc_isa_gemm *g = rnc_active_isa_gemm();
    const rnc_kernels *table = rnc_active_kernels_table();
    const int given[6] = {mr > 0, kchunk > 0, kc > 0, mc > 0, nc > 0, prefetch >= 0};
    if (mr <= 0) mr = rule_mr(g, table->mr);
    if (kchunk <= 0) kchunk = rule_kchunk(rnc_blk.l1d);
    if (kc <= 0) kc = rule_kc(kchunk);
    if (mc <= 0) mc = rule_mc(rnc_blk.l2, kc, mr);
    if (nc <= 0) nc = rule_nc(rnc_blk.l2, rnc_blk.l3, kc);
    if (prefetch < 0) prefetch = 0; /* the rule: none (above) */
    if (kchunk > RNC_KCHUNK_MAX || kc > RNC_KC_MAX || kc % RNC_TAIL_KSEG || mc > RNC_MC_MAX || mc % mr ||
        nc % RNC_PANEL || nc * kc > RNC_GROUP_FLOATS_MAX || prefetch > RNC_PREFETCH_MAX)
        return -1;
    if (rnc_use_tile(mr) != 0) return -1;
    rnc_blk.vregs = g->vregs;
    rnc_blk.vector_floats = g->vw;
    rnc_blk.mr = mr;
    rnc_blk.tile_cols = g->n_tiles ? NV * g->vw : RNC_PANEL;
    rnc_blk.kchunk = kchunk;
    rnc_blk.kc = kc;
    rnc_blk.mc = mc;
    rnc_blk.nc = nc;
    rnc_blk.prefetch = prefetch;

    const double kb = 1024.0;
    const int regs = mr * NV + NV + 1;
    char *w = why_text;
    size_t left = sizeof why_text;
#define WHY(...)                                                   \
    do {                                                           \
        const int n_ = snprintf(w, left, __VA_ARGS__);             \
        if (n_ > 0 && (size_t)n_ < left) w += n_, left -= (size_t)n_; \
    } while (0)
    if (given[0])
        WHY("tile %d x %d: set (%d of %d vector registers%s)\n", mr, rnc_blk.tile_cols, regs,
            g->vregs, regs > g->vregs ? ": spills" : "");
    else if (g->n_tiles == 0)
        WHY("tile %d x %d: the %s path's only tile\n", mr, rnc_blk.tile_cols, table->name);
    else
        WHY("tile %d x %d: %d x %d accumulators + %d panel vectors + 1 broadcast = %d of %d "
            "vector registers, the largest that fits and divides the %d-row blocks\n",
            mr, rnc_blk.tile_cols, mr, NV, NV, regs, g->vregs, ROW_BLOCK);
    if (given[1]) WHY("kchunk %lld: set\n", (long long)kchunk);
    else
        WHY("kchunk %lld: a %lld x %d panel chunk (%.0f KB) fills L1d (%.0f KB), a multiple of "
            "32; the %d-row A chunk (%.1f KB) streams beside it\n", (long long)kchunk,
            (long long)kchunk, RNC_PANEL, kchunk * RNC_PANEL * 4 / kb, rnc_blk.l1d / kb, mr,
            kchunk * mr * 4 / kb);
    if (given[2]) WHY("KC %lld: set\n", (long long)kc);
    else WHY("KC %lld: about 2 chunks per pass over C, a multiple of %d\n", (long long)kc, RNC_TAIL_KSEG);
    if (given[3]) WHY("MC %lld: set\n", (long long)mc);
    else
        WHY("MC %lld: a packed %lld x %lld block of A (%.0f KB) fits an eighth of L2 (%.0f KB), "
            "a multiple of %d\n", (long long)mc, (long long)mc, (long long)kc,
            mc * kc * 4 / kb, rnc_blk.l2 / 8 / kb, mr);
    if (given[4]) WHY("NC %lld: set\n", (long long)nc);
    else
        WHY("NC %lld: %lld packed panels of %lld x %d (%.0f KB) fit the larger of L2 (%.0f KB) and "
            "a quarter of L3 (%.0f KB), at most %.0f KB\n", (long long)nc,
            (long long)(nc / RNC_PANEL), (long long)kc, RNC_PANEL, nc * kc * 4 / kb,
            rnc_blk.l2 / kb, rnc_blk.l3 / 4 / kb, RNC_GROUP_FLOATS_MAX * 4 / kb);
    if (given[5]) WHY("prefetch %lld: set\n", (long long)prefetch);
    else
        WHY("prefetch 0: 1-2 row tiles leave the panel's stream to the hardware prefetchers "
            "(measured as fast or faster on Zen 3, 4 and 5)\n");
    WHY("step walk: one-step calls alternate their weights' direction when those fit half of "
        "L3 (%.0f KB): each starts on what the last left in L2\n", rnc_blk.l3 / 2 / kb);
    WHY("recurrent weights: split across threads in whole %d-unit panels of every gate, "
        "each thread keeping its slice of W_hh for the whole sequence (in its L2 when "
        "G*H*H*4/threads <= %.0f KB)", RNC_PANEL, rnc_blk.l2 / kb);
#undef WHY
    rnc_blk.why = why_text;
    return 0;
}

void rnc_blocking_derive(void) {
    int64_t size[3];
    const char *env = getenv("RNNCORE_CACHE");
    cache_error[0] = '\0';
    if (env && *env && parse_override(env, size) == 0) {
        rnc_blk.cache_source = "RNNCORE_CACHE";
    } else {
        rnc_blk.cache_source = rnc_cpu_caches(&size[0], &size[1], &size[2]);
    }
    rnc_blk.l1d = size[0];
    rnc_blk.l2 = size[1];
    rnc_blk.l3 = size[2];
    rnc_blk.cache_error = cache_error;
    if (choose(0, 0, 0, 0, 0, -1) != 0) { /* cannot happen: the rules stay in range */
        rnc_blk.why = "blocking: the rules gave an out-of-range value; defaults kept";
    }
}

const rnc_blocking *rnc_get_blocking(void) {
    rnc_init();
    return &rnc_blk;
}

rnc_status rnc_set_blocking(int mr, int64_t kchunk, int64_t kc, int64_t mc, int64_t nc,
                            int64_t prefetch) {
    rnc_init();
    if (mr < 0 || kchunk < 0 || kc < 0 || mc < 0 || nc < 0) return RNC_ERR_INVALID_ARG;
    return choose(mr, kchunk, kc, mc, nc, prefetch) == 0 ? RNC_OK : RNC_ERR_INVALID_ARG;
}

int rnc_gemm_tile_rows(int *out, int cap) {
    rnc_init();
    const rnc_isa_gemm *g = rnc_active_isa_gemm();
    if (g->n_tiles == 0) {
        if (out && cap > 0) out[0] = rnc_blk.mr;
        return 1;
    }
    for (int i = 0; i < g->n_tiles && i < cap && out; i++) out[i] = g->tiles[i].mr;
    return g->n_tiles;
}

int rnc_step_walk_alternates(int64_t weight_bytes) {
    return weight_bytes >= 0 && weight_bytes <= rnc_get_blocking()->l3 / 2;
}
