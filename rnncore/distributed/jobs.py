"""The client side: connect to a cluster, check the model on every worker,
submit the tasks, follow them with a progress bar, reduce the results; and
the local twins, which run the very same tasks in this process.

Language models (LanguageModel): evaluate, score, generate; translation
models (Seq2Seq): translate. A job given the other kind refuses it, naming
the model and both kinds.

Exactness. A chunk's result is a pair (summed nll as a float64, token
count) that depends only on the file, the model and the chunk boundaries
(tasks.stream_nll; the kernels give the same bits at every thread count).
Counts add exactly; the nll sums are added with math.fsum, the correctly
rounded sum of the parts whatever their order. So evaluate() and
evaluate_local() with the same chunk_tokens and context_tokens return the
same numbers to the last bit, whichever worker ran which chunk and however
often a chunk was re-run after a worker died (each chunk's future has one
result, taken once).
"""
import contextlib
import math
import os

import numpy as np
from tqdm import tqdm

from ..files import DEFAULT_MODEL, load
from ..lm import LanguageModel
from ..seq2seq import Seq2Seq
from . import models, tasks

__all__ = ["connect", "evaluate", "evaluate_local", "score", "score_local", "generate",
           "generate_local", "translate", "translate_local", "DEFAULT_CHUNK_TOKENS",
           "DEFAULT_CONTEXT_TOKENS", "DEFAULT_LINES_PER_TASK"]

# 16k tokens are ~1.3 s of the embedded 2 x 512 GRU on one core (12k
# tokens/s), against a scheduler overhead of a few ms per task (measured in
# benchmarks/RESULTS.md): well under 2 %, with enough chunks per worker
# (96 over PTB test + Tiny Shakespeare) to keep two or twenty busy to the end
DEFAULT_CHUNK_TOKENS = 16384
# the state of a chunk warms up over this many tokens before its first
# prediction (0.8 % more recurrent work at the default chunk size)
DEFAULT_CONTEXT_TOKENS = 128
# translation: a beam search of a sentence costs milliseconds to tenths of a
# second, so a few default batches (64 sentences) per task amortise the
# scheduler's few ms and still spread a test set over many workers
DEFAULT_LINES_PER_TASK = 256


@contextlib.contextmanager
def connect(address):
    """A dask.distributed Client for `address`: a scheduler address
    ('tcp://host:8786'), or 'local:N' for a LocalCluster of N worker
    processes of one thread each on this machine (closed after the block)."""
    from distributed import Client, LocalCluster
    if address.startswith("local:"):
        try:
            n = int(address[len("local:"):])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--scheduler local:N needs N >= 1 workers, got {address!r}")
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            yield client
    else:
        with Client(address) as client:
            yield client


def _paths(paths):
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no input file")
    return paths


def _local_model(model, expect=LanguageModel):
    """The model a local twin runs (the same sources as the cluster's),
    refused unless an `expect`."""
    if isinstance(model, models.MODELS):
        return models.check_kind(model, expect, "the model given")
    if isinstance(model, (bytes, bytearray, memoryview)):
        return models.load_bytes(bytes(model), "model bytes", expect)
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be None, a path, bytes, a LanguageModel or a Seq2Seq, got "
                        f"{type(model).__name__}")
    path = DEFAULT_MODEL if model is None else os.fspath(model)
    return models.check_kind(load(path), expect, path)


def _check_threads(threads):
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")


def _prepare(client, model, expect=LanguageModel):
    """``(ref, data)`` for tasks: the model loaded, hash-checked and
    kind-checked (an `expect`) on every worker now (a refusal names each
    failing worker); bytes scattered once to all of them (data is then their
    future; workers that join later fetch it from a peer)."""
    ref, data = models.source(model, expect)
    if data is not None:
        [data] = client.scatter([data], broadcast=True, hash=False)
    report = client.run(_prepare_worker, ref, data if data is None else data.key, expect)
    failed = {w: r for w, r in report.items() if r is not None}
    if failed:
        kinds = {r[0] for r in failed.values()}
        kind = {"FileNotFoundError": FileNotFoundError,
                "ModelMismatchError": models.ModelMismatchError,
                "TypeError": TypeError}.get(kinds.pop() if len(kinds) == 1 else "", ValueError)
        messages = list(dict.fromkeys(r[1] for r in failed.values()))  # one of each
        raise kind(f"{ref.label()} refused on {len(failed)} of {len(report)} workers: "
                   + "; ".join(messages))
    return ref, data


