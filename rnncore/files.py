"""Model files: ``rnncore.save(model, path)`` and ``rnncore.load(path)`` in the
safetensors format (tensors plus a string-to-string metadata header; nothing
in it is ever executed or unpickled).

Metadata: ``format`` = "rnncore", ``format_version`` = "1", ``kind`` (the
model's class: "RNN", "LSTM", "GRU" or "LanguageModel") and ``config`` (JSON
of the constructor arguments); a language model adds ``vocab`` (JSON:
``{"level": "char"|"word", "tokens": [...]}``); a SequenceClassifier adds
``vocab`` and ``classes`` (JSON: the list of labels). A training checkpoint is a
model file plus ``training`` (JSON: epoch, schedule, ...) and the optimizer's
buffers as tensors named ``optimizer/...``; load() reads the model from it.
On load the configuration is validated first, the model is built from it,
and every tensor's name, dtype and shape must match that model before
anything is copied. Writes are atomic: a temporary file in the same
folder, flushed to disk, then renamed over the target, so an interrupted save
leaves the previous file intact.
"""
import json
import os
import tempfile

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from .engine import cells
from .engine.layers import LAYERS, RNNBase
from .classify import SequenceClassifier
from .lm import LanguageModel, Vocabulary
from .lm.quantized import lm_from_quantized_state
from .quantization import is_quantized, quantize
from .engine.quantized import from_quantized_state
from .seq2seq import Seq2Seq
from .seq2seq import tokenizers as s2s_tokenizers

__all__ = ["save", "load"]

FORMAT, FORMAT_VERSION = "rnncore", "1"
# the embedded model: a 2 x 512 GRU on Tiny Shakespeare characters
# (benchmarks/train_shakespeare_char.sh)
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models",
                             "shakespeare-char.safetensors")
_GATES = {c.layer: c.gates for c in cells.CELLS.values()}  # per layer class
# constructor arguments kept in the file, with their types
_LAYER_CONFIG = {"input_size": int, "hidden_size": int, "num_layers": int, "bias": bool,
                 "batch_first": bool, "dropout": float, "bidirectional": bool}
# no layer of a real model is this large; a hostile header must not make
# load() allocate absurd memory before the tensors are checked
MAX_ELEMENTS = 1 << 31
MAX_VOCAB = 1 << 24
OPTIMIZER_PREFIX = "optimizer/"
_LM_CONFIG = {"cell": str, "embed_size": int, "hidden_size": int, "num_layers": int,
              "dropout": float, "tied": bool, "init_scale": (float, type(None))}
_S2S_CONFIG = {"cell": str, "embed_size": int, "hidden_size": int, "num_layers": int,
               "bidirectional_encoder": bool, "attention": (str, type(None)), "dropout": float,
               "tied_decoder": bool}
# a tokenizer description (a SentencePiece model, base64) is at most this long
MAX_TOKENIZER_CHARS = 1 << 26
_CLASSIFIER_CONFIG = {"cell": str, "embed_size": int, "hidden_size": int, "num_layers": int,
                      "bidirectional": bool, "pooling": str, "dropout": float,
                      "multi_label": bool, "freeze_embedding": bool}
_MODEL_CONFIG = {"LanguageModel": _LM_CONFIG, "Seq2Seq": _S2S_CONFIG,
                 "SequenceClassifier": _CLASSIFIER_CONFIG}


# per kind, the constructor arguments of its own
_KIND_CONFIG = {"RNN": {"nonlinearity": str}, "GRU": {"reset_after": bool},
                "LSTM": {"peephole": bool, "input_forget": bool, "proj_size": int}}
# keys that files written before them lack, with the value they meant
_ADDED_KEYS = {"LSTM": {"proj_size": 0}, "SequenceClassifier": {"freeze_embedding": False}}


def _layer_config(layer):
    kind = layer.cell.layer  # "RNN", "LSTM" or "GRU" (an int8 copy too)
    return {k: getattr(layer, k) for k in dict(_LAYER_CONFIG, **_KIND_CONFIG[kind])}


def save(model, path, *, dtype="float32"):
    """Write `model` (an RNN, LSTM or GRU layer, a LanguageModel or a
    SequenceClassifier) to `path` as safetensors, atomically. dtype="float16"
    stores the parameters at half the size (rounded to float16; load()
    returns float32 parameters).
    Returns the path."""
    return write_checkpoint(model, path, dtype=dtype)


