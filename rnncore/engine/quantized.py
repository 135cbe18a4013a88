"""int8 copies of the recurrent layers: ``quantize_layer(layer)`` returns a
``QuantizedRNN`` / ``QuantizedLSTM`` / ``QuantizedGRU`` with the float
layer's configuration and call signatures (``layer(x, hx, lengths=...)``,
``layer.step(x_t, state)``) whose weights are int8 with one float32 scale
per output row (or one per tensor), run by the int8 kernels (the scheme:
csrc/include/rnncore_int8.h and rnncore.reference.quantize_rows).

The copy is inference only: the training calls raise TypeError. Its
parameters are read-only; ``state_dict()`` gives, per float weight name,
the int8 array under that name and its scales under ``name + "_scale"``,
biases and peepholes as float32 (what rnncore.files stores).
"""
import threading

import numpy as np

from .. import reference
from . import runtime, stack
from .checks import as_float32, shape_str
from .layers import GRU, LSTM, RNN, make_layer

__all__ = ["Int8Weight", "quantize_layer", "from_quantized_state", "is_quantized", "QuantizedRNN",
           "QuantizedLSTM", "QuantizedGRU", "DTYPES", "SCALE_SUFFIX"]

DTYPES = ("int8",)
SCALE_SUFFIX = "_scale"
# the layer attributes a quantized copy shares with its float original
_CONFIG = ("cell", "mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
           "bidirectional", "dropout", "nonlinearity", "reset_after", "peephole", "input_forget",
           "_proj_size", "_shapes")


# Where the int8 product is slower than the fp32 kernels, large batches run
# the fp32 kernels on the dequantized weights (float32 copies made on first
# use), and rnncore.show_config() says so. Measured at 1 thread, H = 512,
# T = 100 (benchmarks/RESULTS.md, "AMD EPYC Zen 3 again"): the AVX2 int8
# paths (qkernels_avx2.c: avx2_7bit, 7-bit activations, and avx2, vpmaddubsw
# on |q| and the signed weights) are faster than fp32 at every batch (7-bit:
# x1.48-1.82 at N = 64, 2026-12-04; 8-bit: N = 16..64 x1.27-1.48 for RNN, GRU
# and LSTM on Zen 3; the kernel it replaced, both operands widened to int16, was
# x0.93-0.96 for GRU and RNN at N = 64 on Zen 5): no fallback; the generic
# path's int8 loops are x0.33-0.36 of its fp32 kernels at N = 1 and 64 on
# every cell: batches of at least this many rows fall back there. The NEON
# int8 paths (SDOT, or SMULL + SADALP on Armv8.0) are checked exact under
# qemu (.ci/arm64) but not timed on arm64 hardware: no fallback.
FP32_FALLBACK_ROWS = {"generic": 48}


def fp32_fallback():
    """What the int8 layers run on the fp32 kernels on this machine's
    int8 path (a line for show_config)."""
    c = runtime.c_ops()
    if c is None or runtime.ops() is not c:
        return "none (int8 on the NumPy reference)"
    rows = FP32_FALLBACK_ROWS.get(c.qisa())
    if rows is None:
        return f"none ({c.qisa()} int8 path: faster than fp32 at every batch)"
    return (f"batches of >= {rows} rows run the fp32 kernels on the dequantized weights "
            f"({c.qisa()} int8 path: slower there)")


def activation_range():
    """How this machine's int8 path quantizes activations (a line for
    show_config)."""
    Q = runtime.ops().qact_max()
    if Q == 127:
        return "8-bit (q in [-127, 127])"
    return (f"7-bit (q in [-{Q}, {Q}]: vpmaddubsw without VNNI, as reduce_range; "
            "RNNCORE_DISABLE_ISA=avx2_7bit for 8-bit)")


def _falls_back(N):
    c = runtime.c_ops()
    return c is not None and runtime.ops() is c and N >= FP32_FALLBACK_ROWS.get(c.qisa(), 1 << 62)


def is_quantized(model):
    """True for the int8 copies (their classes name a dtype: "int8")."""
    return isinstance(getattr(type(model), "dtype", None), str)


def check_dtype(dtype):
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r} (bf16 is not offered: "
                         "see benchmarks/RESULTS.md, int8 inference)")
    return dtype


