"""``rnncore.quantize(model, dtype="int8")``: an int8 copy of a recurrent
layer (RNN, LSTM, GRU with their variants) or of a LanguageModel, for
inference on the int8 kernels (the scheme: csrc/include/rnncore_int8.h).
The copy keeps the original's call signatures; training calls on it raise
TypeError. bf16 is not offered (see benchmarks/RESULTS.md, "int8
inference": the measurement behind that)."""
from .engine import quantized
from .engine.layers import RNNBase
from .lm import LanguageModel
from .lm.quantized import QuantizedLanguageModel, quantize_lm

__all__ = ["quantize", "is_quantized"]

is_quantized = quantized.is_quantized


def quantize(model, dtype="int8", *, per_tensor=False):
    """An int8 copy of `model` (an rnncore RNN, LSTM, GRU or LanguageModel):
    weights int8 with one float32 scale per output row (``per_tensor=True``:
    one per weight matrix), activations quantized per row at every product,
    int32 sums, float32 biases, gates and cell state. The model itself is
    unchanged. Raises ValueError for an unknown dtype, a model that is
    already quantized, or weights holding NaN or Inf (naming the
    parameter); TypeError for other kinds of model."""
    quantized.check_dtype(dtype)
    if is_quantized(model):
        raise ValueError(f"the {type(model).__name__} is already quantized ({model.dtype})")
    if isinstance(model, QuantizedLanguageModel):  # pragma: no cover (is_quantized catches it)
        raise ValueError("the LanguageModel is already quantized")
    if isinstance(model, LanguageModel):
        return quantize_lm(model, per_tensor)
    if isinstance(model, RNNBase):
        return quantized.quantize_layer(model, dtype, per_tensor=per_tensor)
    raise TypeError(f"rnncore.quantize takes an rnncore RNN, LSTM, GRU or LanguageModel, got "
                    f"{type(model).__name__}")