def write_checkpoint(model, path, training=None, optimizer_tensors=None, dtype="float32"):
    """save(), plus (for training checkpoints) the JSON-able dict `training`
    in the metadata and `optimizer_tensors` (name -> float32 array) stored
    under ``optimizer/<name>``."""
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    int8 = is_quantized(model)
    if int8 and dtype != "float32":
        raise ValueError(f"dtype={dtype!r}: an int8 model is stored as it is (int8 weights, "
                         "float32 scales and biases); leave dtype at its default")
    if isinstance(model, RNNBase):
        metadata = {"kind": model.cell.layer, "config": json.dumps(_layer_config(model))}
    elif isinstance(model, LanguageModel):
        metadata = {"kind": "LanguageModel", "config": json.dumps(model.config()),
                    "vocab": json.dumps({"level": model.vocab.level,
                                         "tokens": model.vocab.tokens})}
    elif isinstance(model, Seq2Seq):
        metadata = {"kind": "Seq2Seq", "config": json.dumps(model.config()),
                    "src_vocab": json.dumps(model.src_vocab.to_json()),
                    "tgt_vocab": json.dumps(model.tgt_vocab.to_json())}
    elif isinstance(model, SequenceClassifier):
        metadata = {"kind": "SequenceClassifier", "config": json.dumps(model.config()),
                    "vocab": json.dumps({"level": model.vocab.level,
                                         "tokens": model.vocab.tokens}),
                    "classes": json.dumps(model.classes)}
    else:
        raise TypeError(f"model must be an rnncore RNN, LSTM, GRU, LanguageModel, Seq2Seq or "
                        f"SequenceClassifier, got {type(model).__name__}")
    metadata.update(format=FORMAT, format_version=FORMAT_VERSION)
    if int8:  # int8 weights with their float32 "<name>_scale" row scales, float32 biases
        metadata["dtype"] = model.dtype
        tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    else:
        tensors = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in model.state_dict().items()}
    if training is not None:
        metadata["training"] = json.dumps(training)
        for k, v in (optimizer_tensors or {}).items():
            tensors[OPTIMIZER_PREFIX + k] = np.ascontiguousarray(v, dtype=np.float32)
    path = os.fspath(path)
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


def _typed(value, typ):
    if isinstance(typ, tuple):
        return any(_typed(value, t) for t in typ)
    if typ is type(None):
        return value is None
    if typ is bool:
        return isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, typ) and not isinstance(value, bool)


def _json(path, metadata, key):
    try:
        value = json.loads(metadata.get(key, ""))
    except ValueError as exc:
        raise _bad(path, f"{key} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _bad(path, f"{key} is not a JSON object")
    return value


def _config_from(path, metadata):
    if metadata is None or metadata.get("format") != FORMAT:
        raise _bad(path, "no rnncore metadata (format != 'rnncore')")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"format_version {metadata.get('format_version')!r} is not "
                         f"{FORMAT_VERSION!r}")
    kind = metadata.get("kind")
    models = _MODEL_CONFIG
    if kind not in LAYERS and kind not in models:
        raise _bad(path, f"kind {kind!r} is not one of {sorted(LAYERS) + sorted(models)}")
    cfg = _json(path, metadata, "config")
    expected = models[kind] if kind in models else dict(_LAYER_CONFIG, **_KIND_CONFIG[kind])
    for key, value in _ADDED_KEYS.get(kind, {}).items():
        cfg.setdefault(key, value)
    if set(cfg) != set(expected):
        raise _bad(path, f"config keys {sorted(cfg)} != {sorted(expected)}")
    for key, typ in expected.items():
        if not _typed(cfg[key], typ):
            raise _bad(path, f"config[{key!r}] = {cfg[key]!r} has the wrong type")
    return kind, cfg


def _vocab_from(path, metadata):
    v = _json(path, metadata, "vocab")
    tokens = v.get("tokens")
    if set(v) != {"level", "tokens"} or not isinstance(tokens, list):
        raise _bad(path, "vocab must be {'level': ..., 'tokens': [...]}")
    if len(tokens) > MAX_VOCAB:
        raise _bad(path, f"vocab has {len(tokens)} tokens (more than {MAX_VOCAB})")
    try:
        return Vocabulary(tokens, v["level"])
    except (TypeError, ValueError) as exc:
        raise _bad(path, f"vocab rejected: {exc}") from None


