"""Sequence classification: the model (embedding -> stacked (bi)recurrent
layers -> pooling -> dense -> softmax or sigmoids), its data (tokenizer,
labelled TSV files, vocabulary, length buckets), pretrained word vectors for
its embedding and its scores."""
from . import data, metrics, vectors
from .data import build_vocab, read_tsv, tokenize
from .model import POOLINGS, SequenceClassifier

__all__ = ["SequenceClassifier", "POOLINGS", "build_vocab", "read_tsv", "tokenize", "data",
           "metrics", "vectors"]
