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
* bytes (or a LanguageModel, saved to bytes): scattered once to the workers
  by the client; the hash is checked after the transfer.
"""
import collections
import hashlib
import os
import tempfile
import threading

from ..files import DEFAULT_MODEL, load, save
from ..lm import LanguageModel

__all__ = ["ModelRef", "ModelMismatchError", "source", "get", "load_bytes", "where"]


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


def source(model):
    """``(ModelRef, data)`` for a model given as None, a path, bytes or a
    LanguageModel; data is the bytes to send (None for files the workers
    read themselves). Hashes the client's copy."""
    if model is None:
        return ModelRef(_sha256(_read(DEFAULT_MODEL)), "default", None), None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        return ModelRef(_sha256(_read(path)), "path", path), None
    if isinstance(model, LanguageModel):
        with tempfile.TemporaryDirectory(prefix="rnncore-") as tmp:
            model = _read(save(model, os.path.join(tmp, "model.safetensors")))
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        return ModelRef(_sha256(data), "bytes", None), data
    raise TypeError(f"model must be None, a path, bytes or a LanguageModel, got "
                    f"{type(model).__name__}")


def where():
    """This process's name in messages: the Dask worker's address, or 'this
    process' outside a worker."""
    try:
        from distributed import get_worker
        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        return "this process"


def load_bytes(data, label):
    """The LanguageModel in the model-file bytes `data` (load() reads files:
    the bytes go through a private temporary one)."""
    fd, tmp = tempfile.mkstemp(prefix="rnncore-model-", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        model = load(tmp)
    except ValueError as exc:  # name the model, not the temporary file
        raise ValueError(str(exc).replace(tmp, label)) from None
    finally:
        os.unlink(tmp)
    if not isinstance(model, LanguageModel):
        raise TypeError(f"{label} holds a {type(model).__name__} layer, not a language model")
    return model


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
    return load_bytes(data, ref.label())


def get(ref, data=None, place=None):
    """The model `ref` names, loaded in this process once (checked against
    its hash) and then taken from the cache. place: this process's name in
    messages (default where())."""
    with _lock:
        model = _cache.get(ref.sha256)
        if model is None:
            model = _load(ref, data, place or where())
            _cache[ref.sha256] = model
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(ref.sha256)
        return model
