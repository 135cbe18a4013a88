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
    from rnncore.interop import onnx_import as oi
    spent = defaultdict(list)
    run_op, rec_run = oi._run_op, oi._RecurrentNode.run

    def timed_op(node, attrs, opset, values):
        t0 = time.perf_counter()
        out = run_op(node, attrs, opset, values)
        spent[f"{node.op_type} {node.name}"].append((time.perf_counter() - t0) * 1e3)
        return out

    def timed_rec(self, values):
        t0 = time.perf_counter()
        out = rec_run(self, values)
        spent[f"{self.node.op_type} {self.node.name}"].append((time.perf_counter() - t0) * 1e3)
        return out

    oi._run_op, oi._RecurrentNode.run = timed_op, timed_rec
    try:
        session.run(None, feeds)
        spent.clear()
        totals = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            session.run(None, feeds)
            totals.append((time.perf_counter() - t0) * 1e3)
    finally:
        oi._run_op, oi._RecurrentNode.run = run_op, rec_run
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