def _tokenizers_from(path, metadata):
    """The (source, target) tokenizers of a Seq2Seq file."""
    out = []
    for key in ("src_vocab", "tgt_vocab"):
        if len(metadata.get(key, "")) > MAX_TOKENIZER_CHARS:
            raise _bad(path, f"{key} is longer than {MAX_TOKENIZER_CHARS} characters")
        try:
            out.append(s2s_tokenizers.from_json(_json(path, metadata, key), key))
        except (ValueError, ImportError) as exc:
            raise _bad(path, str(exc)) from None
    return out


def _classes_from(path, metadata):
    try:
        classes = json.loads(metadata.get("classes", ""))
    except ValueError as exc:
        raise _bad(path, f"classes is not JSON ({exc})") from None
    if not isinstance(classes, list) or len(classes) > MAX_VOCAB:
        raise _bad(path, "classes must be a JSON list of labels")
    return classes


def _parameter_count(kind, cfg, vocab_size=0, num_classes=0):
    """Parameters a model of this configuration has (Python integers: no
    overflow whatever the file says)."""
    if kind == "Seq2Seq":  # an upper bound: two embeddings, output, attention, 2 stacks
        E, H, L = cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"]
        if min(E, H, L) < 1:
            return 0
        rnn = 2 * L * 4 * H * (max(E, H) + H + 2)
        return vocab_size * (2 * E + H + 1) + rnn + 4 * H * H + 2 * H
    if kind == "LanguageModel":
        try:
            layer_class = cells.by_name(cfg["cell"]).layer
        except ValueError:
            return 0  # the constructor rejects it with a clear message
        if min(cfg["embed_size"], cfg["hidden_size"]) < 1:
            return 0
        rnn = _parameter_count(layer_class, {
            "input_size": cfg["embed_size"], "hidden_size": cfg["hidden_size"],
            "num_layers": cfg["num_layers"], "bidirectional": False, "bias": True})
        E, H = cfg["embed_size"], cfg["hidden_size"]
        return rnn + vocab_size * (E + 1 + (0 if cfg["tied"] else H))
    if kind == "SequenceClassifier":
        try:
            layer_class = cells.by_name(cfg["cell"]).layer
        except ValueError:
            return 0  # the constructor rejects it with a clear message
        E, H, D = cfg["embed_size"], cfg["hidden_size"], 2 if cfg["bidirectional"] else 1
        if min(E, H) < 1:
            return 0
        rnn = _parameter_count(layer_class, {
            "input_size": E, "hidden_size": H, "num_layers": cfg["num_layers"],
            "bidirectional": cfg["bidirectional"], "bias": True})
        return rnn + vocab_size * E + num_classes * (D * H + 1)
    G = _GATES[kind]
    H, L, D = cfg["hidden_size"], cfg["num_layers"], 2 if cfg["bidirectional"] else 1
    if min(H, L, cfg["input_size"]) < 1:
        return 0  # the constructor rejects it with a clear message
    # closed form (a loop over a hostile num_layers = 10**12 would never end):
    # layer 0 reads input_size features, the others D*R (R = proj_size or H)
    b = 2 if cfg["bias"] else 0
    P = cfg.get("proj_size", 0)
    if P < 0:
        return 0  # the constructor rejects it with a clear message
    R = P or H
    per_layer = lambda inputs: D * (G * H * (inputs + R + b) + P * H)  # noqa: E731
    peep = L * D * 3 * H if cfg.get("peephole") else 0
    return per_layer(cfg["input_size"]) + (L - 1) * per_layer(D * R) + peep


def load(path):
    """The model saved at `path` by :func:`save` (or the model of a training
    checkpoint). Raises ValueError (naming the file and the problem) for
    anything that is not such a file: another format, truncated or corrupt
    data, wrong metadata, a tensor of the wrong name, dtype or shape."""
    return read_checkpoint(path, optimizer=False)[0]


