"""A Keras 3 model's architecture and weights, from the model object (its
public API: ``keras.saving.serialize_keras_object`` and ``get_weights``) or
from a ``.keras`` file without Keras: the file is a zip of ``config.json``
(the architecture), ``metadata.json`` and ``model.weights.h5`` (HDF5, read
with h5py: ``pip install rnncore[keras]``).

The file is data only: JSON and numeric arrays are read, nothing is
unpickled or executed, and sizes are bounded before anything is read.
In the HDF5 file a layer's variables sit in ``layers/<group>/vars/<k>``
(``vars`` has the layer's name as its attribute ``name``); those of a
layer's sub-layers under the attribute path (``cell`` of a recurrent layer,
``forward_layer/cell`` and ``backward_layer/cell`` of Bidirectional,
``layer`` of TimeDistributed), in ``get_weights()`` order.
"""
import io
import json
import zipfile

import numpy as np

from .onnx_ops import MAX_ELEMENTS

__all__ = ["KerasSource", "from_model", "from_file"]

# no real model's architecture is this large; weights are bounded per array
# (MAX_ELEMENTS) and in total
MAX_CONFIG_BYTES = 64 << 20
MAX_WEIGHTS_BYTES = 16 << 30


class KerasSource:
    """What the converter reads: ``config`` (the serialized model: a dict
    with ``class_name`` and ``config``), ``weights(layer, sub)`` (the float32
    or integer arrays of a layer or of its sub-layer at attribute path `sub`)
    and ``origin`` (for messages)."""

    def __init__(self, config, weights, origin):
        self.config, self._weights, self.origin = config, weights, origin

    def weights(self, layer, sub=""):
        return self._weights(layer, sub)


def _plain(value):
    """A serialized config as JSON would give it: tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_model(model):
    """The KerasSource of a Keras model object (Keras is imported here only
    to serialize it: the caller already has it)."""
    import keras
    if not model.built:
        raise ValueError(f"Keras model {model.name!r} is not built: call it once or give it "
                         "an Input so that it has weights")
    config = _plain(keras.saving.serialize_keras_object(model))

    def weights(layer, sub):
        try:
            obj = model.get_layer(layer)
        except ValueError:
            raise ValueError(f"Keras model {model.name!r} has no layer {layer!r}") from None
        for attr in filter(None, sub.split("/")):
            obj = getattr(obj, attr)
        return [np.asarray(w) for w in obj.get_weights()]

    return KerasSource(config, weights, f"Keras model {model.name!r}")


def _read_member(archive, name, limit, path):
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise ValueError(f"{path}: {name} is {info.file_size} bytes, more than the "
                         f"{limit} this reader accepts")
    with archive.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path}: {name} holds more than {limit} bytes")
    return data


def _h5py(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{path}: reading a .keras file's weights (HDF5) needs h5py: "
                          "pip install 'rnncore[keras]' (or h5py)") from None
    return h5py


def _h5_weights(data, path):
    """weights(layer, sub) over the HDF5 bytes `data`, read whole at load."""
    h5py = _h5py(path)
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except OSError as e:
        raise ValueError(f"{path}: model.weights.h5 is not a readable HDF5 file ({e})") from None
    groups = {}  # layer name -> {sub path: [arrays]}
    with f:
        layers = f.get("layers")
        if layers is None or not isinstance(layers, h5py.Group):
            raise ValueError(f"{path}: model.weights.h5 has no 'layers' group: not a Keras 3 "
                             "weights file")
        for key, group in layers.items():
            if not isinstance(group, h5py.Group):
                continue
            found = {}

            def visit(name, obj, found=found):
                if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars":
                    found[name[:-len("vars")].rstrip("/")] = _arrays(obj, f"layers/{key}/{name}",
                                                                    path, h5py)
            group.visititems(visit)
            own = group.get("vars")
            name = own.attrs.get("name", key) if own is not None else key
            groups[name.decode() if isinstance(name, bytes) else str(name)] = found

    def weights(layer, sub):
        if layer not in groups:
            raise ValueError(f"{path}: no weights for layer {layer!r} in model.weights.h5")
        found = groups[layer]
        if sub not in found:
            raise ValueError(f"{path}: no weights for layer {layer!r}"
                             + (f" ({sub})" if sub else "") + " in model.weights.h5")
        return found[sub]

    return weights


def _arrays(group, where, path, h5py):
    """The datasets 0, 1, ... of a vars group as NumPy arrays (numeric only,
    bounded in size)."""
    keys = list(group)
    if any(not k.isdigit() for k in keys):
        raise ValueError(f"{path}: {where} holds {sorted(keys)}, expected variables 0, 1, ...")
    out = []
    for k in sorted(keys, key=int):
        ds = group[k]
        if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "fiub":
            raise ValueError(f"{path}: {where}/{k} is not a numeric array")
        if ds.size > MAX_ELEMENTS:
            raise ValueError(f"{path}: {where}/{k} has {ds.size} elements, more than "
                             f"{MAX_ELEMENTS}")
        out.append(np.asarray(ds[()]))
    return out


def from_file(path):
    """The KerasSource of a ``.keras`` file (see the module docstring)."""
    path = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such .keras file") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path}: not a .keras file (a zip archive): {e}") from None
    with archive:
        names = set(archive.namelist())
        if "config.json" not in names:
            raise ValueError(f"{path}: not a Keras 3 .keras file (no config.json in the zip; "
                             "files saved by Keras 2 as .h5 are not supported)")
        try:
            config = json.loads(_read_member(archive, "config.json", MAX_CONFIG_BYTES, path))
            meta = json.loads(_read_member(archive, "metadata.json", MAX_CONFIG_BYTES, path)) \
                if "metadata.json" in names else {}
        except (ValueError, RecursionError) as e:
            raise ValueError(f"{path}: config.json / metadata.json is not valid JSON ({e})") \
                from None
        version = str(meta.get("keras_version", "3")) if isinstance(meta, dict) else "3"
        if not version.startswith("3"):
            raise ValueError(f"{path}: saved by Keras {version}; Keras 3 files are supported")
        if not isinstance(config, dict) or "config" not in config:
            raise ValueError(f"{path}: config.json is not a serialized Keras model")
        if "model.weights.h5" in names:
            weights = _h5_weights(_read_member(archive, "model.weights.h5", MAX_WEIGHTS_BYTES,
                                               path), path)
        elif "model.weights.npz" in names:
            raise NotImplementedError(f"{path}: weights in model.weights.npz (object arrays, "
                                      "read only by unpickling) are not supported; save with "
                                      "the default HDF5 weights")
        else:
            raise ValueError(f"{path}: no model.weights.h5 in the .keras file")
    return KerasSource(config, weights, path)
