"""The three GEMMs of a 10k-word decoder (2240 rows = N 64 x T 35, H 512):
rnncore's rnc_gemm against torch.mm (MKL), in one process, alternating,
best of --repeat. Both thread pools are set to --threads.

    python benchmarks/bench_decoder_gemm.py [--threads 1] [--repeat 4]
"""
import argparse
import time

import numpy as np
import torch

import rnncore
from rnncore.engine import runtime

M, H, V = 2240, 512, 10000


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rnncore.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    h = rng.standard_normal((M, H), dtype=np.float32)
    w = rng.standard_normal((V, H), dtype=np.float32)
    dz = rng.standard_normal((M, V), dtype=np.float32)
    th, tw, tdz = map(torch.from_numpy, (h, w, dz))
    cases = {  # name: (rnncore, torch); out arrays preallocated, as in the LM step
        "logits h W^T (K = 512)": (lambda o=np.empty((M, V), np.float32): runtime.matmul(h, w.T, out=o),
                                   lambda: torch.mm(th, tw.T)),
        "weight gradient dz^T h (K = 2240)": (lambda o=np.empty((V, H), np.float32): runtime.matmul(dz.T, h, out=o),
                                              lambda: torch.mm(tdz.T, th)),
        "input gradient dz W (K = 10k)": (lambda o=np.empty((M, H), np.float32): runtime.matmul(dz, w, out=o),
                                          lambda: torch.mm(tdz, tw)),
    }
    gflop = 2 * M * H * V / 1e9
    print(f"threads {a.threads}, best of {a.repeat}")
    for name, fns in cases.items():
        for f in fns:
            f()  # warm-up
        times = [[], []]
        for _ in range(a.repeat):
            for i, f in enumerate(fns):
                t0 = time.perf_counter()
                f()
                times[i].append(time.perf_counter() - t0)
        best = [min(t) for t in times]
        print(f"{name:36s} rnncore {best[0] * 1e3:6.1f} ms ({gflop / best[0]:4.0f} GFLOP/s)  "
              f"torch {best[1] * 1e3:6.1f} ms ({gflop / best[1]:4.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
