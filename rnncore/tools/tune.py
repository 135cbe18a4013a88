"""``rnncore bench --tune`` (and ``benchmarks/tune_blocking.py``): sweep the
GEMM blocking on the machine at hand and print the best against the choice
rnncore derived from this CPU's caches and registers (``rnncore.config()``,
the rules in csrc/src/blocking.c).

The parameters are set at run time (rnc_set_blocking) inside one
process, so every candidate is timed on the same warm machine, in
alternating rounds (each round times every candidate once, in a fresh
random order), and the fastest call per candidate and shape is kept: drift
and bursts of load on a shared machine hit them alike. At 1 thread the
timer is the thread's CPU time, which does not count the time other
processes hold the core (on a machine loaded 3-4x over its cores the wall
times of one candidate spread by 2x; CPU times by a few %).
Three groups, each a full grid with the others at their derived values:

* micro-kernel: tile height mr (every height compiled for the active path,
  including ones that spill) x kchunk, on the shapes every GEMM of rnncore
  runs through the micro-kernel: the LSTM forward at N = 64 (per-step
  recurrent GEMM 64 x H x 4H plus the input projection), at N = 1 (the
  streaming step), the input projection alone (T*N x I x 4H on packed
  weights) and the backward's two whole-sequence GEMMs (dW: 4H x T*N x H
  with A transposed, dx: T*N x 4H x H);
* gemm.c blocks: KC x MC x NC on the two backward GEMMs;
* prefetch: how far ahead the 1-2 row tiles prefetch the panel (0 = not at
  all), on the LSTM and GRU forwards at N = 1 (the streaming steps).

A candidate's score is the geometric mean over the group's shapes of its
time / the derived choice's time (1.0 = as fast as derived, < 1 faster).
The grid's best few are then re-timed head to head with the derived choice
(more rounds), which is what the verdict uses: a best picked from a noisy
grid looks faster than it is.
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from ..engine import cells, runtime
from ..engine.config import config
from ..engine.layers import make_layer

_LINEAR = cells.cell("RNN_TANH")  # a linear layer's weights: one gate of Nout units


def _core():
    """The C kernels' Ops: blocking() and set_blocking() (rnc_get_blocking,
    rnc_set_blocking)."""
    core = runtime.c_ops()
    if core is None:
        raise RuntimeError("the sweep needs the C extension")
    return core


def shapes(H=512, N=64, T=20, threads=1, seed=0):
    """The timed shapes: name -> (callable, flops, group set)."""
    rng = np.random.default_rng(seed)
    runtime.set_num_threads(threads)
    ops = runtime.c_ops()
    G = 4
    lstm = make_layer(cells.cell("LSTM"), H, H, seed=seed)
    gru = make_layer(cells.cell("GRU"), H, H, seed=seed)
    x64 = rng.standard_normal((T, N, H), dtype=np.float32)
    x1 = rng.standard_normal((5 * T, 1, H), dtype=np.float32)
    w = (rng.standard_normal((G * H, H), dtype=np.float32) / np.sqrt(H)).astype(np.float32)
    w_p = runtime.pack(_LINEAR, G * H, w)
    bias = np.zeros(G * H, np.float32)
    xin = rng.standard_normal((T * N, H), dtype=np.float32)
    yin = np.empty((T * N, G * H), np.float32)
    dg = rng.standard_normal((T * N, G * H), dtype=np.float32)  # dG of a step sequence
    dw = np.empty((G * H, H), np.float32)
    dx = np.empty((T * N, H), np.float32)
    rec = 2.0 * T * N * G * H * H
    return {
        f"lstm_fwd_n{N}_h{H}": (lambda: lstm(x64), 2 * rec, {"kernel"}),
        f"lstm_fwd_n1_h{H}": (lambda: lstm(x1), 2 * 2.0 * 5 * T * G * H * H, {"kernel", "prefetch"}),
        f"gru_fwd_n1_h{H}": (lambda: gru(x1), 2 * 2.0 * 5 * T * 3 * H * H, {"prefetch"}),
        f"input_proj_{T * N}x{H}x{G * H}": (
            lambda: ops.linear(xin, w, w_p, bias, threads, out=yin), rec, {"kernel"}),
        f"dW_{G * H}x{T * N}x{H}": (
            lambda: ops.matmul(dg.T, xin, dw, False, threads), rec, {"kernel", "gemm"}),
        f"dx_{T * N}x{G * H}x{H}": (
            lambda: ops.matmul(dg, w, dx, False, threads), rec, {"kernel", "gemm"}),
    }


BLOCKING_KEYS = ("mr", "kchunk", "kc", "mc", "nc", "prefetch")  # rnc_set_blocking's


def _derived():
    b = _core().blocking()
    return {k: b[k] for k in BLOCKING_KEYS}


def _label(c):
    return " ".join(f"{k}={v}" for k, v in c.items())


def candidates(group, derived):
    """The grid of a group, the derived choice first."""
    b = _core().blocking()
    out = [dict(derived)]
    if group == "kernel":
        for mr in b["tile_rows"]:
            for kchunk in (64, 96, 128, 192, 256, 384):
                c = dict(derived, mr=mr, kchunk=kchunk, mc=0)
                # MC follows the tile: the derived MC rounded to a multiple of mr
                c["mc"] = max(mr, derived["mc"] // mr * mr)
                if c != out[0]:
                    out.append(c)
    elif group == "prefetch":
        for rows in (0, 8, 16, 32, 64):  # 0, 1, 2, 4, 8 KB ahead
            c = dict(derived, prefetch=rows)
            if c != out[0]:
                out.append(c)
    else:
        mr = derived["mr"]
        for kc in (256, 512, 1024):
            for mc in sorted({max(mr, v // mr * mr) for v in (48, 120, 240)}):
                for nc in (256, 512, 1024):
                    if nc * kc > (1 << 19):
                        continue
                    c = dict(derived, kc=kc, mc=mc, nc=nc)
                    if c != out[0]:
                        out.append(c)
    return out


def clock(threads):
    """The timer: at 1 thread the calling thread's CPU time (the kernels run
    in it without a parallel region), so that the time other processes of a
    shared machine take the core is not counted; wall time otherwise."""
    return time.thread_time if threads == 1 else time.perf_counter


MIN_SECONDS = 5e-4  # a timed batch at least this long by the timer


def seconds_per_call(fn, timer, min_seconds=MIN_SECONDS):
    """Seconds a call of fn takes: calls in batches doubled until a batch
    lasts min_seconds by timer. A tiny case (the tests' H = 32) is shorter
    than what the thread CPU clock resolves on some hosts and timed one call
    at a time read 0.0, which made score()'s log fail (CI, Zen 3)."""
    n = 1
    while True:
        t0 = timer()
        for _ in range(n):
            fn()
        dt = timer() - t0
        if dt >= min_seconds or n >= 1 << 20:
            return max(dt, 1e-12) / n
        n *= 2


def time_grid(cands, cases, rounds, progress=None, reps=3, seed=0, timer=time.perf_counter):
    """Seconds per (candidate, case): the fastest of rounds x reps timings
    (seconds_per_call). Each round times every candidate once (a warm-up
    call, then the reps), in a fresh random order, so that a burst of load on
    the shared machine does not fall on neighbouring candidates alone; the
    fastest timing is the one least disturbed (load only ever adds time)."""
    core = _core()
    order = np.random.default_rng(seed)
    times = [[[] for _ in cases] for _ in cands]
    try:
        for r in range(rounds):
            for i in order.permutation(len(cands)):
                c = cands[i]
                core.set_blocking(**c)
                for j, (_, (fn, _, _)) in enumerate(cases):
                    fn()  # warm: the buffers the new blocking touches
                    times[i][j].append(min(seconds_per_call(fn, timer) for _ in range(reps)))
            if progress:
                progress(f"  round {r + 1}/{rounds} of {len(cands)} candidates")
    finally:
        core.set_blocking()  # back to the derived choice
    return [[min(t) for t in row] for row in times]


def score(row, base):
    """Geometric mean of time / the derived choice's time over the cases."""
    return math.exp(sum(math.log(t / b) for t, b in zip(row, base)) / len(row))


def sweep_group(group, all_shapes, rounds=3, final_rounds=7, top=3, progress=None,
                timer=time.perf_counter):
    derived = _derived()
    cases = [(n, s) for n, s in all_shapes.items() if group in s[2]]
    cands = candidates(group, derived)
    if progress:
        progress(f"{group}: {len(cands)} candidates x {len(cases)} shapes x {rounds} rounds")
    grid = time_grid(cands, cases, rounds, progress, timer=timer)
    scores = [score(row, grid[0]) for row in grid]
    order = sorted(range(len(cands)), key=lambda i: scores[i])
    finalists = [0] + [i for i in order if i != 0][:top]
    if progress:
        progress(f"{group}: head to head, derived against the grid's best {top}")
    final = time_grid([cands[i] for i in finalists], cases, final_rounds, progress, timer=timer)
    final_scores = [score(row, final[0]) for row in final]
    best = min(range(len(finalists)), key=lambda i: final_scores[i])
    return {
        "group": group,
        "shapes": [n for n, _ in cases],
        "derived": derived,
        "derived_ms": [t * 1e3 for t in final[0]],
        "derived_gflops": [s[1] / t / 1e9 for (_, s), t in zip(cases, final[0])],
        "grid": [{"blocking": cands[i], "score": scores[i], "ms": [t * 1e3 for t in grid[i]]}
                 for i in order],
        "best": cands[finalists[best]],
        "best_ms": [t * 1e3 for t in final[best]],
        # derived time / best time: 1.0 when the derived choice is the best
        "derived_over_best": 1.0 / final_scores[best],
    }


GROUPS = ("kernel", "gemm", "prefetch")


def run(groups=GROUPS, H=512, N=64, T=20, threads=1, rounds=3, final_rounds=7,
        progress=print):
    c = config()
    b = _core().blocking()
    progress(f"timer: {'thread CPU time' if threads == 1 else 'wall time'}; "
             f"cpu path {c['cpu_path']}; caches L1d {b['l1d'] // 1024} KB, L2 {b['l2'] // 1024} KB, "
             f"L3 {b['l3'] // 1024} KB ({b['cache_source']}); {b['vregs']} vector registers; "
             f"{threads} thread(s)")
    progress("derived:\n  " + b["why"].replace("\n", "\n  "))
    all_shapes = shapes(H=H, N=N, T=T, threads=threads)
    timer = clock(threads)

    def probe():  # GFLOP/s of the FMA probe by the same timer as the cases
        w0, t0 = time.perf_counter(), timer()
        gflops = runtime.c_ops().probe_peak_gflops(threads, 0.2)
        return gflops * (time.perf_counter() - w0) / max(timer() - t0, 1e-9)
    peak = [probe() for _ in range(3)]
    results = [sweep_group(g, all_shapes, rounds, final_rounds, progress=progress, timer=timer)
               for g in groups]
    peak += [probe() for _ in range(3)]
    for g in results:  # the fastest probe: the least disturbed, as the timings
        g["derived_pct_peak"] = [100 * v / max(peak) for v in g["derived_gflops"]]
    return {"cpu_path": c["cpu_path"], "threads": threads, "peak_gflops": max(peak),
            "timer": "thread CPU time" if threads == 1 else "wall time",
            "caches": {k: b[k] for k in ("l1d", "l2", "l3", "cache_source")},
            "vregs": b["vregs"], "why": b["why"], "groups": results}


def format_report(report, show=8):
    lines = []
    for g in report["groups"]:
        lines.append(f"\n{g['group']} group, shapes: {', '.join(g['shapes'])}")
        lines.append(f"| blocking | score (time / derived) | ms per shape |")
        lines.append("|---|---|---|")
        for row in g["grid"][:show]:
            mark = " (derived)" if row["blocking"] == g["derived"] else ""
            lines.append(f"| {_label(row['blocking'])}{mark} | {row['score']:.3f} | "
                         + " / ".join(f"{t:.2f}" for t in row["ms"]) + " |")
        worst = g["grid"][-1]
        lines.append(f"| ... worst: {_label(worst['blocking'])} | {worst['score']:.3f} | "
                     + " / ".join(f"{t:.2f}" for t in worst["ms"]) + " |")
        verdict = "within" if g["derived_over_best"] <= 1.05 else "NOT within"
        lines.append(f"derived  {_label(g['derived'])}: "
                     + " / ".join(f"{t:.2f}" for t in g["derived_ms"]) + " ms ("
                     + " / ".join(f"{v:.0f}" for v in g["derived_gflops"]) + " GFLOP/s; "
                     + " / ".join(f"{v:.0f}" for v in g["derived_pct_peak"])
                     + f" % of the FMA peak, {report['peak_gflops']:.0f} GFLOP/s)")
        lines.append(f"best     {_label(g['best'])}: "
                     + " / ".join(f"{t:.2f}" for t in g["best_ms"]) + " ms")
        lines.append(f"derived / best = {g['derived_over_best']:.3f} "
                     f"({verdict} 5 % of the sweep's best, head to head)")
    return "\n".join(lines)


def add_arguments(parser, standalone=False):
    """The sweep's options; standalone (benchmarks/tune_blocking.py) also adds
    the shape options that ``rnncore bench`` already has (--hidden, --batch,
    --steps, --threads, --json: with --tune their first values are used)."""
    if standalone:
        parser.add_argument("--hidden", nargs="+", type=int, help="H = I of the shapes (512)")
        parser.add_argument("--batch", nargs="+", type=int, help="N of the shapes (64)")
        parser.add_argument("--steps", type=int, help="T of the shapes (20)")
        parser.add_argument("--threads", nargs="+", type=int, help="threads (1)")
        parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS),
                        help="--tune: parameter groups to sweep (default: all)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="--tune: alternating rounds of the grid (default 3)")
    parser.add_argument("--final-rounds", type=int, default=7,
                        help="--tune: head-to-head rounds, derived against the grid's best 3 "
                             "(default 7)")


def main_from_args(args):
    if runtime.c_ops() is None:
        raise SystemExit("rnncore bench --tune: needs the C extension, which failed to import "
                         f"({runtime.CORE_ERROR})")
    first = lambda v, default: default if v is None else v[0] if isinstance(v, list) else v  # noqa: E731
    H, N = first(args.hidden, 512), first(args.batch, 64)
    T, threads = first(args.steps, 20), first(args.threads, 1)
    if min(H, N, T, threads, args.rounds, args.final_rounds) < 1:
        raise SystemExit("rnncore bench --tune: --hidden, --batch, --steps, --threads, --rounds "
                         "and --final-rounds must be >= 1")
    report = run(args.groups, H, N, T, threads, args.rounds, args.final_rounds,
                 progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_report(report))
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="tune_blocking", description=__doc__.split("\n\n")[0])
    add_arguments(p, standalone=True)
    return main_from_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
