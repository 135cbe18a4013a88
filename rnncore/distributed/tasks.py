"""What one task computes, on a Dask worker or in the local twins: the same
functions either way, so a distributed run and its local twin are the same
arithmetic on the same chunks (or lines, or prompts). Language models:
stream_nll, run_chunk, score_lines, generate_one; Seq2Seq models:
translate_lines.

Threads. Dask's nanny starts workers with ``OMP_NUM_THREADS=1``, which would
make rnncore's default one kernel thread whatever the worker was given. A
task sets the kernel threads explicitly instead: with ``threads=None`` one
per task, the worker running as many tasks at once as it has threads
(``threads_per_worker``: Dask's own parallelism); with ``threads=k``, k per
task, and at most ``nthreads // k`` (at least one) such tasks at a time per
worker (a semaphore), so the kernel threads stay within the worker's.
rnncore's thread setting is per process: the worker's is set to k.
"""
import contextlib
import math
import threading

import numpy as np

from ..engine import runtime
from ..engine.losses import rows_xent
from ..lm.text import bptt_batches
from ..seq2seq import Seq2Seq
from . import corpus, models

__all__ = ["TaskError", "stream_nll", "plan_file", "run_chunk", "score_lines", "generate_one",
           "translate_lines", "summary", "task_threads", "WINDOW"]

# the BPTT window of LanguageModel.evaluate's default (chunk=256): with the
# same window, a one-chunk file is that evaluation step for step
WINDOW = 256


class TaskError(RuntimeError):
    """A task failed; the message names the file and chunk (or the line or
    prompt) and the original error."""


def _worker():
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


_slots_lock = threading.Lock()
_slots = {}  # (threads per task, tasks at once) -> semaphore of this worker