def _finite(name, arr):
    if not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise ValueError(f"cannot quantize: parameter {name} has {bad} NaN or Inf values")


class Int8Weight:
    """An int8 weight [G*H, K] with its row scales, held once: packed for
    the kernels (``.packed``; the int8 arrays themselves are rebuilt from it
    by ``.int8()`` when asked, e.g. to save a file), or as the arrays where
    the extension is missing. ``.shape`` is the weight's."""

    def __init__(self, wq, sw, G, H):
        wq, sw = np.ascontiguousarray(wq, np.int8), np.ascontiguousarray(sw, np.float32)
        self.shape, self.G, self.H = tuple(wq.shape), G, H
        ops = runtime.c_ops()
        self.packed = None if ops is None else ops.qpack(wq, sw, G, H)
        self._arrays = None
        if self.packed is None:
            wq, sw = np.array(wq, order="C", copy=True), np.array(sw, order="C", copy=True)
            wq.flags.writeable = sw.flags.writeable = False
            self._arrays = (wq, sw)

    def int8(self):
        """(wq int8 [G*H, K], sw float32 [G*H])."""
        if self._arrays is not None:
            return self._arrays
        return runtime.c_ops().qunpack(self.packed, self.G, self.H, self.shape[1])

    @property
    def nbytes(self):
        return self.packed.nbytes if self.packed is not None else sum(a.nbytes for a in self._arrays)


class _Int8Ops:
    """The stacking loop's Ops for int8 layers: the active Ops, with the
    layer primitive replaced by its int8 form."""

    def __init__(self, ops):
        self._ops = ops

    def __getattr__(self, name):
        return getattr(self._ops, name)

    def layer_forward(self, *args, **kwargs):
        return self._ops.qlayer_forward(*args, **kwargs)


