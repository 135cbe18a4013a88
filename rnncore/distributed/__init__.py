"""Language models and translation models on a Dask cluster: evaluate text
files, score lines, generate from prompts (LanguageModel), translate lines
(Seq2Seq), with local twins that run the same tasks in this process and
return the same numbers and texts.

>>> from distributed import Client, LocalCluster                # doctest: +SKIP
>>> import rnncore.distributed as rd
>>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
...     rd.evaluate(client, ["ptb.test.txt"], "lm.safetensors")  # doctest: +SKIP
{'loss': ..., 'perplexity': ..., 'bits_per_token': ..., 'tokens': ..., 'chunks': ..., ...}
>>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
...     rd.translate(client, ["ein Haus ."], "de-en.safetensors", beam_size=5)  # doctest: +SKIP
['a house .']

Needs ``dask`` and ``distributed`` (``pip install "rnncore[dask]"``),
imported only when a function here runs: ``import rnncore.distributed``
works without them, and the local twins never use them.

Roles: ``corpus`` (files cut into chunks, read as a stream), ``models``
(the model by hash, loaded once per worker, of the kind the job needs),
``tasks`` (what a task computes, and its threads), ``jobs`` (the client
side and the local twins).
"""
from .corpus import Chunk
from .jobs import (DEFAULT_CHUNK_TOKENS, DEFAULT_CONTEXT_TOKENS, DEFAULT_LINES_PER_TASK, connect,
                   evaluate, evaluate_local, generate, generate_local, score, score_local,
                   translate, translate_local)
from .models import ModelMismatchError
from .tasks import TaskError

__all__ = ["evaluate", "evaluate_local", "score", "score_local", "generate", "generate_local",
           "translate", "translate_local", "connect", "Chunk", "ModelMismatchError",
           "TaskError", "DEFAULT_CHUNK_TOKENS", "DEFAULT_CONTEXT_TOKENS", "DEFAULT_LINES_PER_TASK"]
