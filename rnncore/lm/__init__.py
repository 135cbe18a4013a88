"""Language models: the model (embedding -> stacked recurrent layers ->
decoder), token sampling, and text (vocabularies, batching, reading)."""
from . import text
from .model import LanguageModel
from .text import Vocabulary

__all__ = ["LanguageModel", "Vocabulary", "text"]