def _prepare_worker(ref, data_key, expect, dask_worker=None):
    """Run on each worker by client.run: load the model into the cache (the
    scattered bytes are in the worker's memory under data_key) and check its
    kind. None, or (error type, message)."""
    try:
        data = None if data_key is None else dask_worker.data[data_key]
        models.get(ref, data, place=f"worker {dask_worker.address}",  # no task context here
                   expect=expect)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return None


def _gather(client, futures, labels, progress, desc):
    """The futures' results in their order, with a bar over tasks
    (progress=True) or progress(done, total) called after each; the first
    failure cancels the rest and is raised, naming its task."""
    from distributed import as_completed
    results, where = [None] * len(futures), {f.key: i for i, f in enumerate(futures)}
    bar = tqdm(total=len(futures), desc=desc, unit="task", disable=progress is not True)
    try:
        for done, fut in enumerate(as_completed(futures), 1):
            i = where[fut.key]
            try:
                results[i] = fut.result()
            except Exception as exc:
                # the tasks' own errors name their file and line or chunk; Dask's
                # (KilledWorker: a task that killed its workers) get the task's name
                if not type(exc).__module__.startswith("distributed"):
                    raise
                raise tasks.TaskError(f"{labels[i]}: {type(exc).__name__}: {exc}") from exc
            bar.update()
            if callable(progress):
                progress(done, len(futures))
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
    return results


def _reduce(plans, parts, chunk_tokens, context_tokens):
    """The job's dict from the plans and the chunks' results (in chunk order)."""
    total = math.fsum(p["nll"] for p in parts)
    out = tasks.summary(total, sum(p["tokens"] for p in parts), plans[0]["level"])
    by_worker = {p["worker"]: p for p in parts}  # one chunk's report per process
    per_task = sorted({p["threads"] for p in parts})
    out.update(files=len(plans), chunks=len(parts), chunk_tokens=chunk_tokens,
               context_tokens=context_tokens, workers=len(by_worker),
               threads_per_task=per_task[0] if len(per_task) == 1 else per_task,
               threads=sum(p["threads"] * p["at_once"] for p in by_worker.values()))
    return out


def _check_chunking(chunk_tokens, context_tokens, threads):
    _check_threads(threads)
    if chunk_tokens is not None and (not isinstance(chunk_tokens, int) or chunk_tokens < 1):
        raise ValueError(f"chunk_tokens must be a positive integer or None, got {chunk_tokens!r}")
    if not isinstance(context_tokens, int) or context_tokens < 0:
        raise ValueError(f"context_tokens must be a non-negative integer, got {context_tokens!r}")


def evaluate(client, paths, model=None, *, chunk_tokens=DEFAULT_CHUNK_TOKENS,
             context_tokens=DEFAULT_CONTEXT_TOKENS, threads=None, progress=False):
    """Loss, perplexity and bits per token of text files on a Dask cluster:
    the dict of ``rnncore eval --json`` plus how it ran (files, chunks,
    chunk_tokens, context_tokens, workers: processes that ran chunks,
    threads_per_task, threads: kernel threads in use at once over those
    workers).

    Each file is cut into chunks of chunk_tokens predicted tokens, each
    evaluated from a zero state warmed up over the context_tokens before it
    (rnncore.distributed.corpus); chunk_tokens=None: one chunk per file,
    its whole stream with the state carried (LanguageModel.evaluate).
    Equal to the last bit to :func:`evaluate_local` with the same chunking.
    The workers read the files themselves (paths as seen by the workers),
    each only its chunk's lines. model: None (the embedded model), a path,
    bytes or a LanguageModel (see rnncore.distributed.models). threads: kernel
    threads per task (None: one per task, the worker's threads running
    tasks side by side). progress: True for a bar over tasks, or a
    callable(done, total)."""
    _check_chunking(chunk_tokens, context_tokens, threads)
    paths = _paths(paths)
    ref, data = _prepare(client, model)
    plan_futures = [client.submit(tasks.plan_file, ref, data, p, chunk_tokens, context_tokens,
                                  pure=False) for p in paths]
    plans = _gather(client, plan_futures, [f"{p}: planning" for p in paths], False, "plan")
    chunks = [c for plan in plans for c in plan["chunks"]]
    futures = [client.submit(tasks.run_chunk, ref, data, c, threads, pure=False) for c in chunks]
    parts = _gather(client, futures, [c.describe() for c in chunks], progress, "chunks")
    return _reduce(plans, parts, chunk_tokens, context_tokens)


