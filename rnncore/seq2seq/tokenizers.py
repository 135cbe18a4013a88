"""Tokenisers of the sequence-to-sequence models: text <-> token ids.

Two kinds, chosen by ``--tokenizer``:

* ``"subword"``: a unigram SentencePiece model (Kudo & Richardson 2018)
  learned on the training text (needs the ``sentencepiece`` package,
  ``pip install rnncore[seq2seq]``). Its detokenisation is exact, so
  translations come out as plain text for sacrebleu.
* ``"word"``: words and punctuation marks (``\\w+`` runs and single other
  characters), the vocabulary the training text's tokens seen at least
  ``min_count`` times; detokenised by joining with spaces except before
  closing punctuation. No dependency.

Ids 0-3 are reserved in both: PAD, BOS, EOS, UNK. A tokeniser is saved as
JSON in a model file's metadata (the SentencePiece model as base64 of its
serialized protobuf: data, not code).
"""
import base64
import collections
import io
import re

__all__ = ["PAD", "BOS", "EOS", "UNK", "WordTokenizer", "SubwordTokenizer", "learn",
           "from_json", "KINDS"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
KINDS = ("subword", "word")
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_NO_SPACE_BEFORE = set(".,;:!?)]}'\"%")
_NO_SPACE_AFTER = set("([{")


class WordTokenizer:
    kind = "word"

    def __init__(self, tokens):
        if list(tokens[:4]) != SPECIALS or len(set(tokens)) != len(tokens):
            raise ValueError("a word vocabulary starts with the 4 special tokens and has no "
                             "duplicates")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def learn(cls, lines, vocab_size=None, min_count=1):
        counts = collections.Counter(t for line in lines for t in _WORD.findall(line))
        ranked = sorted((t for t, c in counts.items() if c >= min_count),
                        key=lambda t: (-counts[t], t))
        if vocab_size is not None:
            ranked = ranked[:max(0, vocab_size - len(SPECIALS))]
        return cls(SPECIALS + ranked)

    def __len__(self):
        return len(self.tokens)

    def encode(self, text):
        return [self.index.get(t, UNK) for t in _WORD.findall(text)]

    def decode(self, ids):
        out = []
        for i in ids:
            if i in (PAD, BOS):
                continue
            if i == EOS:
                break
            word = self.tokens[i] if 0 <= i < len(self.tokens) else SPECIALS[UNK]
            if out and word not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
                out.append(" ")
            out.append(word)
        return "".join(out)

    def to_json(self):
        return {"kind": "word", "tokens": self.tokens}


class SubwordTokenizer:
    kind = "subword"

    def __init__(self, model_proto):
        spm = _sentencepiece()
        self.proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.proto)
        specials = [self.sp.pad_id(), self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id()]
        if specials != [PAD, BOS, EOS, UNK]:
            raise ValueError(f"a SentencePiece model with pad, bos, eos, unk ids {specials}, "
                             f"expected {[PAD, BOS, EOS, UNK]}")

    @classmethod
    def learn(cls, lines, vocab_size=8000, min_count=None):
        spm = _sentencepiece()
        lines = [line for line in lines if line.strip()]
        if not lines:
            raise ValueError("no text to learn subwords from")
        # unigram model; the vocabulary shrinks to what the text supports
        # (SentencePiece refuses a size larger than its seed pieces allow)
        out = io.BytesIO()
        size = vocab_size
        for _ in range(8):
            try:
                spm.SentencePieceTrainer.train(
                    sentence_iterator=iter(lines), model_writer=out, vocab_size=size,
                    model_type="unigram", character_coverage=1.0, pad_id=PAD, bos_id=BOS,
                    eos_id=EOS, unk_id=UNK, hard_vocab_limit=False, num_threads=1,
                    minloglevel=2)
                break
            except RuntimeError as exc:
                if "Vocabulary size" not in str(exc) or size <= 16:
                    raise
                size = max(16, size // 2)
                out = io.BytesIO()
        return cls(out.getvalue())

    def __len__(self):
        return self.sp.get_piece_size()

    def encode(self, text):
        return self.sp.encode(text)

    def decode(self, ids):
        keep = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                keep.append(int(i))
        return self.sp.decode(keep)

    def to_json(self):
        return {"kind": "subword", "model": base64.b64encode(self.proto).decode("ascii")}


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ImportError("subword tokenisation needs sentencepiece (pip install "
                          "'rnncore[seq2seq]', or --tokenizer word)") from None
    return sentencepiece


def learn(kind, lines, vocab_size=8000, min_count=1):
    """A tokenizer of `kind` learned on `lines` (a list of str)."""
    if kind == "word":
        return WordTokenizer.learn(lines, vocab_size, min_count)
    if kind == "subword":
        return SubwordTokenizer.learn(lines, vocab_size)
    raise ValueError(f"tokenizer must be one of {KINDS}, got {kind!r}")


def from_json(data, what="tokenizer"):
    """The tokenizer saved by ``to_json`` (ValueError for anything else)."""
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise ValueError(f"{what}: not a tokenizer description")
    if data["kind"] == "word":
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{what}: word tokens must be a list of strings")
        return WordTokenizer(tokens)
    try:
        proto = base64.b64decode(data.get("model", ""), validate=True)
    except (ValueError, TypeError):
        raise ValueError(f"{what}: the subword model is not base64") from None
    try:
        return SubwordTokenizer(proto)
    except (RuntimeError, OSError) as exc:
        raise ValueError(f"{what}: the subword model does not load ({exc})") from None
