"""``QuantizedLanguageModel``: an int8 copy of a LanguageModel for inference
(``evaluate``, ``generate``, ``forward``). The embedding is int8 with one
scale per token row (a lookup dequantizes its rows), the recurrent layers
are rnncore.engine.quantized copies, the decoder is an int8 linear layer
(one scale per vocabulary row; activations quantized per row at the
product, as every int8 product here). A tied decoder shares the embedding's
int8 rows. Training calls raise TypeError."""
import numpy as np

from ..engine import quantized, runtime
from ..engine.checks import as_float32, shape_str
from .model import LanguageModel

__all__ = ["QuantizedLanguageModel"]

SCALE = quantized.SCALE_SUFFIX


class _Int8Decoder:
    """y (M, H) -> logits (M, V) through the int8 decoder rows."""

    def __init__(self, w, bias):
        self.w, self.bias = w, bias

    def __call__(self, y):
        y = np.ascontiguousarray(y, np.float32)
        return runtime.ops().qlinear(y, self.w, self.bias, runtime.get_num_threads())


class QuantizedLanguageModel(LanguageModel):
    """An int8 LanguageModel; build it with ``rnncore.quantize(lm)`` or
    ``rnncore.load`` of a quantized file."""

    dtype = "int8"

    @classmethod
    def _build(cls, lm, rnn, arrays, per_tensor):
        """A copy with lm's vocabulary and configuration, the int8 recurrent
        layers `rnn` and `arrays`: encoder / decoder (wq, sw) pairs and the
        float32 decoder bias."""
        q = cls.__new__(cls)
        q.vocab, q.cell, q.embed_size, q.tied = lm.vocab, lm.cell, lm.embed_size, lm.tied
        q.init_scale, q.per_tensor = lm.init_scale, bool(per_tensor)
        q.generator = np.random.default_rng(0)
        q.rnn = rnn
        q.params = {}  # the embedding's int8 rows (looked up), the decoder bias
        wq, sw = (np.array(v, order="C", copy=True) for v in arrays["encoder.weight"])
        wq.flags.writeable = sw.flags.writeable = False
        q.params["encoder.weight"], q.params["encoder.weight" + SCALE] = wq, sw
        bias = np.array(arrays["decoder.bias"], np.float32, order="C", copy=True)
        bias.flags.writeable = False
        q.params["decoder.bias"] = bias
        dec = arrays["encoder.weight" if q.tied else "decoder.weight"]
        q._decoder = quantized.Int8Weight(*dec, 1, dec[0].shape[0])  # packed for the kernels
        return q

    def _layout(self):
        return ["encoder.weight", ("rnn.", self.rnn)] + \
            ([] if self.tied else ["decoder.weight"]) + ["decoder.bias"]

    def named_parameters(self):
        """As LanguageModel's, each int8 weight followed by its row scales
        (name + '_scale')."""
        for part in self._layout():
            if part == "encoder.weight":
                yield part, self.params[part]
                yield part + SCALE, self.params[part + SCALE]
            elif part == "decoder.weight":
                wq, sw = self._decoder.int8()
                yield part, wq
                yield part + SCALE, sw
            elif isinstance(part, str):
                yield part, self.params[part]
            else:
                prefix, layer = part
                for name, p in layer.named_parameters():
                    yield prefix + name, p

    # ------------------------------------------------------------ running

    def _embed(self, ids):
        wq, sw = self.params["encoder.weight"], self.params["encoder.weight" + SCALE]
        return wq[ids].astype(np.float32) * sw[ids][..., None]

    def _step_decoder(self):
        return _Int8Decoder(self._decoder, self.params["decoder.bias"])

    def _logits(self, y):
        return self._step_decoder()(y)

    def weight_bytes(self):
        """Resident bytes of the weights as the kernels hold them."""
        own = sum(v.nbytes for v in self.params.values())
        return own + self._decoder.nbytes + self.rnn.weight_bytes()

    # ------------------------------------------------------------ what it is not

    def _no_training(self, what):
        raise TypeError(f"{what}: QuantizedLanguageModel is an int8 copy for inference only; "
                        "train the float model and quantize it again")

    def train_step(self, *args, **kwargs):
        self._no_training("train_step")

    def zero_grad(self):
        self._no_training("zero_grad")

    def load_state_dict(self, state_dict, strict=True):
        raise TypeError("load_state_dict: QuantizedLanguageModel is read-only; build it with "
                        "rnncore.quantize or rnncore.load")

    @property
    def grads(self):
        self._no_training("grads")

    def __repr__(self):
        return super().__repr__()[:-1] + ", dtype='int8')"


def quantize_lm(lm, per_tensor=False):
    """The int8 copy of LanguageModel lm (rnncore.quantize)."""
    arrays = {}
    for name in ("encoder.weight", "decoder.weight"):
        if name in lm.params:
            quantized._finite(name, lm.params[name])
            arrays[name] = quantized.reference.quantize_weight(lm.params[name], per_tensor)
    quantized._finite("decoder.bias", lm.params["decoder.bias"])
    arrays["decoder.bias"] = lm.params["decoder.bias"]
    try:
        rnn = quantized.quantize_layer(lm.rnn, per_tensor=per_tensor)
    except ValueError as exc:
        raise ValueError(str(exc).replace("parameter ", "parameter rnn.")) from None
    return QuantizedLanguageModel._build(lm, rnn, arrays, per_tensor)


def lm_from_quantized_state(lm, tensors, where="state"):
    """The int8 copy of a LanguageModel of lm's configuration holding
    `tensors` (a QuantizedLanguageModel's state_dict), every tensor checked."""
    own = ["encoder.weight"] + ([] if lm.tied else ["decoder.weight"])
    expected = set(own) | {n + SCALE for n in own} | {"decoder.bias"}
    rnn_tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("rnn.")}
    rest = {k: v for k, v in tensors.items() if not k.startswith("rnn.")}
    if set(rest) != expected:
        raise ValueError(f"{where}: int8 tensors do not match the model: missing "
                         f"{sorted(expected - set(rest))}, unexpected {sorted(set(rest) - expected)}")
    arrays = {}
    for name in own:
        wq, sw = np.asarray(rest[name]), np.asarray(rest[name + SCALE])
        shape = lm.params[name].shape
        if wq.dtype != np.int8 or wq.shape != shape or (wq == -128).any():
            raise ValueError(f"{where}: {name} must be int8 in [-127, 127] of shape "
                             f"{shape_str(shape)}, got {wq.dtype} {shape_str(wq.shape)}")
        if sw.dtype != np.float32 or sw.shape != (shape[0],) or not np.isfinite(sw).all() \
                or (sw < 0).any():
            raise ValueError(f"{where}: {name}{SCALE} must be float32 of shape ({shape[0]},), "
                             f"finite and >= 0, got {sw.dtype} {shape_str(sw.shape)}")
        arrays[name] = (wq, sw)
    bias = as_float32("decoder.bias", rest["decoder.bias"])
    if bias.shape != lm.params["decoder.bias"].shape:
        raise ValueError(f"{where}: decoder.bias must have shape "
                         f"{shape_str(lm.params['decoder.bias'].shape)}, got {shape_str(bias.shape)}")
    arrays["decoder.bias"] = bias
    rnn = quantized.from_quantized_state(lm.rnn, rnn_tensors, where)
    per_tensor = rnn.per_tensor and all(np.all(a[1] == a[1][0]) for k, a in arrays.items()
                                        if isinstance(a, tuple))
    return QuantizedLanguageModel._build(lm, rnn, arrays, per_tensor)
