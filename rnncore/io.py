"""Model files: ``rnncore.save(model, path)`` and ``rnncore.load(path)`` in the
safetensors format (tensors plus a string-to-string metadata header; nothing
in it is ever executed or unpickled).

Metadata: ``format`` = "rnncore", ``format_version`` = "1", ``kind`` (the
model's class, e.g. "LSTM") and ``config`` (JSON of the constructor
arguments). On load the configuration is validated first, the model is built
from it, and every tensor's name, dtype and shape must match that model
before anything is copied. Writes are atomic: a temporary file in the same
folder, flushed to disk, then renamed over the target, so an interrupted save
leaves the previous file intact.
"""
import json
import os
import tempfile

import numpy as np

from .layers import GRU, LSTM, RNN, RNNBase

__all__ = ["save", "load"]

FORMAT, FORMAT_VERSION = "rnncore", "1"
_LAYERS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
# constructor arguments kept in the file, with their types
_LAYER_CONFIG = {"input_size": int, "hidden_size": int, "num_layers": int, "bias": bool,
                 "batch_first": bool, "dropout": float, "bidirectional": bool}
# no layer of a real model is this large; a hostile header must not make
# load() allocate absurd memory before the tensors are checked
MAX_ELEMENTS = 1 << 31


# per kind, the constructor arguments of its own
_KIND_CONFIG = {"RNN": {"nonlinearity": str}, "GRU": {"reset_after": bool},
                "LSTM": {"peephole": bool, "input_forget": bool}}


def _layer_config(layer):
    kind = type(layer).__name__
    return {k: getattr(layer, k) for k in dict(_LAYER_CONFIG, **_KIND_CONFIG[kind])}


def save(model, path):
    """Write `model` (an RNN, LSTM or GRU layer) to `path` as safetensors,
    atomically. Returns the path."""
    from safetensors.numpy import save_file
    if not isinstance(model, RNNBase):
        raise TypeError(f"model must be an rnncore RNN, LSTM or GRU, got {type(model).__name__}")
    path = os.fspath(path)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "kind": type(model).__name__, "config": json.dumps(_layer_config(model))}
    tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".rnncore-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _bad(path, why):
    return ValueError(f"{path}: not a valid rnncore model file: {why}")


def _config_from(path, metadata):
    if metadata is None or metadata.get("format") != FORMAT:
        raise _bad(path, "no rnncore metadata (format != 'rnncore')")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"format_version {metadata.get('format_version')!r} is not "
                         f"{FORMAT_VERSION!r}")
    kind = metadata.get("kind")
    if kind not in _LAYERS:
        raise _bad(path, f"kind {kind!r} is not one of {sorted(_LAYERS)}")
    try:
        cfg = json.loads(metadata.get("config", ""))
    except ValueError as exc:
        raise _bad(path, f"config is not JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise _bad(path, "config is not a JSON object")
    expected = dict(_LAYER_CONFIG, **_KIND_CONFIG[kind])
    if set(cfg) != set(expected):
        raise _bad(path, f"config keys {sorted(cfg)} != {sorted(expected)}")
    for key, typ in expected.items():
        value = cfg[key]
        ok = (isinstance(value, bool) if typ is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if typ is float else
              isinstance(value, typ) and not isinstance(value, bool))
        if not ok:
            raise _bad(path, f"config[{key!r}] = {value!r} is not a {typ.__name__}")
    return kind, cfg


def _parameter_count(kind, cfg):
    """Parameters a layer of this configuration has (Python integers: no
    overflow whatever the file says)."""
    G = {"RNN": 1, "LSTM": 4, "GRU": 3}[kind]
    H, L, D = cfg["hidden_size"], cfg["num_layers"], 2 if cfg["bidirectional"] else 1
    if min(H, L, cfg["input_size"]) < 1:
        return 0  # the constructor rejects it with a clear message
    # closed form (a loop over a hostile num_layers = 10**12 would never end):
    # layer 0 reads input_size features, the others D*H
    b = 2 if cfg["bias"] else 0
    per_layer = lambda inputs: D * G * H * (inputs + H + b)  # noqa: E731
    peep = L * D * 3 * H if cfg.get("peephole") else 0
    return per_layer(cfg["input_size"]) + (L - 1) * per_layer(D * H) + peep


def load(path):
    """The model saved at `path` by :func:`save`. Raises ValueError (naming the
    file and the problem) for anything that is not such a file: another
    format, truncated or corrupt data, wrong metadata, a tensor of the wrong
    name, dtype or shape."""
    from safetensors import SafetensorError, safe_open
    path = os.fspath(path)
    try:
        with safe_open(path, framework="numpy") as f:
            kind, cfg = _config_from(path, f.metadata())
            if _parameter_count(kind, cfg) > MAX_ELEMENTS:  # before building anything
                raise _bad(path, "config describes more than 2^31 parameters")
            try:
                model = _LAYERS[kind](**cfg, seed=0)
            except (TypeError, ValueError) as exc:
                raise _bad(path, f"config rejected: {exc}") from None
            shapes = {k: v.shape for k, v in model.state_dict().items()}
            names = set(f.keys())
            if names != set(shapes):
                raise _bad(path, f"tensors {sorted(names ^ set(shapes))} missing or unexpected")
            for name, shape in shapes.items():
                sl = f.get_slice(name)
                dtype, got = sl.get_dtype(), tuple(sl.get_shape())
                if dtype != "F32" or got != shape:
                    raise _bad(path, f"tensor {name!r} is {dtype} {got}, expected F32 {shape}")
            model.load_state_dict({name: f.get_tensor(name) for name in shapes})
    except SafetensorError as exc:
        raise _bad(path, str(exc)) from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise _bad(path, str(exc)) from None
    return model
