"""A whole exported model, rnncore.from_onnx against ONNX Runtime on the same
file: torch.onnx.export of Embedding(10k, 512) -> 2 x LSTM(512) -> Linear(10k)
-> log_softmax, run on T = 35 token ids at batch 1 and 64. Each backend runs
in its own process; the parent alternates rounds between them and reports
medians and the ratio.

    python benchmarks/bench_onnx_lm.py --threads 1 --rounds 4 --repeat 5 [--json out.json]
"""
import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

V, E, H, L, T = 10000, 512, 512, 2, 35


def export(path):
    import torch

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H, num_layers=L)
            self.out = torch.nn.Linear(H, V)

        def forward(self, ids):
            y, _ = self.rnn(self.emb(ids))
            return torch.log_softmax(self.out(y), -1)

    torch.manual_seed(0)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LM().eval(), (torch.zeros(T, 1, dtype=torch.int64),), f, dynamo=False,
                          input_names=["ids"], output_names=["logp"],
                          dynamic_axes={"ids": {0: "T", 1: "N"}})
    with open(path, "wb") as out:
        out.write(f.getvalue())


def worker(backend, path, threads, N, repeat):
    ids = np.random.default_rng(0).integers(0, V, (T, N))
    if backend == "rnncore":
        import rnncore
        rnncore.set_num_threads(threads)
        session = rnncore.from_onnx(path)
    else:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    session.run(None, {"ids": ids})  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        session.run(None, {"ids": ids})
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        backend, path, threads, N, repeat = a.worker
        return worker(backend, path, int(threads), int(N), int(repeat))
    path = os.path.join(tempfile.mkdtemp(), "lm.onnx")
    export(path)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    report = {"threads": a.threads, "T": T, "cases": {}}
    for N in a.batch:
        ms = {"rnncore": [], "onnxruntime": []}
        for _ in range(a.rounds):
            for backend in ms:
                out = subprocess.run([sys.executable, __file__, "--worker", backend, path,
                                      str(a.threads), str(N), str(a.repeat)],
                                     capture_output=True, text=True, env=env, check=True)
                ms[backend] += json.loads(out.stdout.strip().splitlines()[-1])
        med = {k: statistics.median(v) for k, v in ms.items()}
        report["cases"][f"onnx_lm_t{T}_n{N}"] = {"ms": med, "all_ms": ms}
        print(f"N = {N:3d}: rnncore {med['rnncore']:8.2f} ms, ONNX Runtime "
              f"{med['onnxruntime']:8.2f} ms, ratio ort/rnncore x{med['onnxruntime'] / med['rnncore']:.2f}"
              f" ({a.threads} thread(s))")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