class _Quantized:
    """What QuantizedRNN, QuantizedLSTM and QuantizedGRU add to (and take away
    from) their float class."""

    dtype = "int8"

    @classmethod
    def _from_arrays(cls, float_layer, arrays, per_tensor):
        """A copy with float_layer's configuration and `arrays`: per weight
        name (int8 wq, float32 scales), per bias / peephole name float32."""
        q = cls.__new__(cls)
        d = q.__dict__
        for key in _CONFIG:
            if key in float_layer.__dict__:
                d[key] = float_layer.__dict__[key]
        d["per_tensor"] = bool(per_tensor)
        d["_version"] = 0
        d["_plans"] = threading.local()
        d["_qparams"] = {}  # name -> Int8Weight, or a float32 array (biases, peepholes)
        G, H, R = q.gates, q.hidden_size, q.state_size
        for name, value in arrays.items():
            if isinstance(value, tuple):
                rows = (1, R) if name.startswith("weight_hr") else (G, H)
                d["_qparams"][name] = Int8Weight(*value, *rows)
            else:
                arr = np.array(value, dtype=np.float32, order="C", copy=True)
                arr.flags.writeable = False
                d["_qparams"][name] = arr
        return q

    # ------------------------------------------------------------ parameters

    def __getattr__(self, name):
        """The state_dict entries as attributes (weight_ih_l0 int8,
        weight_ih_l0_scale, bias_ih_l0, ...)."""
        params = self.__dict__.get("_qparams")
        if params is not None:
            if name in params:
                v = params[name]
                return v.int8()[0] if isinstance(v, Int8Weight) else v
            if name.endswith(SCALE_SUFFIX) and name[:-len(SCALE_SUFFIX)] in params:
                return params[name[:-len(SCALE_SUFFIX)]].int8()[1]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in self.__dict__.get("_shapes", ()):
            raise TypeError(f"{type(self).__name__} is int8 and read-only: set {name} on the "
                            "float layer and quantize it again")
        super().__setattr__(name, value)

    def named_parameters(self):
        """(name, array) pairs in PyTorch's order: each weight as int8 under
        its name followed by its float32 row scales under name + '_scale';
        biases and peepholes float32."""
        out = []
        for name, v in self._qparams.items():
            if isinstance(v, Int8Weight):
                wq, sw = v.int8()
                out += [(name, wq), (name + SCALE_SUFFIX, sw)]
            else:
                out.append((name, v))
        return out

    def state_dict(self):
        return dict(self.named_parameters())

    def parameters(self):
        return [v for _, v in self.named_parameters()]

    def dequantized_state_dict(self):
        """The float32 weights the int8 ones stand for (sw * wq) and the
        biases: a float layer's ``load_state_dict`` takes it."""
        out = {}
        for name, v in self._qparams.items():
            if isinstance(v, Int8Weight):
                wq, sw = v.int8()
                v = wq.astype(np.float32) * sw[:, None]
            out[name] = v
        return out

    def weight_bytes(self):
        """Bytes of the weights as held for the kernels (int8 panels, a scale
        and a column sum per row, float32 biases): the resident weight memory."""
        return sum(v.nbytes for v in self._qparams.values())

    def _layer_params(self):
        p = self._qparams
        coupled = getattr(self, "input_forget", False)
        return self._per_direction(lambda sfx: {
            "w_ih": p["weight_ih" + sfx], "w_hh": p["weight_hh" + sfx],
            "b_ih": p.get("bias_ih" + sfx), "b_hh": p.get("bias_hh" + sfx),
            "peephole": p.get("peephole" + sfx), "input_forget": coupled,
            "w_hr": p.get("weight_hr" + sfx)})

    # ------------------------------------------------------------ forward

    def _run(self, x, h0, c0, rng=None, train=False, lengths=None):
        if train:
            self._no_training("forward_train")
        x, batched, N = self._check_input(x)
        lengths = self._check_lengths(lengths, x, batched, N)
        if h0 is not None:
            h0 = self._check_state("h0", h0, batched, N)
        if c0 is not None:
            c0 = self._check_state("c0", c0, batched, N)
        if _falls_back(N):
            y, h_n, c_n = self._fp32()._run(x, h0, c0, lengths=lengths)
            return (y, h_n, c_n) if batched else (
                y[:, 0, :] if not self.batch_first else y[0], h_n[:, 0, :],
                c_n[:, 0, :] if c_n is not None else None)
        y, h_n, c_n, _ = stack.forward(
            _Int8Ops(runtime.ops()), self.cell, x, h0, c0, self._layer_params(),
            batch_first=self.batch_first, n_threads=runtime.get_num_threads(), lengths=lengths)
        if not batched:
            y = y[:, 0, :] if not self.batch_first else y[0]
            h_n = h_n[:, 0, :]
            c_n = c_n[:, 0, :] if c_n is not None else None
        return y, h_n, c_n

    def _fp32(self):
        """The float layer of the dequantized weights (FP32_FALLBACK_ROWS),
        made on first use."""
        layer = self.__dict__.get("_fp32_layer")
        if layer is None:
            kw = {k: self.__dict__[k] for k in ("num_layers", "bias", "batch_first", "bidirectional")}
            if self.proj_size:
                kw["proj_size"] = self.proj_size
            layer = make_layer(self.cell, self.input_size, self.hidden_size, **kw, seed=0)
            layer.load_state_dict(self.dequantized_state_dict())
            self.__dict__["_fp32_layer"] = layer
        return layer

    def _step_plan(self, N):
        """The float layer's plan cache (RNNBase._step_plan) on the int8 step plan."""
        if _falls_back(N):
            return self._fp32()._step_plan(N)
        ops, n_threads = runtime.ops(), runtime.get_num_threads()
        key = (N, n_threads, self._version, ops)
        cached = getattr(self._plans, "plan", None)
        if cached is None or cached[0] != key:
            plan = None if self.proj_size else ops.qstep_plan(
                self.cell, N, self.input_size, self.hidden_size,
                [d[0] for d in self._layer_params()], n_threads)
            cached = self._plans.plan = (key, plan)
        return cached[1]

    # ------------------------------------------------------------ what it is not

    def _no_training(self, what):
        raise TypeError(f"{what}: {type(self).__name__} is an int8 copy for inference only; "
                        "train the float layer and quantize it again")

    def forward_train(self, *args, **kwargs):
        self._no_training("forward_train")

    def backward(self, *args, **kwargs):
        self._no_training("backward")

    def zero_grad(self):
        self._no_training("zero_grad")

    def reset_parameters(self, seed=None):
        self._no_training("reset_parameters")

    def load_state_dict(self, state_dict, strict=True):
        raise TypeError(f"load_state_dict: {type(self).__name__} is read-only; build it with "
                        "rnncore.quantize or rnncore.load")

    @property
    def grads(self):
        self._no_training("grads")

    def to_torch(self):
        raise TypeError("to_torch: an int8 layer has no torch.nn equivalent here; convert the "
                        "float layer")

    def to_onnx(self, path=None, *, initial_state=False):
        raise TypeError("to_onnx: export the float layer; ONNX Runtime's quantize_dynamic "
                        "quantizes it")

    def extra_repr(self):
        return super().extra_repr() + f", dtype='int8'" + (", per_tensor=True" if self.per_tensor else "")


