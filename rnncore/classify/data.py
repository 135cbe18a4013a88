"""Data of sequence classification: the word tokenizer, labelled TSV files,
the vocabulary built on a training set, and batches bucketed by length.

Tokenizer (``tokenize``): the text lower-cased, then runs of word characters
(letters, digits, ``_``; an inner apostrophe keeps ``doesn't`` one word) and
every other non-space character on its own: ``"It's GREAT!"`` ->
``["it's", "great", "!"]``.

TSV: one example per line, ``label<TAB>text``; with multi-label data the label
field holds comma-separated labels (``action,comedy<TAB>text``). Empty lines,
a line without a tab, an empty label or text are errors naming the file and
the line.
"""
import collections
import re

import numpy as np

from ..lm.text import UNK, Vocabulary

__all__ = ["tokenize", "read_tsv", "build_vocab", "encode", "pad_batch", "bucket_batches",
           "check_labels"]

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(text):
    """The lower-cased word and punctuation tokens of `text`."""
    return _TOKEN.findall(text.lower())


def read_lines(path):
    """``(number, line)`` for the lines of a UTF-8 file, numbered from 1,
    without their line ends (only "\n" ends a line; a "\r" before it goes);
    a ValueError naming the file for anything not UTF-8."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    if lines and lines[-1] == "":
        lines.pop()  # the final line end
    return [(number, line.rstrip("\r")) for number, line in enumerate(lines, 1)]


def read_tsv(path, multi_label=False):
    """``(labels, texts)`` of a ``label<TAB>text`` file: labels a list of str
    (multi_label: of tuples of str). ValueError naming the file and the line
    for anything else; an empty file is an error too."""
    labels, texts = [], []
    for number, line in read_lines(path):
        where = f"{path}, line {number}"
        if not line.strip():
            raise ValueError(f"{where}: empty line (expected label<TAB>text)")
        if "\t" not in line:
            raise ValueError(f"{where}: no tab (expected label<TAB>text): {line[:60]!r}")
        label, text = line.split("\t", 1)
        label = label.strip()
        if not label:
            raise ValueError(f"{where}: empty label")
        if not text.strip():
            raise ValueError(f"{where}: empty text")
        if multi_label:
            parts = tuple(p.strip() for p in label.split(","))
            if not all(parts):
                raise ValueError(f"{where}: empty label in {label!r} (labels are comma-separated)")
            label = parts
        labels.append(label)
        texts.append(text)
    if not texts:
        raise ValueError(f"{path}: no examples (the file is empty)")
    return labels, texts


def check_labels(path, labels, classes):
    """ValueError naming the file and the line of the first label not in
    `classes` (labels as read_tsv returns them)."""
    known = set(classes)
    for number, label in enumerate(labels, 1):
        for lab in (label if isinstance(label, tuple) else (label,)):
            if lab not in known:
                raise ValueError(f"{path}, line {number}: unknown label {lab!r} (the model's "
                                 f"classes: {', '.join(classes)})")


def build_vocab(texts, min_count=1, max_vocab=None, keep=None, extra=()):
    """A word-level Vocabulary of the tokens of `texts` seen at least
    min_count times (or once, for the words of the set `keep`: those with a
    pretrained vector), the max_vocab most frequent at most (ties by first
    appearance), <unk> first (id 0, the id of every other token); then the
    words of `extra` not in it yet, in their order (pretrained words never
    seen in training)."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if max_vocab is not None and max_vocab < 1:
        raise ValueError(f"max_vocab must be >= 1, got {max_vocab}")
    counts = collections.Counter(t for text in texts for t in tokenize(text))
    counts.pop(UNK, None)
    # Counter keeps first-appearance order; a stable sort keeps it for ties
    keep = keep or ()
    words = [w for w, c in sorted(counts.items(), key=lambda kv: -kv[1])
             if c >= min_count or w in keep]
    if max_vocab is not None:
        words = words[:max_vocab]
    have = set(words) | {UNK}
    for w in extra:
        if w not in have:
            have.add(w)
            words.append(w)
    return Vocabulary([UNK] + words, "word")


def encode(vocab, text):
    """Token ids (int64) of `text`; unknown words are <unk>, and a text with no
    token at all is one <unk> (a sequence has at least one step)."""
    get, unk = vocab.index.get, vocab.unk
    ids = np.fromiter((get(t, unk) for t in tokenize(text)), dtype=np.int64)
    return ids if ids.size else np.array([unk], np.int64)


def pad_batch(seqs, pad=0):
    """``(ids (T, N), lengths (N,))``: the sequences side by side, time-major,
    padded with `pad` to the longest (T)."""
    lengths = np.array([len(s) for s in seqs], np.int64)
    ids = np.full((int(lengths.max()), len(seqs)), pad, np.int64)
    for n, s in enumerate(seqs):
        ids[:len(s), n] = s
    return ids, lengths


def bucket_batches(lengths, batch_size, rng=None, pool=50):
    """Batches (index arrays) of about equal lengths, so little work is spent
    on padding: the examples (shuffled by rng, or in order without it) are
    cut into pools of pool * batch_size, each pool sorted by length (stable)
    and cut into batches, and the batches shuffled (rng) or kept in order."""
    lengths = np.asarray(lengths)
    order = np.arange(lengths.size) if rng is None else rng.permutation(lengths.size)
    batches = []
    step = max(1, pool) * batch_size
    for start in range(0, order.size, step):
        chunk = order[start:start + step]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, chunk.size, batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
