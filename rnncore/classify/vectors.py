"""Pretrained word vectors for a classifier's embedding: reading a vectors
file and matching its words to a vocabulary.

Formats (by the file name's ending):

* text (any other name): one word a line, ``word v_1 ... v_D`` separated by
  single spaces, as GloVe and word2vec (``binary=False``) write them; an
  optional word2vec header line ``count D``;
* ``.npy`` (a 2-D float array, rows in file order) or ``.safetensors`` (one
  2-D float tensor), with a vocabulary file: one word a line, line i naming
  row i.

A file is checked before anything of it is used: an empty file, a line of
the wrong dimension, a value that is not a number, NaN or infinite, a header
whose count does not match, a vocabulary whose line count is not the
array's row count: ValueError naming the file and the line (or row). Every
line of a text file is checked for its dimension; the values are converted
and checked for the words asked for (``wanted``) only, and so are the rows
of an array (a 400,000-word file is read in seconds). A word seen twice
keeps its first vector (as gensim does).

Matching (``match``): a vocabulary word takes the vector of the same word,
else of its lower-cased form; a word with an apostrophe that has neither,
the mean of its Penn-Treebank-style parts when all have vectors
(``doesn't`` -> ``does`` + ``n't``, ``film's`` -> ``film`` + ``'s``:
GloVe's and word2vec's corpora were tokenized that way, the classifier's
tokenizer keeps such words whole).
"""
import os

import numpy as np
from safetensors import SafetensorError, safe_open

from .data import read_lines

__all__ = ["read_vectors", "read_word_list", "match", "word_parts", "lookup_set"]


def word_parts(word):
    """The Penn-Treebank-style parts of a word with an apostrophe
    (``doesn't`` -> ``["does", "n't"]``, ``it's`` -> ``["it", "'s"]``,
    ``o'neil`` -> ``["o", "'neil"]``); [] for a word without one."""
    if "'" not in word.strip("'"):
        return []
    if word.endswith("n't") and len(word) > 3:
        head = word[:-3]
        return word_parts(head) + ["n't"] if "'" in head else [head, "n't"]
    cut = word.index("'", 1)
    return [word[:cut]] + (word_parts(word[cut:]) or [word[cut:]])


def lookup_set(words):
    """The words `match` may look up for `words`: each word, its lower-cased
    form and its parts (the ``wanted`` of read_vectors)."""
    out = set()
    for w in words:
        out.update((w, w.lower()))
        out.update(word_parts(w))
    return out


def read_word_list(path):
    """The words of a vocabulary file, one a line (UTF-8; ValueError naming
    the file and line for an empty line, a word with a space, an empty
    file)."""
    words = []
    for number, word in read_lines(path):
        if not word.strip():
            raise ValueError(f"{path}, line {number}: empty line (expected one word a line)")
        if len(word.split()) != 1 or word != word.strip():
            raise ValueError(f"{path}, line {number}: a word must not contain spaces: "
                             f"{word[:60]!r}")
        words.append(word)
    if not words:
        raise ValueError(f"{path}: no words (the file is empty)")
    return words


def _finite_rows(path, array, words, rows):
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}, row {rows[i] + 1} (word {words[i]!r}): a value is NaN or "
                         "infinite")


def _read_array(path, vocab_path):
    if vocab_path is None:
        raise ValueError(f"{path}: a .npy or .safetensors vectors file needs a vocabulary file "
                         "(one word a line, line i naming row i)")
    if path.endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, EOFError) as exc:
            raise ValueError(f"{path}: not a NumPy array file ({exc})") from None
    else:
        try:
            with safe_open(path, framework="numpy") as f:
                names = list(f.keys())
                if len(names) != 1:
                    raise ValueError(f"{path}: expected one tensor (the vectors), found "
                                     f"{len(names)}: {', '.join(names[:5])}")
                array = f.get_tensor(names[0])
        except SafetensorError as exc:
            raise ValueError(f"{path}: not a safetensors file ({exc})") from None
    if array.ndim != 2 or array.dtype.kind != "f" or 0 in array.shape:
        raise ValueError(f"{path}: expected a 2-D float array (words x dimension), got "
                         f"{array.dtype} of shape {array.shape}")
    words = read_word_list(vocab_path)
    if len(words) != array.shape[0]:
        raise ValueError(f"{vocab_path} has {len(words):,} words but {path} has "
                         f"{array.shape[0]:,} rows")
    return words, array