def evaluate_local(paths, model=None, *, chunk_tokens=DEFAULT_CHUNK_TOKENS,
                   context_tokens=DEFAULT_CONTEXT_TOKENS, threads=None, progress=False):
    """:func:`evaluate` in this process: the same chunks through the same
    task function, so the same numbers. threads: kernel threads (None: the
    process's setting, rnncore.get_num_threads())."""
    _check_chunking(chunk_tokens, context_tokens, threads)
    paths, lm = _paths(paths), _local_model(model)
    plans = [tasks.plan_file(None, None, p, chunk_tokens, context_tokens, model=lm)
             for p in paths]
    chunks = [c for plan in plans for c in plan["chunks"]]
    parts = []
    with tqdm(total=len(chunks), desc="chunks", unit="task", disable=progress is not True) as bar:
        for done, c in enumerate(chunks, 1):
            parts.append(tasks.run_chunk(None, None, c, threads, model=lm))
            bar.update()
            if callable(progress):
                progress(done, len(chunks))
    return _reduce(plans, parts, chunk_tokens, context_tokens)


def _partitions(lines, lines_per_task):
    return [lines[i:i + lines_per_task] for i in range(0, len(lines), lines_per_task)]


def _scatter_parts(client, lines, lines_per_task):
    """The lines' partitions scattered as futures under fresh keys
    (hash=False): content-hashed keys are shared by a second job on the
    same lines, whose tasks then race the first job's release of them
    ("cancelled for reason: lost dependencies", seen translating the same
    lines twice on one client)."""
    return client.scatter(_partitions(lines, lines_per_task), hash=False)


def score(client, lines_or_bag, model=None, *, lines_per_task=1000, threads=None):
    """Per-line log-probability (nats) and token count, as a dask Bag of
    ``{"logprob", "tokens"}`` in the order of the lines (``.compute()`` for
    the list): each line scored as the start of a text, its line end
    included (tasks.score_lines). lines_or_bag: a sequence of str (cut into
    tasks of lines_per_task lines) or a dask Bag of str (one task per
    partition). Equal to :func:`score_local`."""
    import dask
    import dask.bag as db
    _check_threads(threads)
    ref, data = _prepare(client, model)
    if isinstance(lines_or_bag, db.Bag):
        parts = lines_or_bag.to_delayed()
        labels = [f"partition {k}, line " for k in range(len(parts))]
        firsts = [0] * len(parts)
    else:
        lines = list(lines_or_bag)
        firsts = list(range(0, len(lines), lines_per_task))
        parts = _scatter_parts(client, lines, lines_per_task) if lines else []
        labels = ["line "] * len(parts)
    scored = [dask.delayed(tasks.score_lines, pure=False)(ref, data, p, threads, first, label)
              for p, first, label in zip(parts, firsts, labels)]
    if not scored:
        return db.from_sequence([], npartitions=1)
    return db.from_delayed(scored)


def score_local(lines, model=None, *, threads=None):
    """:func:`score` in this process: a list of ``{"logprob", "tokens"}``."""
    _check_threads(threads)
    return tasks.score_lines(None, None, list(lines), threads, model=_local_model(model))


def _sampling(sampling):
    if "on_token" in sampling:
        raise TypeError("on_token is not available for generation on a cluster")
    seed = sampling.pop("seed", None)
    if seed is None:  # fresh, as LanguageModel.generate; one base for all prompts
        seed = int(np.random.SeedSequence().entropy)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return seed, sampling


def generate(client, prompts, model=None, *, threads=None, progress=False, **sampling):
    """LanguageModel.generate for each prompt on the cluster, the texts in
    the prompts' order. sampling: max_tokens, temperature, top_k, top_p,
    num_samples, seed. Prompt i draws from a generator seeded by (seed, i),
    so a given seed gives the same texts whatever the number of workers,
    and the same as :func:`generate_local`."""
    _check_threads(threads)
    prompts = list(prompts)
    seed, sampling = _sampling(dict(sampling))
    ref, data = _prepare(client, model)
    futures = [client.submit(tasks.generate_one, ref, data, i, p, seed, sampling, threads,
                             pure=False) for i, p in enumerate(prompts)]
    return _gather(client, futures, [f"prompt {i}" for i in range(len(prompts))], progress,
                   "prompts")


def generate_local(prompts, model=None, *, threads=None, **sampling):
    """:func:`generate` in this process (the same seeds, the same texts)."""
    _check_threads(threads)
    seed, sampling = _sampling(dict(sampling))
    lm = _local_model(model)
    return [tasks.generate_one(None, None, i, p, seed, sampling, threads, model=lm)
            for i, p in enumerate(prompts)]


