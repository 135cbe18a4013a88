"""Which model a job runs, and its one copy in each worker process.

The client names the model by the SHA-256 of its file's bytes (a
:class:`ModelRef`); tasks carry only that small reference. Each worker
process loads the model once, on first use, into a cache keyed by the hash,
so a model is never shipped inside every task, and a worker that joins late
(a restarted one) loads it by itself:

* a path (or None: the embedded model, ``files.DEFAULT_MODEL`` of the
  rnncore installed on each worker): every worker reads its own file at that
  path and hashes it; a file whose hash differs from the client's is refused
  (ModelMismatchError), so machines holding different files under one name
  never mix their results; a missing file is a FileNotFoundError naming the
  worker;
* bytes (or a LanguageModel or Seq2Seq, saved to bytes): scattered once to
  the workers by the client; the hash is checked after the transfer.

A job names the kind of model it runs (``expect``: LanguageModel for
evaluate, score and generate, Seq2Seq for translate); a model file of
another kind is refused with a TypeError naming both, on the client for a
model object and on each worker for a file or bytes (the cache holds a
file's model whatever its kind; the kind is checked on each use).
"""
import collections
import hashlib
import os
import tempfile
import threading

from ..files import DEFAULT_MODEL, load, save
from ..lm import LanguageModel
from ..seq2seq import Seq2Seq

__all__ = ["ModelRef", "ModelMismatchError", "source", "get", "load_bytes", "check_kind",
           "where", "MODELS"]

# the model objects a job may be given (and save to bytes)
MODELS = (LanguageModel, Seq2Seq)
_NAMES = {LanguageModel: "a language model", Seq2Seq: "a Seq2Seq model"}


class ModelMismatchError(ValueError):
    """A worker's model file is not the file the client named."""


class ModelRef(collections.namedtuple("ModelRef", "sha256 kind path")):
    """kind: 'default' (the embedded model), 'path' (a file read on each
    worker at `path`, as given: relative paths resolve in the worker's
    working directory) or 'bytes' (the file's bytes travel with the job)."""
    __slots__ = ()

    def label(self):
        name = {"default": "the embedded model", "bytes": "model bytes"}.get(self.kind, self.path)
        return f"{name} (sha256 {self.sha256[:12]})"


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def check_kind(model, expect, label):
    """`model` itself if it is an `expect` (None: any kind), else a
    TypeError naming `label`, what it holds and what the job needs."""
    if expect is None or isinstance(model, expect):
        return model
    what = (_NAMES[type(model)] if type(model) in _NAMES
            else f"a {type(model).__name__} layer")
    raise TypeError(f"{label} holds {what}, not {_NAMES.get(expect, expect.__name__)}")


def source(model, expect=None):
    """``(ModelRef, data)`` for a model given as None, a path, bytes, a
    LanguageModel or a Seq2Seq (a model object must be an `expect`, when
    given); data is the bytes to send (None for files the workers read
    themselves). Hashes the client's copy."""
    if isinstance(model, MODELS):
        check_kind(model, expect, "the model given")
    if model is None:
        return ModelRef(_sha256(_read(DEFAULT_MODEL)), "default", None), None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        return ModelRef(_sha256(_read(path)), "path", path), None
    if isinstance(model, MODELS):
        with tempfile.TemporaryDirectory(prefix="rnncore-") as tmp:
            model = _read(save(model, os.path.join(tmp, "model.safetensors")))
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        return ModelRef(_sha256(data), "bytes", None), data
    raise TypeError(f"model must be None, a path, bytes, a LanguageModel or a Seq2Seq, got "
                    f"{type(model).__name__}")


def where():
    """This process's name in messages: the Dask worker's address, or 'this
    process' outside a worker."""
    try:
        from distributed import get_worker
        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        return "this process"


def load_bytes(data, label, expect=LanguageModel):
    """The model in the model-file bytes `data` (load() reads files: the
    bytes go through a private temporary one), refused unless an `expect`
    (None: any kind)."""
    fd, tmp = tempfile.mkstemp(prefix="rnncore-model-", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        model = load(tmp)
    except ValueError as exc:  # name the model, not the temporary file
        raise ValueError(str(exc).replace(tmp, label)) from None
    finally:
        os.unlink(tmp)
    return check_kind(model, expect, label)


_CACHE_SIZE = 4           # models kept per process (a job uses one)
_cache = collections.OrderedDict()
_lock = threading.Lock()  # concurrent tasks of one worker load a model once


def _load(ref, data, place):
    if ref.kind == "bytes":
        if data is None:
            raise ValueError(f"{ref.label()}: the model bytes did not reach {place}")
    else:
        path = DEFAULT_MODEL if ref.kind == "default" else ref.path
        try:
            data = _read(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"model file {path} not found on {place}") from None
    got = _sha256(data)
    if got != ref.sha256:
        name = "the embedded model" if ref.kind == "default" else (ref.path or "model bytes")
        raise ModelMismatchError(
            f"{name} on {place} has sha256 {got[:12]}, the client's has "
            f"{ref.sha256[:12]}: the model files differ between machines; refusing to run")
    return load_bytes(data, ref.label(), expect=None)


def get(ref, data=None, place=None, expect=LanguageModel):
    """The model `ref` names, loaded in this process once (checked against
    its hash) and then taken from the cache; refused (TypeError) unless an
    `expect`. place: this process's name in messages (default where())."""
    with _lock:
        model = _cache.get(ref.sha256)
        if model is None:
            model = _load(ref, data, place or where())
            _cache[ref.sha256] = model
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(ref.sha256)
    return check_kind(model, expect, ref.label())