@contextlib.contextmanager
def task_threads(threads):
    """Run the block with the kernel threads of one task (see the module
    docstring); yields ``(threads per task, tasks at once)``."""
    worker = _worker()
    if worker is None:  # a local twin: the process's setting, or `threads`
        with runtime.num_threads(threads) as used:
            yield used, 1
        return
    nthreads = worker.state.nthreads
    if threads is None:
        runtime.set_num_threads(1)
        yield 1, nthreads
        return
    at_once = max(1, nthreads // threads)
    with _slots_lock:
        sem = _slots.setdefault((threads, at_once), threading.BoundedSemaphore(at_once))
    with sem:
        runtime.set_num_threads(threads)
        yield threads, at_once


def stream_nll(model, ids, first, window=WINDOW):
    """``(nll, count)``: the summed negative log-likelihood (nats, float64)
    of predicting ``ids[first:]`` each from all of `ids` before it, from a
    zero state at ids[0]; ``ids[:first - 1]`` only warm the state up.
    With first = 1 this is LanguageModel.evaluate(ids) (batch_size 1)
    operation for operation: the same windows, sums and order."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if not 1 <= first < len(ids):
        raise ValueError(f"first must be in [1, {len(ids)}), got {first}")
    state = None
    if first > 1:  # the recurrent layer alone: the context's logits are not needed
        x = model._embed(ids[:first - 1])[:, None, :]
        _, state = model.rnn(x, None)
    data = ids[first - 1:].reshape(-1, 1)
    total, count = 0.0, 0
    for inputs, targets in bptt_batches(data, window):
        logits, state = model.forward(inputs, state)
        losses, _ = rows_xent(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), 1.0, False)
        total += float(losses.sum(dtype=np.float64))
        count += losses.size
    return total, count


def plan_file(ref, data, path, chunk_tokens, context, model=None):
    """``{"level", "tokens", "chunks"}``: corpus.plan of one file at the
    level of the job's model."""
    level = (models.get(ref, data) if model is None else model).vocab.level
    n, chunks = corpus.plan(path, level, chunk_tokens, context)
    return {"level": level, "tokens": n, "chunks": chunks}


def run_chunk(ref, data, chunk, threads=None, model=None):
    """One chunk's ``{"nll", "tokens", "worker", "threads", "at_once"}``
    (model: the LanguageModel itself, in the local twin)."""
    try:
        model = models.get(ref, data) if model is None else model
        with task_threads(threads) as (used, at_once):
            ids = corpus.read_chunk(chunk, model.vocab)
            nll, count = stream_nll(model, ids, chunk.start - chunk.first)
    except Exception as exc:
        raise TaskError(f"{chunk.describe()}: {type(exc).__name__}: {exc}") from exc
    if count != chunk.end - chunk.start:  # each token exactly once, or fail loudly
        raise TaskError(f"{chunk.describe()}: predicted {count} tokens, expected "
                        f"{chunk.end - chunk.start}")
    return {"nll": nll, "tokens": count, "worker": models.where(), "threads": used,
            "at_once": at_once}


def _start_id(vocab):
    """The token a text starts after (a line end), as LanguageModel.generate."""
    return vocab.index.get("<eos>", vocab.index.get("\n", 0))


def score_lines(ref, data, lines, threads=None, first_line=0, label="line ", model=None):
    """``[{"logprob", "tokens"}, ...]`` per line: the natural-log probability
    of the line's tokens (with its line end: words + <eos>, or characters
    + newline) as the start of a text (zero state after a line end)."""
    model = models.get(ref, data) if model is None else model
    vocab, out = model.vocab, []
    with task_threads(threads):
        for i, line in enumerate(lines):
            try:
                if not isinstance(line, str):
                    raise TypeError(f"lines must be str, got {type(line).__name__}")
                text = line if line.endswith("\n") else line + "\n"
                ids = np.concatenate([[_start_id(vocab)], vocab.encode(text)])
                nll, count = stream_nll(model, ids, 1)
            except Exception as exc:
                raise TaskError(f"{label}{first_line + i + 1}: {type(exc).__name__}: "
                                f"{exc}") from exc
            out.append({"logprob": -nll, "tokens": count})
    return out


def generate_one(ref, data, index, prompt, seed, sampling, threads=None, model=None):
    """LanguageModel.generate of prompt number `index`, its generator seeded
    from (seed, index): the text depends on the prompt's position, never on
    the worker or the order tasks run in."""
    model = models.get(ref, data) if model is None else model
    try:
        with task_threads(threads):
            return model.generate(prompt, seed=[seed, index], **sampling)
    except Exception as exc:
        raise TaskError(f"prompt {index}: {type(exc).__name__}: {exc}") from exc


def translate_lines(ref, data, lines, first, seed, decoding, threads=None, model=None):
    """Seq2Seq.translate of a task's lines (numbers first + 1, ... in the
    job): a line that is empty or blank gives "" ([] with nbest > 1), the
    others are decoded together in batches as Seq2Seq.translate does; with
    ``decoding["sample"]`` each line alone, from a generator seeded by
    (seed, its index in the job), so that a sample never depends on the
    lines beside it in its task."""
    model = models.get(ref, data, expect=Seq2Seq) if model is None else model
    for i, line in enumerate(lines):
        if not isinstance(line, str):
            raise TaskError(f"line {first + i + 1}: TypeError: lines must be str, got "
                            f"{type(line).__name__}")
    empty = [] if decoding.get("nbest", 1) > 1 else ""
    out = [empty] * len(lines)
    todo = [i for i, line in enumerate(lines) if line.strip()]
    with task_threads(threads):
        if decoding.get("sample"):
            for i in todo:
                try:
                    [out[i]] = model.translate([lines[i]], **decoding, seed=[seed, first + i])
                except Exception as exc:
                    raise TaskError(f"line {first + i + 1}: {type(exc).__name__}: {exc}") from exc
        elif todo:
            try:
                done = model.translate([lines[i] for i in todo], **decoding)
            except Exception as exc:
                raise TaskError(f"lines {first + 1}-{first + len(lines)}: "
                                f"{type(exc).__name__}: {exc}") from exc
            for i, text in zip(todo, done):
                out[i] = text
    return out


def summary(total, count, level):
    """The dict of ``rnncore eval --json``: loss (nats per token),
    perplexity, bits_per_token, tokens (and bits_per_char for a character
    model), from the summed nll and the token count."""
    if count == 0:
        raise ValueError("no token to predict (every file has fewer than 2 tokens)")
    loss = total / count
    out = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
           "bits_per_token": loss / math.log(2), "tokens": count}
    if level == "char":
        out["bits_per_char"] = out["bits_per_token"]
    return out