_DECODING = {"nbest", "sample", "temperature", "top_k", "top_p", "batch_size"}


def _translation(beam_size, max_len_a, max_len_b, alpha, lines_per_task, threads, sampling):
    """``(seed, decoding)``: the checked arguments of translate, decoding
    the keywords of Seq2Seq.translate but the seed."""
    _check_threads(threads)
    if not isinstance(lines_per_task, int) or lines_per_task < 1:
        raise ValueError(f"lines_per_task must be a positive integer, got {lines_per_task!r}")
    unknown = sorted(set(sampling) - _DECODING - {"seed"})
    if unknown:
        raise TypeError(f"translate got unexpected keyword arguments {unknown} (decoding: "
                        f"{sorted(_DECODING | {'seed'})})")
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
    seed, decoding = _sampling(dict(sampling))
    decoding.update(beam_size=beam_size, max_len_a=max_len_a, max_len_b=max_len_b, alpha=alpha)
    return seed, decoding


def _lines(lines):
    if isinstance(lines, str):
        raise TypeError("lines must be a sequence of strings, not one string")
    return list(lines)


def translate(client, lines, model, *, beam_size=5, max_len_a=1.5, max_len_b=10, alpha=0.6,
              lines_per_task=DEFAULT_LINES_PER_TASK, threads=None, progress=False, **sampling):
    """Seq2Seq.translate of each line on the cluster: the translations (str;
    with nbest > 1 lists of (str, score)) in the lines' order. The lines are
    cut into tasks of lines_per_task, each decoded in batches of batch_size
    (64) as Seq2Seq.translate does; a line that is empty or only blanks gives
    an empty translation ([] with nbest > 1).

    Decoding: beam search of beam_size (1: greedy), at most max_len_a *
    source tokens + max_len_b target tokens, GNMT length penalty alpha;
    sampling keywords: nbest, sample, temperature, top_k, top_p, seed,
    batch_size. Equal to :func:`translate_local` and to
    ``model.translate(non-empty lines)`` whatever the number of workers or
    lines_per_task (a batch decodes as its sentences one at a time would;
    with nbest > 1 the scores may differ in the last bits between
    batchings). With sample=True, line i is sampled alone from a generator
    seeded by (seed, i), i counting every line: ``model.translate([line],
    sample=True, seed=[seed, i])``, the same whatever the workers (seed
    None: a fresh one for the job).

    model: a path, bytes or a Seq2Seq, loaded once per worker by its hash
    (rnncore.distributed.models); a language model is refused (TypeError).
    threads: kernel threads per task (None: one per task). progress: True
    for a bar over tasks, or a callable(done, total)."""
    seed, decoding = _translation(beam_size, max_len_a, max_len_b, alpha, lines_per_task,
                                  threads, sampling)
    lines = _lines(lines)
    ref, data = _prepare(client, model, Seq2Seq)
    if not lines:
        return []
    firsts = list(range(0, len(lines), lines_per_task))
    parts = _scatter_parts(client, lines, lines_per_task)
    futures = [client.submit(tasks.translate_lines, ref, data, part, first, seed, decoding,
                             threads, pure=False) for part, first in zip(parts, firsts)]
    labels = [f"lines {f + 1}-{min(f + lines_per_task, len(lines))}" for f in firsts]
    return [t for part in _gather(client, futures, labels, progress, "lines") for t in part]


def translate_local(lines, model, *, beam_size=5, max_len_a=1.5, max_len_b=10, alpha=0.6,
                    lines_per_task=DEFAULT_LINES_PER_TASK, threads=None, progress=False,
                    **sampling):
    """:func:`translate` in this process: the same tasks, the same
    translations. threads: kernel threads (None: the process's setting)."""
    seed, decoding = _translation(beam_size, max_len_a, max_len_b, alpha, lines_per_task,
                                  threads, sampling)
    lines, s2s = _lines(lines), _local_model(model, Seq2Seq)
    firsts = list(range(0, len(lines), lines_per_task))
    out = []
    with tqdm(total=len(firsts), desc="lines", unit="task", disable=progress is not True) as bar:
        for done, first in enumerate(firsts, 1):
            out += tasks.translate_lines(None, None, lines[first:first + lines_per_task], first,
                                         seed, decoding, threads, model=s2s)
            bar.update()
            if callable(progress):
                progress(done, len(firsts))
    return out
