"""Text for language models: vocabularies (character or word level) and the
batching of a token stream into N continuous streams for truncated BPTT.

Word level follows the reference PTB loaders (Zaremba's, PyTorch's
word_language_model): split each line on whitespace and append one ``<eos>``
per line. Both levels map a token missing from the vocabulary to ``<unk>``.
"""
import collections

import numpy as np

__all__ = ["Vocabulary", "batchify", "bptt_batches", "read_text"]

UNK, EOS = "<unk>", "<eos>"
LEVELS = ("char", "word")


def read_text(path):
    """A corpus file's text (UTF-8; a clear error for anything else)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None


class Vocabulary:
    """Token <-> id map of a character- or word-level model.

    ``Vocabulary.build(text, level)`` makes it from a training text: tokens by
    decreasing frequency (ties by first appearance), plus ``<unk>`` (and
    ``<eos>`` at word level) when the text lacks them.
    """

    def __init__(self, tokens, level):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        tokens = list(tokens)
        if not tokens or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("tokens must be a non-empty list of non-empty strings")
        if level == "char" and any(len(t) != 1 for t in tokens if t != UNK):
            raise ValueError("a char-level vocabulary holds single characters (and <unk>)")
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens must be distinct")
        if UNK not in tokens:
            raise ValueError(f"the vocabulary must contain {UNK}")
        self.level = level
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.unk = self.index[UNK]

    @classmethod
    def build(cls, text, level="char"):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        counts = collections.Counter(cls._split(text, level))
        if not counts:
            raise ValueError("the training text is empty")
        # Counter keeps first-appearance order; a stable sort keeps it for ties
        tokens = [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])]
        for special in ((EOS, UNK) if level == "word" else (UNK,)):
            if special not in counts:
                tokens.append(special)
        return cls(tokens, level)

    @staticmethod
    def _split(text, level):
        if level == "char":
            return list(text)
        out = []
        for line in text.splitlines():
            out += line.split()
            out.append(EOS)
        return out

    def __len__(self):
        return len(self.tokens)

    def __repr__(self):
        return f"Vocabulary({self.level}, {len(self)} tokens)"

    def encode(self, text):
        """Token ids (int64) of `text`; unknown tokens become <unk>."""
        get, unk = self.index.get, self.unk
        return np.fromiter((get(t, unk) for t in self._split(text, self.level)),
                           dtype=np.int64)

    def decode(self, ids):
        """Text of a sequence of ids (words joined by spaces, <eos> as a
        newline)."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"ids must be in [0, {len(self)}), got {ids.min()}..{ids.max()}")
        words = [self.tokens[i] for i in ids.tolist()]
        if self.level == "char":
            return "".join(words)
        text = ""
        for w in words:
            text += "\n" if w == EOS else (w if not text or text.endswith("\n") else " " + w)
        return text

    def token_text(self, i, previous=None):
        """How id `i` is printed after id `previous` (for streamed output)."""
        w = self.tokens[i]
        if self.level == "char":
            return w
        if w == EOS:
            return "\n"
        return w if previous is None or self.tokens[previous] == EOS else " " + w


def batchify(ids, batch_size):
    """A token stream as ``(L, batch_size)``: batch_size continuous streams
    side by side, each of L = len(ids) // batch_size tokens (the remainder is
    dropped), so that the state of column n carries from one BPTT window to
    the next."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    L = ids.size // batch_size
    if L < 2:
        raise ValueError(f"{ids.size} tokens are too few for {batch_size} streams of at "
                         "least 2 tokens")
    return np.ascontiguousarray(ids[:L * batch_size].reshape(batch_size, L).T)


def bptt_batches(data, unroll):
    """Windows ``(inputs, targets)`` of at most `unroll` steps over batchified
    `data`, targets one step ahead of inputs; the last window may be shorter."""
    for start in range(0, data.shape[0] - 1, unroll):
        t = min(unroll, data.shape[0] - 1 - start)
        yield data[start:start + t], data[start + 1:start + 1 + t]
