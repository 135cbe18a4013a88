"""Per-node times of rnncore.from_onnx on the model of bench_onnx_lm.py
(T = 35), medians over --repeat runs after a warm-up:

    python benchmarks/profile_onnx_lm.py --threads 1 --batch 1 64 [--repeat 5]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_onnx_lm import T, V, export  # noqa: E402


def profile(session, feeds, repeat):
    """Per-step medians (ms) and the median whole run: every step of the
    session's graph (rnncore.interop.graph) timed by wrapping its run."""
    spent = defaultdict(list)
    steps = session.graph.steps

    def timed(step, run):
        def wrapper(values):
            t0 = time.perf_counter()
            out = run(values)
            spent[f"{step.op_type} {step.name}"].append((time.perf_counter() - t0) * 1e3)
            return out
        return wrapper

    for step in steps:
        step.run = timed(step, step.run)
    try:
        session.run(None, feeds)
        spent.clear()
        totals = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            session.run(None, feeds)
            totals.append((time.perf_counter() - t0) * 1e3)
    finally:
        for step in steps:
            del step.run  # the class's method again
    return {k: statistics.median(v[-repeat:]) for k, v in spent.items()}, statistics.median(totals)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    import rnncore
    rnncore.set_num_threads(a.threads)
    path = os.path.join(tempfile.mkdtemp(), "lm.onnx")
    export(path)
    session = rnncore.from_onnx(path)
    for N in a.batch:
        ids = np.random.default_rng(0).integers(0, V, (T, N))
        nodes, total = profile(session, {"ids": ids}, a.repeat)
        print(f"N = {N}, {a.threads} thread(s): {total:.2f} ms in all")
        for k, ms in sorted(nodes.items(), key=lambda kv: -kv[1]):
            if ms >= 0.01:
                print(f"  {ms:8.2f} ms  {k}")
        print(f"  {total - sum(nodes.values()):8.2f} ms  (between nodes)")


if __name__ == "__main__":
    main()