def read_checkpoint(path, optimizer=True):
    """``(model, training, optimizer_tensors)`` of a file written by
    write_checkpoint (training None and no tensors for a plain model file);
    optimizer=False checks the optimizer tensors but does not read them."""
    path = os.fspath(path)
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata()
            kind, cfg = _config_from(path, metadata)
            vocab = (_vocab_from(path, metadata)
                     if kind in ("LanguageModel", "SequenceClassifier") else None)
            toks = _tokenizers_from(path, metadata) if kind == "Seq2Seq" else None
            classes = _classes_from(path, metadata) if kind == "SequenceClassifier" else []
            count = _parameter_count(kind, cfg, len(vocab) if vocab else
                                     max(len(t) for t in toks) if toks else 0, len(classes))
            if count > MAX_ELEMENTS:  # before building anything
                raise _bad(path, "config describes more than 2^31 parameters")
            try:
                if toks is not None:
                    model = Seq2Seq(*toks, **cfg, seed=0)
                elif kind == "SequenceClassifier":
                    model = SequenceClassifier(vocab, classes, **cfg, seed=0)
                elif vocab is not None:
                    model = LanguageModel(vocab, **cfg, seed=0)
                else:
                    model = LAYERS[kind](**cfg, seed=0)
            except (TypeError, ValueError) as exc:
                raise _bad(path, f"config rejected: {exc}") from None
            training = _json(path, metadata, "training") if "training" in metadata else None
            stored = metadata.get("dtype", "float32")
            if stored not in ("float32", "int8") or (stored == "int8" and not isinstance(
                    model, (RNNBase, LanguageModel))):
                raise _bad(path, f"dtype {stored!r} is not 'float32' or 'int8' (int8: layers "
                                 "and language models)")
            if stored == "int8":
                return _read_int8(path, f, model), training, {}
            shapes = {k: v.shape for k, v in model.state_dict().items()}
            names = set(f.keys())
            extra = {n for n in names if n.startswith(OPTIMIZER_PREFIX)} if training else set()
            if names - extra != set(shapes):
                raise _bad(path, f"tensors {sorted((names - extra) ^ set(shapes))} missing or "
                                 "unexpected")
            expected = dict(shapes, **{n: None for n in extra})
            total = 0
            for name, shape in expected.items():
                sl = f.get_slice(name)
                dtype, got = sl.get_dtype(), tuple(sl.get_shape())
                allowed = ("F32", "F16") if shape is not None else ("F32",)
                if dtype not in allowed or (shape is not None and got != shape):
                    raise _bad(path, f"tensor {name!r} is {dtype} {got}, expected "
                                     f"{' or '.join(allowed)} {shape}")
                total += int(np.prod(got, dtype=object))
            if total > 2 * MAX_ELEMENTS:
                raise _bad(path, "the optimizer tensors are larger than the model allows")
            model.load_state_dict({name: f.get_tensor(name).astype(np.float32, copy=False)
                                   for name in shapes})
            buffers = {n[len(OPTIMIZER_PREFIX):]: f.get_tensor(n)
                       for n in sorted(extra)} if optimizer else {}
    except SafetensorError as exc:
        raise _bad(path, str(exc)) from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise _bad(path, str(exc)) from None
    return model, training, buffers


def _read_int8(path, f, model):
    """The int8 copy of `model` (a float model of the file's configuration)
    holding the file's tensors: names, dtypes and shapes those of
    rnncore.quantize(model), then the values checked (weights in [-127,
    127], scales finite and >= 0)."""
    expected = {k: (v.dtype, v.shape) for k, v in quantize(model).state_dict().items()}
    names = set(f.keys())
    if names != set(expected):
        raise _bad(path, f"tensors {sorted(names ^ set(expected))} missing or unexpected")
    codes = {np.dtype(np.int8): "I8", np.dtype(np.float32): "F32"}
    for name, (dt, shape) in expected.items():
        sl = f.get_slice(name)
        got_dtype, got = sl.get_dtype(), tuple(sl.get_shape())
        if got_dtype != codes[dt] or got != tuple(shape):
            raise _bad(path, f"tensor {name!r} is {got_dtype} {got}, expected {codes[dt]} "
                             f"{tuple(shape)}")
    tensors = {name: f.get_tensor(name) for name in expected}
    try:
        if isinstance(model, LanguageModel):
            return lm_from_quantized_state(model, tensors, path)
        return from_quantized_state(model, tensors, path)
    except ValueError as exc:
        raise ValueError(f"rnncore.load: {exc}") from None