class QuantizedRNN(_Quantized, RNN):
    """An int8 copy of an :class:`rnncore.RNN` (see rnncore.engine.quantized)."""


class QuantizedLSTM(_Quantized, LSTM):
    """An int8 copy of an :class:`rnncore.LSTM` (see rnncore.engine.quantized)."""


class QuantizedGRU(_Quantized, GRU):
    """An int8 copy of an :class:`rnncore.GRU` (see rnncore.engine.quantized)."""


_CLASSES = {RNN: QuantizedRNN, LSTM: QuantizedLSTM, GRU: QuantizedGRU}


def _class_of(layer):
    for float_cls, q_cls in _CLASSES.items():
        if type(layer) is float_cls:
            return q_cls
    raise TypeError(f"cannot quantize a {type(layer).__name__}: expected rnncore.RNN, LSTM or GRU")


def quantize_layer(layer, dtype="int8", *, per_tensor=False):
    """An int8 copy of an RNN, LSTM or GRU: every weight quantized
    symmetrically (one scale per output row, or per tensor with
    ``per_tensor``), biases and peepholes kept in float32."""
    check_dtype(dtype)
    if is_quantized(layer):
        raise ValueError(f"the {type(layer).__name__} is already quantized ({layer.dtype})")
    cls = _class_of(layer)
    arrays = {}
    for name, value in layer.named_parameters():
        _finite(name, value)
        arrays[name] = reference.quantize_weight(value, per_tensor) if name.startswith("weight") \
            else value
    return cls._from_arrays(layer, arrays, per_tensor)


def from_quantized_state(float_layer, tensors, where="state"):
    """The int8 copy of a layer of float_layer's configuration holding
    `tensors` (a state_dict of a quantized layer: int8 weights, float32
    scales, biases); every tensor checked (shape, dtype, range, scales finite
    and >= 0), errors naming `where` and the tensor."""
    cls = _class_of(float_layer)
    shapes = float_layer._shapes
    expected = set(shapes) | {k + SCALE_SUFFIX for k in shapes if k.startswith("weight")}
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise ValueError(f"{where}: int8 tensors do not match the layer: missing {missing}, "
                         f"unexpected {unexpected}")
    arrays = {}
    for name, shape in shapes.items():
        v = np.asarray(tensors[name])
        if name.startswith("weight"):
            sw = np.asarray(tensors[name + SCALE_SUFFIX])
            if v.dtype != np.int8 or v.shape != tuple(shape):
                raise ValueError(f"{where}: {name} must be int8 of shape {shape_str(shape)}, got "
                                 f"{v.dtype} {shape_str(v.shape)}")
            if (v == -128).any():
                raise ValueError(f"{where}: {name} holds -128 (int8 weights are in [-127, 127])")
            if sw.dtype != np.float32 or sw.shape != (shape[0],):
                raise ValueError(f"{where}: {name}{SCALE_SUFFIX} must be float32 of shape "
                                 f"({shape[0]},) (one scale per output row), got {sw.dtype} "
                                 f"{shape_str(sw.shape)}")
            if not (np.isfinite(sw).all() and (sw >= 0).all()):
                raise ValueError(f"{where}: {name}{SCALE_SUFFIX} must be finite and >= 0")
            arrays[name] = (v, sw)
        else:
            arr = as_float32(name, v)
            if arr.shape != tuple(shape):
                raise ValueError(f"{where}: {name} must have shape {shape_str(shape)}, got "
                                 f"{shape_str(arr.shape)}")
            arrays[name] = arr
    per_tensor = all(np.all(a[1] == a[1][0]) for a in arrays.values() if isinstance(a, tuple))
    return cls._from_arrays(float_layer, arrays, per_tensor)
