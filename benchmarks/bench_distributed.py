"""rnncore.distributed.evaluate on LocalClusters against local runs: PTB
test + Tiny Shakespeare with the embedded model (or --model), the same
chunks everywhere (the results must agree to the last bit; checked).

Runs, repeated in alternation (the median of each is reported, so a noisy
neighbour slows every configuration alike):
  local-1t    evaluate_local(threads=1): one process, one kernel thread
  cluster-1x1 LocalCluster(n_workers=1, threads_per_worker=1)
  cluster-2x1 LocalCluster(n_workers=2, threads_per_worker=1)
  local-2t    evaluate_local(threads=2): one process, two kernel threads
  stream-2t   the whole stream of each file, state carried, 2 threads
              (what `rnncore eval` does without --chunk-tokens)
plus the scheduler's overhead per task (no-op tasks on the 2-worker cluster)
and the numbers of a projection to N machines.

    python benchmarks/bench_distributed.py --json out.json          # the full corpora
    python benchmarks/bench_distributed.py --fraction 0.1 --repeats 3 # a tenth of each file
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import tempfile
import time

import rnncore
import rnncore.distributed as rd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def _corpus(data, fraction, tmp):
    paths = [os.path.join(data, "ptb", "ptb.test.txt"),
             os.path.join(data, "tinyshakespeare", "input.txt")]
    if fraction >= 1:
        return paths
    out = []
    for p in paths:  # the first `fraction` of each file's lines
        with open(p, encoding="utf-8") as f:
            lines = f.readlines()
        q = os.path.join(tmp, os.path.basename(p))
        with open(q, "w", encoding="utf-8") as f:
            f.writelines(lines[:max(2, int(len(lines) * fraction))])
        out.append(q)
    return out


def _noop(i):
    return i


def _overhead(client, n=400):
    """Seconds of scheduler time per task: n no-op tasks through submit and
    gather (their compute is nothing, so it is all overhead), best of 3."""
    best = math.inf
    for r in range(3):
        t = time.perf_counter()
        futures = [client.submit(_noop, i, key=f"noop-{r}-{i}") for i in range(n)]
        client.gather(futures)
        best = min(best, (time.perf_counter() - t) / n)
        del futures
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DATA, help="the shared data folder (ptb/, tinyshakespeare/)")
    ap.add_argument("--model", default=None, help="model file (default: the embedded model)")
    ap.add_argument("--fraction", type=float, default=1.0, help="of each file's lines (default 1)")
    ap.add_argument("--chunk-tokens", type=int, default=rd.DEFAULT_CHUNK_TOKENS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        paths = _corpus(args.data, args.fraction, tmp)
        kw = dict(chunk_tokens=args.chunk_tokens)
        clusters, times, results = {}, {}, {}
        try:
            for name, n in (("cluster-1x1", 1), ("cluster-2x1", 2)):
                t = time.perf_counter()
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
                clusters[name] = (cluster, Client(cluster))
                times[name + " start-up"] = time.perf_counter() - t
            runs = {
                "local-1t": lambda: rd.evaluate_local(paths, args.model, threads=1, **kw),
                "cluster-1x1": lambda: rd.evaluate(clusters["cluster-1x1"][1], paths, args.model, **kw),
                "cluster-2x1": lambda: rd.evaluate(clusters["cluster-2x1"][1], paths, args.model, **kw),
                "local-2t": lambda: rd.evaluate_local(paths, args.model, threads=2, **kw),
                "stream-2t": lambda: rd.evaluate_local(paths, args.model, threads=2,
                                                       chunk_tokens=None),
            }
            samples = {name: [] for name in runs}
            for r in range(args.repeats):
                for name, run in runs.items():
                    t = time.perf_counter()
                    results[name] = run()
                    samples[name].append(time.perf_counter() - t)
                    print(f"repeat {r + 1} {name:12s} {samples[name][-1]:8.2f} s", flush=True)
            overhead = _overhead(clusters["cluster-2x1"][1])
        finally:
            for cluster, client in clusters.values():
                client.close()
                cluster.close()
    chunked = [results[n] for n in ("local-1t", "cluster-1x1", "cluster-2x1", "local-2t")]
    assert all(r["loss"] == chunked[0]["loss"] for r in chunked), "results differ"
    med = {name: statistics.median(s) for name, s in samples.items()}
    tokens = results["local-1t"]["tokens"]
    per_core = tokens / med["cluster-1x1"]
    task_seconds = args.chunk_tokens / per_core
    best_local_2t = min(med["local-2t"], med["stream-2t"])
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                       if ln.startswith("Model name")), platform.processor())
    out = {
        "machine": f"{model_name}, {os.cpu_count()} CPUs ({platform.machine()})",
        "load_average_at_end": os.getloadavg(),
        "rnncore": rnncore.__version__, "model": args.model or "embedded",
        "files": [os.path.basename(p) for p in paths], "fraction": args.fraction,
        "tokens": tokens, "chunks": results["local-1t"]["chunks"],
        "chunk_tokens": args.chunk_tokens, "repeats": args.repeats,
        "seconds": samples, "median_seconds": med, "startup_seconds": times,
        "speedup_2x1_over_1x1": med["cluster-1x1"] / med["cluster-2x1"],
        "cluster_2x1_over_best_local_2t": med["cluster-2x1"] / best_local_2t,
        "tokens_per_second_per_core": per_core,
        "scheduler_overhead_seconds_per_task": overhead,
        "overhead_fraction_at_chunk_tokens": overhead / task_seconds,
        "chunk_tokens_for_2pct_overhead": math.ceil(50 * overhead * per_core),
        "loss": results["local-1t"]["loss"], "stream_loss": results["stream-2t"]["loss"],
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