def _read_text(path, wanted, first):
    """(words, rows) of a GloVe / word2vec text file: rows float32 (n, D) of
    the first `first` distinct words and of those in `wanted` (every word
    when None), first occurrence each."""
    words, rows, seen, dim, header = [], [], set(), None, None
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a vectors file") from None
    with f:
        number = 0
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not UTF-8 text ({exc})") from None
            fields = line.rstrip(" ").split(" ")
            if number == 1 and len(fields) == 2 and all(x.isdigit() for x in fields):
                header = (int(fields[0]), int(fields[1]))  # word2vec: count, dimension
                dim = header[1]
                if min(header) < 1:
                    raise ValueError(f"{path}, line 1: header {line!r} (count dimension) "
                                     "must be positive")
                continue
            if not line.strip():
                raise ValueError(f"{path}, line {number}: empty line (expected a word "
                                 "and its vector)")
            if dim is None:
                dim = len(fields) - 1
                if dim < 1:
                    raise ValueError(f"{path}, line {number}: a word without a vector: "
                                     f"{line[:60]!r}")
            if len(fields) - 1 != dim:
                raise ValueError(f"{path}, line {number}: {len(fields) - 1} values, "
                                 f"expected {dim} (the dimension of "
                                 f"{'the header' if header else 'the first line'})")
            word = fields[0]
            if not word:
                raise ValueError(f"{path}, line {number}: no word (the line starts with a "
                                 "space)")
            if word in seen or (wanted is not None and len(seen) >= first
                                and word not in wanted and word.lower() not in wanted):
                continue
            try:
                row = np.array(fields[1:], dtype=np.float32)
            except ValueError:
                bad = next(x for x in fields[1:] if not _is_number(x))
                raise ValueError(f"{path}, line {number}: not a number: {bad[:30]!r}") \
                    from None
            if not np.isfinite(row).all():
                raise ValueError(f"{path}, line {number} (word {word!r}): a value is NaN "
                                 "or infinite")
            seen.add(word)
            words.append(word)
            rows.append(row)
    count = number - (header is not None)
    if count == 0:
        raise ValueError(f"{path}: no vectors (the file is empty)")
    if header is not None and header[0] != count:
        raise ValueError(f"{path}: the header says {header[0]:,} words, the file has {count:,}")
    array = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return words, array


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_vectors(path, vocab_path=None, wanted=None, first=0):
    """``(words, vectors)`` of a vectors file (see the module's doc for the
    formats): words a list of str in file order, vectors float32
    (len(words), D). wanted: a set of words; the rows of other words (and of
    their lower-cased forms) are left out, except the file's first `first`
    distinct words, always kept (words[:first]: vectors files list the most
    frequent words first). ValueError naming the file and the line for
    anything that is not such a file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such vectors file")
    if path.endswith((".npy", ".safetensors")):
        words, array = _read_array(path, None if vocab_path is None else os.fspath(vocab_path))
        seen, keep = set(), []
        for i, w in enumerate(words):  # the first row of each word
            if w not in seen and (wanted is None or len(seen) < first or w in wanted
                                  or w.lower() in wanted):
                keep.append(i)
                seen.add(w)
        array = np.asarray(array[keep] if len(keep) < len(words) else array, np.float32)
        words = [words[i] for i in keep]
        _finite_rows(path, array, words, keep)
        return words, np.ascontiguousarray(array)
    if vocab_path is not None:
        raise ValueError(f"{path}: a text vectors file names its own words; a vocabulary file "
                         "is only for .npy and .safetensors vectors")
    return _read_text(path, wanted, first)


def match(vocab_words, words, vectors):
    """``(rows, found)``: for each word of vocab_words the vector (D,) it
    takes from (words, vectors) -- its own, its lower-cased form's, or the
    mean of its parts' (word_parts) -- as rows float32 (V, D), and found, a
    bool array (V,) marking the words that got one (the others' rows are 0)."""
    index = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)
    for i, w in enumerate(words):
        index.setdefault(w.lower(), i)
    rows = np.zeros((len(vocab_words), vectors.shape[1]), np.float32)
    found = np.zeros(len(vocab_words), bool)
    for v, word in enumerate(vocab_words):
        i = index.get(word, index.get(word.lower()))
        if i is not None:
            rows[v], found[v] = vectors[i], True
            continue
        parts = [index.get(p, index.get(p.lower())) for p in word_parts(word)]
        if parts and None not in parts:
            rows[v], found[v] = vectors[parts].mean(axis=0), True
    return rows, found
