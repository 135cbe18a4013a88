"""Corpus files cut into chunks of tokens, read as a stream.

A file's token stream is exactly what ``rnncore eval`` sees: the text as
``open(path, encoding="utf-8")`` reads it (universal newlines: ``\\r\\n`` and
``\\r`` become ``\\n``) tokenised by the model's Vocabulary. Files are read
line by line in binary and each line is decoded and translated on its own;
that gives the same tokens as the whole text because a cut after a ``\\n``
byte never splits a UTF-8 character nor a ``\\r\\n`` pair, and word-level
tokenisation (``splitlines``, ``split``, one ``<eos>`` per line) never joins
tokens across a ``\\n``.

Chunks (the unit of work; see :func:`plan`): with n tokens in a file, the
predicted positions 1 .. n-1 are cut into ranges ``[start, end)`` of
``chunk_tokens`` (the first token has nothing before it, as in
LanguageModel.evaluate). A chunk starts from a zero state, reads the
``context`` tokens before ``start - 1`` without scoring them (they only
warm the state up), then predicts every token of its range from all of the
chunk's tokens before it; the first one from token ``start - 1``, the last
of the previous chunk. So each token is predicted exactly once, by exactly
one chunk, and a chunk's result depends only on the file and the two
numbers, never on who computes it.

Memory: planning keeps one line and one record per chunk; reading a chunk
keeps its tokens and one line, whatever the size of the file.
"""
import collections
import os

import numpy as np

__all__ = ["Chunk", "plan", "read_chunk", "count_tokens", "decode_line"]


def decode_line(raw, path, line_no):
    """The text of one binary line as text-mode reading gives it (UTF-8,
    universal newlines); a clear error naming the file and line otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}, line {line_no}: not UTF-8 text ({exc})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def count_tokens(text, level):
    """len(Vocabulary.encode(text)) without building the ids (the same
    splitting rule as Vocabulary._split)."""
    if level == "char":
        return len(text)
    return sum(len(line.split()) + 1 for line in text.splitlines())


class Chunk(collections.namedtuple(
        "Chunk", "path index start end first offset token line stamp")):
    """One chunk of a file: predicts the file's tokens ``[start, end)``;
    reading begins at byte ``offset`` (a line start, line number ``line``,
    token ``token`` of the file) and keeps tokens from ``first`` (=
    max(0, start - 1 - context)) on. ``stamp`` (size, mtime_ns) is the
    file's at planning time: a file changed since is refused."""
    __slots__ = ()

    def describe(self):
        return (f"{self.path}: chunk {self.index} (tokens {self.start}..{self.end - 1}, "
                f"reading from line {self.line})")


def _stamp(path):
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns)


def plan(path, level, chunk_tokens=None, context=0):
    """``(n_tokens, [Chunk, ...])`` of one file: chunks of `chunk_tokens`
    predicted tokens (None: one chunk, the whole stream with its state
    carried, which is LanguageModel.evaluate), each warmed up by up to
    `context` tokens before it. One streaming pass over the file."""
    path = os.fspath(path)
    if chunk_tokens is not None and (not isinstance(chunk_tokens, int) or chunk_tokens < 1):
        raise ValueError(f"chunk_tokens must be a positive integer or None, got {chunk_tokens!r}")
    if not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be a non-negative integer, got {context!r}")
    stamp = _stamp(path)
    step = chunk_tokens or None
    marks = []                     # (offset, token, line) of the line holding each chunk's `first`
    nxt = 0                        # `first` of the next chunk to place
    t, offset = 0, 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            n = count_tokens(decode_line(raw, path, line_no), level)
            while nxt < t + n:     # the next chunk's reading starts in this line
                marks.append((offset, t, line_no))
                if step is None:
                    nxt = float("inf")
                else:
                    nxt = max(0, len(marks) * step - context)
            t += n
            offset += len(raw)
    if _stamp(path) != stamp:
        raise ValueError(f"{path}: changed while it was being read")
    chunks = []
    for k, start in enumerate(range(1, t, step or max(t, 1))):
        end = t if step is None else min(t, start + step)
        first = max(0, start - 1 - context)
        offset, token, line = marks[k]
        chunks.append(Chunk(path, k, start, end, first, offset, token, line, stamp))
    return t, chunks


def read_chunk(chunk, vocab):
    """The token ids ``[chunk.first, chunk.end)`` of the chunk's file
    (int64), read from its starting line only as far as needed."""
    path = chunk.path
    if _stamp(path) != chunk.stamp:
        raise ValueError(f"{chunk.describe()}: the file changed after the job was planned")
    parts, t = [], chunk.token
    with open(path, "rb") as f:
        f.seek(chunk.offset)
        for line_no, raw in enumerate(f, chunk.line):
            ids = vocab.encode(decode_line(raw, path, line_no))
            lo = max(0, chunk.first - t)
            hi = min(len(ids), chunk.end - t)
            if hi > lo:
                parts.append(ids[lo:hi])
            t += len(ids)
            if t >= chunk.end:
                break
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if len(ids) != chunk.end - chunk.first:
        raise ValueError(f"{chunk.describe()}: the file ended after {len(ids)} of "
                         f"{chunk.end - chunk.first} tokens (changed since planning?)")
    return ids
