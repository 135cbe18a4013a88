"""One full language-model training step, rnncore against PyTorch.

The model of issue 5's speed target: embedding (10k words, 512) -> 2 x 512
LSTM -> linear 512 -> 10k -> softmax cross-entropy (sum over the steps of the
per-step mean, Zaremba's loss), N = 64, T = 35, backward, global-norm clip 5
and a plain SGD update. Each backend runs in its own process (its own thread
pool, no shared caches); the parent alternates rounds between them and
reports medians and the ratio.

    python benchmarks/bench_lm.py --threads 1 2 --rounds 5 --repeat 3 [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

V, E, H, L, T, N = 10000, 512, 512, 2, 35, 64


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, N)), rng.integers(0, V, (T, N))


def rnncore_step():
    import rnncore
    vocab = rnncore.Vocabulary([f"w{i}" for i in range(V - 1)] + ["<unk>"], "word")
    lm = rnncore.LanguageModel(vocab, "lstm", E, H, L, init_scale=0.05, seed=0)
    opt = rnncore.optim.SGD(lm, lr=0.1)
    x, y = data()

    def step():
        lm.train_step(x, y)
        rnncore.optim.clip_grad_norm(lm, 5.0)
        opt.step()
        lm.zero_grad()
    return step


def torch_step():
    import torch
    torch.manual_seed(0)
    emb, rnn, dec = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, L), torch.nn.Linear(H, V)
    params = [*emb.parameters(), *rnn.parameters(), *dec.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    x, y = (torch.tensor(a) for a in data())

    def step():
        opt.zero_grad()
        out, _ = rnn(emb(x))
        nll = torch.nn.functional.cross_entropy(dec(out).reshape(-1, V), y.reshape(-1),
                                                reduction="none")
        nll.reshape(T, N).mean(1).sum().backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
    return step


def worker(backend, threads):
    """Build the model, then answer each line 'k' on stdin with k timings (ms)."""
    if backend == "torch":
        import torch
        torch.set_num_threads(threads)
        step = torch_step()
    else:
        import rnncore
        rnncore.set_num_threads(threads)
        step = rnncore_step()
    step()  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps(times), flush=True)


def start(backend, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), RNNCORE_BACKEND="c")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", backend,
                             "--threads", str(threads)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.stdout.readline().strip() == "ready", f"{backend} worker failed"
    return proc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3, help="steps per round")
    p.add_argument("--json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.threads[0])
    rows = []
    for t in a.threads:
        procs = {b: start(b, t) for b in ("rnncore", "torch")}
        times = {b: [] for b in procs}
        for _ in range(a.rounds):  # alternate: both see the same machine noise
            for b, proc in procs.items():
                proc.stdin.write(f"{a.repeat}\n")
                proc.stdin.flush()
                times[b] += json.loads(proc.stdout.readline())
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
        med = {b: statistics.median(v) for b, v in times.items()}
        rows.append({"threads": t, "ms": med, "steps": len(times["rnncore"]),
                     "speedup": med["torch"] / med["rnncore"]})
        print(f"threads {t}: rnncore {med['rnncore']:.0f} ms, torch {med['torch']:.0f} ms, "
              f"x{rows[-1]['speedup']:.2f} (median of {rows[-1]['steps']} steps each)",
              flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": dict(V=V, E=E, H=H, layers=L, T=T, N=N), "rows": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
