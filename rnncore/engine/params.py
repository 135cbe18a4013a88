"""``ParameterModel``: the parameter bookkeeping of the task models
(language models, sequence classifiers, sequence to sequence): their own
float32 arrays (``self.params``, shapes in ``self._own``) and the parameters
of their recurrent layers under a prefix, in one order that names them in
model files and in ``rnncore.optim``."""
import numpy as np

from .checks import as_float32, check_shape

__all__ = ["ParameterModel"]


class ParameterModel:
    """Mixin. A subclass sets ``self.params`` (name -> array) and
    ``self._own`` (name -> shape), defines ``_layout()`` (the parameters in
    order, each an own name or a ``(prefix, layer)`` pair) and calls
    ``_init_grads()`` once its layers exist."""

    def _layout(self):
        raise NotImplementedError

    def _layers(self):
        return [part for part in self._layout() if not isinstance(part, str)]

    def _init_grads(self):
        """``self.grads``: one zero array per own parameter, then the layers'
        own gradient arrays under their prefixes (the kernels add to those)."""
        self.grads = {name: np.zeros(shape, np.float32) for name, shape in self._own.items()}
        for prefix, layer in self._layers():
            self.grads.update((prefix + name, g) for name, g in layer.grads.items())

    def named_parameters(self):
        for part in self._layout():
            if isinstance(part, str):
                yield part, self.params[part]
            else:
                prefix, layer = part
                for name, p in layer.named_parameters():
                    yield prefix + name, p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    def state_dict(self):
        return dict(self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Set parameters from a mapping name -> array (names as in
        named_parameters()). strict: exactly those names. All-or-nothing:
        every value (the layers' too) is checked before any is set. Returns
        ``(missing, unexpected)`` names."""
        return self._load(state_dict, strict, copy=True)

    def _take_parameters(self, arrays):
        """load_state_dict(arrays, strict=False) for float32 C-contiguous
        arrays nobody else holds (an optimizer's new values): kept, not
        copied (see RNNBase._take_parameters)."""
        self._load(arrays, False, copy=False)

    def _load(self, state_dict, strict, copy):
        names = [n for n, _ in self.named_parameters()]
        missing = [n for n in names if n not in state_dict]
        unexpected = [k for k in state_dict if k not in names]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
        own = {}
        for name, shape in self._own.items():
            if name in state_dict:
                arr = as_float32(name, state_dict[name])
                check_shape(name, arr, shape, str(shape))
                own[name] = arr
        layers = []
        for prefix, layer in self._layers():
            sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            known = layer.state_dict()
            for k, v in sub.items():
                if k in known:
                    layer._validated(k, v)
            layers.append((layer, sub))
        for layer, sub in layers:
            if copy:
                layer.load_state_dict(sub, strict=strict)
            else:
                layer._take_parameters(sub)
        for name, arr in own.items():
            self.params[name] = (np.array(arr, dtype=np.float32, order="C") if copy
                                 else np.ascontiguousarray(arr, dtype=np.float32))
        return missing, unexpected

    def trainable(self):
        """What an optimizer trains: the model itself, or, when some of its
        parameters are frozen (their names in ``self.frozen``), a view of the
        others (named_parameters, grads, load_state_dict as the model's)."""
        frozen = getattr(self, "frozen", ())
        return _Trainable(self, frozen) if frozen else self

    def zero_grad(self):
        for g in self.grads.values():  # the layers' own arrays among them
            g.fill(0.0)


class _Trainable:
    """The parameters of `model` but those named in `frozen`, as rnncore.optim
    takes them (the names and arrays stay the model's)."""

    def __init__(self, model, frozen):
        self.model, self.frozen = model, frozenset(frozen)
        self.grads = {k: g for k, g in model.grads.items() if k not in self.frozen}

    def named_parameters(self):
        return ((n, p) for n, p in self.model.named_parameters() if n not in self.frozen)

    def load_state_dict(self, state_dict, strict=False):
        if strict:
            raise ValueError("a view of the trainable parameters loads with strict=False only")
        return self.model.load_state_dict(state_dict, strict=False)

    def _take_parameters(self, arrays):
        self.model._take_parameters(arrays)
