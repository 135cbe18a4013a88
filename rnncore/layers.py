"""The public layers: RNN, LSTM and GRU with the constructor arguments, call
signature, shapes, return values, initialisation and parameter names of
``torch.nn.RNN``, ``torch.nn.LSTM`` and ``torch.nn.GRU``.

Parameters are float32 NumPy arrays, read-only: assign a new array
(``layer.weight_hh_l0 = w``) or call ``load_state_dict`` to change them. Each
assignment is validated and re-packed once into the kernels' layout, so calls
never re-pack.
"""
from collections import namedtuple

import numpy as np

from . import _api
from ._api import as_float32, as_state, check_int, check_shape, shape_str

__all__ = ["RNN", "LSTM", "GRU", "IncompatibleKeys"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _make_rng(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        seed = check_int("seed", seed, minimum=0)
    return np.random.default_rng(seed)


class RNNBase:
    """Shared machinery of RNN, LSTM and GRU (use those)."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, seed=None):
        if mode not in _api.MODES:
            raise ValueError(f"mode must be one of {_api.MODES}, got {mode!r}")
        d = self.__dict__  # plain attributes, set before __setattr__ knows the parameters
        d["mode"] = mode
        d["input_size"] = check_int("input_size", input_size, minimum=1)
        d["hidden_size"] = check_int("hidden_size", hidden_size, minimum=1)
        d["num_layers"] = check_int("num_layers", num_layers, minimum=1)
        d["bias"] = _check_bool("bias", bias)
        d["batch_first"] = _check_bool("batch_first", batch_first)
        d["bidirectional"] = _check_bool("bidirectional", bidirectional)
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.floating, np.integer)):
            raise TypeError(f"dropout must be a number in [0, 1], got {type(dropout).__name__}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        d["dropout"] = float(dropout)  # accepted for compatibility; no effect at inference
        d["_params"] = {}
        d["_packed"] = {}
        d["_shapes"] = self._parameter_shapes()
        self.reset_parameters(seed=seed)

    # ------------------------------------------------------------ parameters

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def gates(self):
        return _api.GATES[self.mode]

    def _parameter_shapes(self):
        """PyTorch's parameter names, in its order, with their shapes."""
        G, H = self.gates, self.hidden_size
        shapes = {}
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                layer_in = self.input_size if layer == 0 else H * self.num_directions
                shapes["weight_ih" + sfx] = (G * H, layer_in)
                shapes["weight_hh" + sfx] = (G * H, H)
                if self.bias:
                    shapes["bias_ih" + sfx] = (G * H,)
                    shapes["bias_hh" + sfx] = (G * H,)
        return shapes

    def reset_parameters(self, seed=None):
        """Draw every parameter from U(-1/sqrt(H), 1/sqrt(H)) as PyTorch does,
        in PyTorch's parameter order, from ``seed`` (an int, a
        ``numpy.random.Generator`` or None for fresh entropy)."""
        rng = _make_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self._shapes.items():
            self._store(name, rng.uniform(-bound, bound, size=shape).astype(np.float32))

    def _validated(self, name, value):
        arr = as_float32(name, value)
        expected = self._shapes[name]
        rows = f"{self.gates}*H"
        if len(expected) == 1:
            what = f"({rows},)"
        elif name.startswith("weight_hh"):
            what = f"({rows}, H)"
        else:
            what = f"({rows}, input features)"
        check_shape(name, arr, expected, what)
        return arr

    def _store(self, name, arr):
        """Keep a read-only float32 C-contiguous copy and its packed form."""
        arr = np.array(arr, dtype=np.float32, order="C", copy=True)
        arr.flags.writeable = False
        if name.startswith("weight"):  # pack first: a failure leaves both unchanged
            self._packed[name] = _api.pack_weights(self.mode, self.hidden_size, arr)
        self._params[name] = arr

    def __getattr__(self, name):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in self.__dict__.get("_shapes", ()):
            self._store(name, self._validated(name, value))
        elif name in self.__dict__ or name in ("mode", "input_size", "hidden_size", "num_layers",
                                               "bias", "batch_first", "bidirectional", "dropout"):
            raise AttributeError(f"{name} is fixed at construction; build a new layer instead")
        else:
            super().__setattr__(name, value)

    def named_parameters(self):
        """(name, array) pairs in PyTorch's order."""
        return list(self._params.items())

    def parameters(self):
        return list(self._params.values())

    def state_dict(self):
        """Parameters by PyTorch name (the read-only arrays themselves)."""
        return dict(self._params)

    def load_state_dict(self, state_dict, strict=True):
        """Load parameters by PyTorch name; a ``torch`` state dict converted with
        ``{k: v.numpy() for k, v in sd.items()}`` loads unchanged.

        With ``strict`` (the default) missing or unexpected keys raise KeyError;
        a wrong shape or dtype always raises. Nothing is changed unless every
        entry is valid. Returns ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        missing = [k for k in self._shapes if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._shapes]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = {k: self._validated(k, state_dict[k]) for k in self._shapes if k in state_dict}
        for k, v in staged.items():
            self._store(k, v)
        return IncompatibleKeys(missing, unexpected)

    def _layer_params(self):
        """Per layer, per direction: the kernels' view of the parameters."""
        out = []
        for layer in range(self.num_layers):
            dirs = []
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                p = self._params
                dirs.append({
                    "w_ih": p["weight_ih" + sfx], "w_hh": p["weight_hh" + sfx],
                    "b_ih": p.get("bias_ih" + sfx), "b_hh": p.get("bias_hh" + sfx),
                    "w_ih_p": self._packed["weight_ih" + sfx],
                    "w_hh_p": self._packed["weight_hh" + sfx],
                })
            out.append(dirs)
        return out

    # ------------------------------------------------------------ forward

    def _check_input(self, x):
        """x as float32 C-contiguous, plus (batched, T, N)."""
        x = as_float32("x", x)
        seq = "(N, T, I)" if self.batch_first else "(T, N, I)"
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be 3-D {seq} or 2-D (T, I) for an unbatched sequence, "
                             f"got {x.ndim}-D shape {shape_str(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x must have input_size = {self.input_size} features in its last "
                             f"dimension, got shape {shape_str(x.shape)}")
        batched = x.ndim == 3
        if not batched:
            x = x[:, None, :] if not self.batch_first else x[None, :, :]
        T, N = (x.shape[1], x.shape[0]) if self.batch_first else x.shape[:2]
        if T == 0:
            raise ValueError(f"x is an empty sequence (T = 0), shape {shape_str(x.shape)}")
        if N == 0:
            raise ValueError(f"x has an empty batch (N = 0), shape {shape_str(x.shape)}")
        return np.ascontiguousarray(x), batched, N

    def _check_state(self, name, value, batched, N):
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        if batched:
            arr = as_state(name, value, (LD, N, H), "(num_layers*num_directions, N, hidden_size)")
        else:
            arr = as_state(name, value, (LD, H), "(num_layers*num_directions, hidden_size)")
            arr = arr[:, None, :]
        return arr

    def _run(self, x, h0, c0):
        x, batched, N = self._check_input(x)
        if h0 is not None:
            h0 = self._check_state("h0", h0, batched, N)
        if c0 is not None:
            c0 = self._check_state("c0", c0, batched, N)
        y, h_n, c_n = _api.run_layers(
            self.mode, x, h0, c0, self._layer_params(), hidden_size=self.hidden_size,
            bidirectional=self.bidirectional, batch_first=self.batch_first)
        if not batched:
            y = y[:, 0, :] if not self.batch_first else y[0]
            h_n = h_n[:, 0, :]
            c_n = c_n[:, 0, :] if c_n is not None else None
        return y, h_n, c_n

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        for flag, default in (("bias", True), ("batch_first", False), ("bidirectional", False)):
            if getattr(self, flag) != default:
                s += f", {flag}={getattr(self, flag)}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class _SingleStateRNN(RNNBase):
    """RNN and GRU: one state array ``h``."""

    def forward(self, x, hx=None, *, h0=None):
        """``output, h_n = layer(x, h0=None)``.

        Parameters
        ----------
        x : array ``(T, N, input_size)``, ``(N, T, input_size)`` if batch_first,
            or ``(T, input_size)`` unbatched. float32; other real float types are
            converted. Any strides or memory order.
        hx (alias h0) : array ``(num_layers*D, N, hidden_size)``
            (``(num_layers*D, hidden_size)`` unbatched) or None for zeros.

        Returns
        -------
        output : ``(T, N, D*hidden_size)`` (``(N, T, ...)`` if batch_first;
            ``(T, D*hidden_size)`` unbatched), the top layer's h_t for every t.
        h_n : same shape as h0, the last step of every layer and direction.
        """
        if h0 is not None:
            if hx is not None:
                raise ValueError("pass the initial state as hx or as h0, not both")
            hx = h0
        y, h_n, _ = self._run(x, hx, None)
        return y, h_n


class RNN(_SingleStateRNN):
    """Elman RNN, ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` with
    ``act`` = tanh or relu; arguments as ``torch.nn.RNN``.

    ``seed`` (keyword-only): int, ``numpy.random.Generator`` or None, for the
    U(-1/sqrt(H), 1/sqrt(H)) initialisation.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.__dict__["nonlinearity"] = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         seed=seed)


class GRU(_SingleStateRNN):
    """GRU, gate order r, z, n, reset applied after the recurrent product
    (``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``); arguments as
    ``torch.nn.GRU``. ``seed`` as for :class:`RNN`."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, seed=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, seed=seed)


class LSTM(RNNBase):
    """LSTM, gate order i, f, g, o; arguments as ``torch.nn.LSTM`` (without
    ``proj_size``). ``seed`` as for :class:`RNN`."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, seed=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, seed=seed)

    def forward(self, x, hx=None):
        """``output, (h_n, c_n) = lstm(x, (h0, c0))``.

        Parameters
        ----------
        x : as for :meth:`RNN.forward`.
        hx : a pair ``(h0, c0)`` of arrays ``(num_layers*D, N, hidden_size)``
            (``(num_layers*D, hidden_size)`` unbatched), or None for zeros.

        Returns
        -------
        output : ``(T, N, D*hidden_size)`` (``(N, T, ...)`` if batch_first).
        (h_n, c_n) : each shaped like h0.
        """
        h0 = c0 = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("hx must be a pair (h0, c0) for LSTM, got "
                                 + (f"a sequence of length {len(hx)}"
                                    if isinstance(hx, (tuple, list)) else type(hx).__name__))
            h0, c0 = hx
            if h0 is None or c0 is None:
                raise ValueError("hx must be a pair (h0, c0) of arrays, got None in it")
        y, h_n, c_n = self._run(x, h0, c0)
        return y, (h_n, c_n)
