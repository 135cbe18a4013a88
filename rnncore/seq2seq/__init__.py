"""Sequence to sequence: an encoder-decoder with attention (model), its
attention (attention), tokenisers (tokenizers), and decoding by greedy
search, sampling and beam search."""
from .model import Seq2Seq
from .tokenizers import SubwordTokenizer, WordTokenizer

__all__ = ["Seq2Seq", "WordTokenizer", "SubwordTokenizer"]
