"""The public layers: RNN, LSTM and GRU with the constructor arguments, call
signature, shapes, return values, initialisation and parameter names of
``torch.nn.RNN``, ``torch.nn.LSTM`` and ``torch.nn.GRU``.

Parameters are float32 NumPy arrays, read-only: assign a new array
(``layer.weight_hh_l0 = w``) or call ``load_state_dict`` to change them. Each
assignment is validated and re-packed once into the kernels' layout, so calls
never re-pack.

Training: ``out, h_n, tape = layer.forward_train(x, hx)`` then
``dx, dhx = layer.backward(tape, d_out, d_hn)`` accumulates the parameter
gradients into ``layer.grads`` (PyTorch's names and shapes);
``layer.zero_grad()`` clears them. See rnncore.optim for the optimizers.
"""
import threading
import weakref
from collections import namedtuple

import numpy as np

from . import cells, runtime, stack
from .checks import as_float32, as_state, check_bool, check_int, check_shape, make_rng, shape_str

__all__ = ["RNN", "LSTM", "GRU", "RNNBase", "IncompatibleKeys", "Tape"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class RNNBase:
    """Shared machinery of RNN, LSTM and GRU (use those)."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, seed=None):
        d = self.__dict__  # plain attributes, set before __setattr__ knows the parameters
        d["cell"] = cells.cell(mode)
        d["mode"] = mode
        d["input_size"] = check_int("input_size", input_size, minimum=1)
        d["hidden_size"] = check_int("hidden_size", hidden_size, minimum=1)
        d["num_layers"] = check_int("num_layers", num_layers, minimum=1)
        d["bias"] = check_bool("bias", bias)
        d["batch_first"] = check_bool("batch_first", batch_first)
        d["bidirectional"] = check_bool("bidirectional", bidirectional)
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.floating, np.integer)):
            raise TypeError(f"dropout must be a number in [0, 1], got {type(dropout).__name__}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        d["dropout"] = float(dropout)  # between stacked layers, in forward_train only
        d["_params"] = {}
        d["_packed"] = {}
        d["_version"] = 0  # bumped by every parameter change: tapes of older versions are stale
        d["_tape_pool"] = []  # tape buffers consumed by backward, reused by forward_train
        d["_plans"] = threading.local()  # step(): a compiled plan (with its workspace) per thread
        d["_shapes"] = self._parameter_shapes()
        rng = make_rng(seed)
        self.reset_parameters(seed=rng)
        # the dropout masks' own stream, seeded after the parameters
        d["generator"] = np.random.default_rng(rng.integers(2**63))
        d["grads"] = {k: np.zeros(v, dtype=np.float32) for k, v in self._shapes.items()}

    # ------------------------------------------------------------ parameters

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def gates(self):
        return self.cell.gates

    @property
    def proj_size(self):
        """LSTM's projection size R (0: none; RNN and GRU always 0)."""
        return self.__dict__.get("_proj_size", 0)

    @property
    def state_size(self):
        """Width of h (and of each direction's output): proj_size, or
        hidden_size without a projection."""
        return self.proj_size or self.hidden_size

    def _parameter_shapes(self):
        """PyTorch's parameter names, in its order, with their shapes."""
        G, H, R = self.gates, self.hidden_size, self.state_size
        shapes = {}
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                layer_in = self.input_size if layer == 0 else R * self.num_directions
                shapes["weight_ih" + sfx] = (G * H, layer_in)
                shapes["weight_hh" + sfx] = (G * H, R)
                if self.bias:
                    shapes["bias_ih" + sfx] = (G * H,)
                    shapes["bias_hh" + sfx] = (G * H,)
                if self.proj_size:
                    shapes["weight_hr" + sfx] = (R, H)
                if getattr(self, "peephole", False):
                    shapes["peephole" + sfx] = (3 * H,)
        return shapes

    def reset_parameters(self, seed=None):
        """Draw every parameter from U(-1/sqrt(H), 1/sqrt(H)) as PyTorch does,
        in PyTorch's parameter order, from ``seed`` (an int, a
        ``numpy.random.Generator`` or None for fresh entropy)."""
        rng = make_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self._shapes.items():
            self._store(name, rng.uniform(-bound, bound, size=shape).astype(np.float32))

    def _validated(self, name, value):
        arr = as_float32(name, value)
        expected = self._shapes[name]
        rows = f"{self.gates}*H"
        if name.startswith("peephole"):
            what = "(3*H,)"
        elif len(expected) == 1:
            what = f"({rows},)"
        elif name.startswith("weight_hh"):
            what = f"({rows}, proj_size)" if self.proj_size else f"({rows}, H)"
        elif name.startswith("weight_hr"):
            what = "(proj_size, H)"
        else:
            what = f"({rows}, input features)"
        check_shape(name, arr, expected, what)
        return arr

    def _store(self, name, arr, copy=True):
        """Keep a read-only float32 C-contiguous copy (without `copy`: arr
        itself, which must be one) and its packed form."""
        arr = (np.array(arr, dtype=np.float32, order="C") if copy
               else np.ascontiguousarray(arr, dtype=np.float32))
        arr.flags.writeable = False
        if name.startswith("weight_hr"):  # the projection: one gate of R units
            self._packed[name] = runtime.pack(cells.cell("RNN_TANH"), self.proj_size, arr)
        elif name.startswith("weight"):  # pack first: a failure leaves both unchanged
            self._packed[name] = runtime.pack(self.cell, self.hidden_size, arr)
        self._params[name] = arr
        self.__dict__["_version"] += 1

    def __getattr__(self, name):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in self.__dict__.get("_shapes", ()):
            self._store(name, self._validated(name, value))
        elif name == "generator":
            if not isinstance(value, np.random.Generator):
                raise TypeError(f"generator must be a numpy.random.Generator, got {type(value).__name__}")
            self.__dict__["generator"] = value
        elif name in self.__dict__ or name in ("mode", "cell", "input_size", "hidden_size", "num_layers",
                                               "bias", "batch_first", "bidirectional", "dropout",
                                               "reset_after", "peephole", "input_forget",
                                               "proj_size", "state_size"):
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
        return self._load(state_dict, strict, copy=True)

    def _take_parameters(self, arrays):
        """load_state_dict(arrays, strict=False) for arrays nobody else holds
        (an optimizer's new values): kept as they are, not copied. Copying
        took 13 of the 60 ms of an SGD step over a 10k-word LM's 14.5 M
        parameters."""
        self._load(arrays, False, copy=False)

    def _load(self, state_dict, strict, copy):
        if not hasattr(state_dict, "items"):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        missing = [k for k in self._shapes if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._shapes]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = {k: self._validated(k, state_dict[k]) for k in self._shapes if k in state_dict}
        for k, v in staged.items():
            self._store(k, v, copy)
        return IncompatibleKeys(missing, unexpected)

    def _per_direction(self, entry):
        """[layer][direction] -> entry(suffix), suffix as in the parameter
        names ("_l0", "_l1_reverse", ...)."""
        return [[entry(f"_l{layer}" + ("_reverse" if direction else ""))
                 for direction in range(self.num_directions)]
                for layer in range(self.num_layers)]

    def _layer_params(self):
        """Per layer, per direction: the Ops' view of the parameters
        (rnncore.engine.ops)."""
        p, packed = self._params, self._packed
        coupled = getattr(self, "input_forget", False)
        return self._per_direction(lambda sfx: {
            "w_ih": p["weight_ih" + sfx], "w_hh": p["weight_hh" + sfx],
            "b_ih": p.get("bias_ih" + sfx), "b_hh": p.get("bias_hh" + sfx),
            "w_ih_p": packed["weight_ih" + sfx], "w_hh_p": packed["weight_hh" + sfx],
            "peephole": p.get("peephole" + sfx), "input_forget": coupled,
            "w_hr": p.get("weight_hr" + sfx), "w_hr_p": packed.get("weight_hr" + sfx)})

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
        """h-like states are state_size wide (proj_size with a projection), c
        states hidden_size."""
        LD = self.num_layers * self.num_directions
        H, size = ((self.hidden_size, "hidden_size") if name.startswith("c") or not self.proj_size
                   else (self.proj_size, "proj_size"))
        if batched:
            arr = as_state(name, value, (LD, N, H), f"(num_layers*num_directions, N, {size})")
        else:
            arr = as_state(name, value, (LD, H), f"(num_layers*num_directions, {size})")
            arr = arr[:, None, :]
        return arr

    def _check_lengths(self, lengths, x, batched, N):
        """lengths as int64 [N] with 1 <= lengths <= T, or None when absent or
        all T (the plain path computes the same)."""
        if lengths is None:
            return None
        if not batched:
            raise ValueError("lengths needs a batched input (N, T, I) or (T, N, I)")
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
        T = x.shape[1] if self.batch_first else x.shape[0]
        if arr.shape != (N,):
            raise ValueError(f"lengths must have shape (N,) = ({N},), got {shape_str(arr.shape)}")
        if arr.min() < 1 or arr.max() > T:
            raise ValueError(f"lengths must be in [1, T] = [1, {T}], got values from "
                             f"{arr.min()} to {arr.max()}")
        return None if (arr == T).all() else arr.astype(np.int64)

    def _run(self, x, h0, c0, rng=None, train=False, lengths=None):
        """(y, h_n, c_n), plus the Tape when training (with dropout masks
        drawn from rng); lengths: see forward."""
        x, batched, N = self._check_input(x)
        lengths = self._check_lengths(lengths, x, batched, N)
        if h0 is not None:
            h0 = self._check_state("h0", h0, batched, N)
        if c0 is not None:
            c0 = self._check_state("c0", c0, batched, N)
        masks = None
        if train:
            if rng is None:
                rng = self.generator
            elif not isinstance(rng, np.random.Generator):
                raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
            masks = self._dropout_masks(x, rng)
        y, h_n, c_n, record = stack.forward(
            runtime.ops(), self.cell, x, h0, c0, self._layer_params(),
            batch_first=self.batch_first, n_threads=runtime.get_num_threads(), lengths=lengths,
            masks=masks, train=train, pool=self._tape_pool)
        tape = (Tape(self, record, masks, batched, y.shape, h_n.shape,
                     None if c_n is None else c_n.shape) if train else None)
        if not batched:
            y = y[:, 0, :] if not self.batch_first else y[0]
            h_n = h_n[:, 0, :]
            c_n = c_n[:, 0, :] if c_n is not None else None
        return (y, h_n, c_n, tape) if train else (y, h_n, c_n)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def to_torch(self):
        """The equivalent ``torch.nn`` module with a copy of the weights
        (needs PyTorch; see rnncore.interop.pytorch)."""
        from ..interop.pytorch import to_torch  # the facade: interop builds on the layers
        return to_torch(self)

    def to_onnx(self, path=None, *, initial_state=False):
        """This layer as an ONNX model (ONNX's RNN/GRU/LSTM operators, opset
        14; needs the onnx package), written to `path` when given; see
        rnncore.interop.onnx_export."""
        from ..interop.onnx_export import to_onnx  # the facade: interop builds on the layers
        return to_onnx(self, path, initial_state=initial_state)

    # ------------------------------------------------------------ streaming

    def _step(self, x_t, h, c):
        """One time step through all layers: (y_t, h_new, c_new); c_new None
        unless LSTM. Fast path: float32 C-contiguous x_t and states (as a
        previous step returns them) go straight to the compiled plan, which
        checks them; anything else (or an error there) takes the validating
        path, which converts or raises a clear error."""
        cached = getattr(self._plans, "plan", None)
        if cached is not None and cached[1] is not None and type(x_t) is np.ndarray:
            key, plan = cached
            try:
                if key == (x_t.shape[0] if x_t.ndim == 2 else 1, runtime.get_num_threads(),
                           self._version, runtime.ops()):
                    if x_t.ndim == 2:
                        y, (h_new, c_new) = plan.step(x_t, (h, c))
                        return y, h_new, c_new
                    if x_t.ndim == 1:
                        y, (h_new, c_new) = plan.step(x_t[None], (
                            None if h is None else h[:, None], None if c is None else c[:, None]))
                        return y[0], h_new[:, 0], (c_new[:, 0] if c_new is not None else None)
            except (TypeError, ValueError, IndexError):
                pass  # the validating path below explains what is wrong
        return self._step_checked(x_t, h, c)

    def _step_checked(self, x_t, h, c):
        if self.bidirectional:
            raise ValueError("step() is not defined for bidirectional layers: the reverse "
                             "direction needs the whole sequence")
        x = np.ascontiguousarray(as_float32("x_t", x_t))
        batched = x.ndim == 2
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"x_t must be (N, input_size) or (input_size,) with input_size = "
                             f"{self.input_size}, got shape {shape_str(x.shape)}")
        if not batched:
            x = x[None]
        N = x.shape[0]
        if N == 0:
            raise ValueError("x_t has an empty batch (N = 0)")
        h = None if h is None else self._check_state("h", h, batched, N)
        c = None if c is None else self._check_state("c", c, batched, N)
        plan = self._step_plan(N)
        if plan is None:  # no compiled step on this Ops: a sequence of one step
            y, h_new, c_new = self._run(x[:, None] if self.batch_first else x[None], h, c)
            y = y[:, 0] if self.batch_first else y[0]
        else:
            y, (h_new, c_new) = plan.step(x, (None if h is None else np.ascontiguousarray(h),
                                             None if c is None else np.ascontiguousarray(c)))
        if not batched:
            return y[0], h_new[:, 0], (c_new[:, 0] if c_new is not None else None)
        return y, h_new, c_new

    def _step_plan(self, N):
        """The Ops' compiled plan of one step for batch N (or None), one per
        Python thread (a plan owns its workspace: two threads sharing one
        corrupted each other's steps), cached until the parameters, the
        thread count or the backend change."""
        ops, n_threads = runtime.ops(), runtime.get_num_threads()
        key = (N, n_threads, self._version, ops)
        cached = getattr(self._plans, "plan", None)
        if cached is None or cached[0] != key:
            # a projected LSTM steps as a T = 1 sequence (rnc_forward_step has no projection)
            plan = None if self.proj_size else ops.step_plan(
                self.cell, N, self.input_size, self.hidden_size,
                [d[0] for d in self._layer_params()], n_threads)
            cached = self._plans.plan = (key, plan)
        return cached[1]

    # ------------------------------------------------------------ training

    def zero_grad(self):
        """Set every array of ``layer.grads`` to zero (in place)."""
        for g in self.grads.values():
            g.fill(0.0)

    def _layer_grads(self):
        """Per layer, per direction: the gradient arrays the kernels add to."""
        g = self.grads
        return self._per_direction(lambda sfx: {
            "w_ih": g["weight_ih" + sfx], "w_hh": g["weight_hh" + sfx],
            "b_ih": g.get("bias_ih" + sfx), "b_hh": g.get("bias_hh" + sfx),
            "peephole": g.get("peephole" + sfx), "w_hr": g.get("weight_hr" + sfx)})

    def _dropout_masks(self, x, rng):
        """Per layer, the inverted-dropout mask of its input (None for layer 0)."""
        shape = x.shape[:2] + (self.num_directions * self.state_size,)
        return [None] + [stack.dropout_mask(shape, self.dropout, rng)
                         for _ in range(1, self.num_layers)]

    def _check_grad(self, name, value, shape, batched):
        """A gradient argument shaped like the output it belongs to, as float32
        C-contiguous in the batched layout."""
        arr = as_float32(name, value)
        given = shape if batched else tuple(s for i, s in enumerate(shape)
                                            if i != (0 if self.batch_first and name == "d_out" else 1))
        check_shape(name, arr, given, "the shape of the output it is the gradient of")
        if not batched:
            arr = arr[None] if self.batch_first and name == "d_out" else arr[:, None]
        return np.ascontiguousarray(arr)

    def _train_backward(self, tape, d_out, dh_n, dc_n, input_grad):
        if not isinstance(tape, Tape):
            raise TypeError(f"tape must be the Tape returned by forward_train, got {type(tape).__name__}")
        if tape._layer() is not self:
            raise ValueError("tape was recorded by another layer")
        if tape._used:
            raise ValueError("tape was already used by a backward call; run forward_train again")
        if tape._version != self._version:
            raise ValueError("the parameters changed since forward_train recorded this tape; "
                             "run forward_train again")
        d_out = self._check_grad("d_out", d_out, tape._y_shape, tape._batched)
        if dh_n is not None:
            dh_n = self._check_grad("dh_n", dh_n, tape._h_shape, tape._batched)
        if dc_n is not None:
            dc_n = self._check_grad("dc_n", dc_n, tape._c_shape, tape._batched)
        tape._used = True
        record, tape._record = tape._record, None  # release the buffers with the tape
        dx, dh0, dc0 = stack.backward(
            self.cell, record, self._layer_params(), self._layer_grads(), d_out, dh_n, dc_n,
            input_grad=bool(input_grad), n_threads=runtime.get_num_threads(),
            pool=self._tape_pool, pool_limit=self.num_layers * self.num_directions)
        if not tape._batched:
            if dx is not None:
                dx = dx[:, 0, :] if not self.batch_first else dx[0]
            dh0 = dh0[:, 0, :]
            dc0 = dc0[:, 0, :] if dc0 is not None else None
        return dx, dh0, dc0

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if not getattr(self, "reset_after", True):
            s += ", reset_after=False"
        for flag in ("peephole", "input_forget"):
            if getattr(self, flag, False):
                s += f", {flag}=True"
        for flag, default in (("bias", True), ("batch_first", False), ("bidirectional", False)):
            if getattr(self, flag) != default:
                s += f", {flag}={getattr(self, flag)}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class Tape:
    """What ``backward`` needs from one ``forward_train`` call: the layer
    inputs, outputs and activated gates of every layer, the dropout masks and
    the initial states. Opaque; usable once, with the layer that made it, and
    only while that layer's parameters are unchanged."""

    def __init__(self, layer, record, masks, batched, y_shape, h_shape, c_shape=None):
        self._layer = weakref.ref(layer)
        self._version = layer._version
        self._record = record
        self._masks = masks  # per layer, in the caller's layout (None: no dropout)
        self._batched = batched
        self._y_shape, self._h_shape = tuple(y_shape), tuple(h_shape)
        self._c_shape = None if c_shape is None else tuple(c_shape)
        self._used = False

    def __repr__(self):
        state = "used" if self._used else "unused"
        return f"<rnncore.Tape {state}, output {shape_str(self._y_shape)}>"


class _SingleStateRNN(RNNBase):
    """RNN and GRU: one state array ``h``."""

    def forward(self, x, hx=None, *, h0=None, lengths=None):
        """``output, h_n = layer(x, h0=None, lengths=None)``.

        Parameters
        ----------
        x : array ``(T, N, input_size)``, ``(N, T, input_size)`` if batch_first,
            or ``(T, input_size)`` unbatched. float32; other real float types are
            converted. Any strides or memory order.
        hx (alias h0) : array ``(num_layers*D, N, hidden_size)``
            (``(num_layers*D, hidden_size)`` unbatched) or None for zeros.
        lengths : None, or integers ``(N,)`` in [1, T]: a padded batch in which
            sequence n has lengths[n] steps. Outputs past a sequence's end are
            0, h_n is taken at its last step and the reverse direction starts
            there: PyTorch's pack_padded_sequence -> layer ->
            pad_packed_sequence, without packing; the work follows the real
            number of steps.

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
        y, h_n, _ = self._run(x, hx, None, lengths=lengths)
        return y, h_n

    def step(self, x_t, state=None):
        """``y_t, state = layer.step(x_t, state=None)``: one time step.

        x_t: ``(N, input_size)`` or ``(input_size,)``; state: like ``hx``
        (``(num_layers, N, hidden_size)``; None for zeros). Returns the top
        layer's output for this step and the new state. Stepping through a
        sequence gives the whole-sequence result (to float32 rounding: the
        input projection of one step is summed in another order). Not for
        bidirectional layers.
        """
        y, h, _ = self._step(x_t, state, None)
        return y, h

    def forward_train(self, x, hx=None, *, rng=None, lengths=None):
        """``output, h_n, tape = layer.forward_train(x, hx)``: output and h_n as
        ``layer(x, hx, lengths=lengths)`` returns them (with inter-layer
        dropout when ``dropout > 0``, masks drawn from ``rng`` or
        ``layer.generator``), and the tape for :meth:`backward` (no gradient
        flows from padding)."""
        y, h_n, _, tape = self._run(x, hx, None, rng, train=True, lengths=lengths)
        return y, h_n, tape

    def backward(self, tape, d_out, d_hn=None, *, input_grad=True):
        """``dx, dh0 = layer.backward(tape, d_out, d_hn=None)``.

        d_out: gradient of the loss with respect to ``output`` (its shape);
        d_hn: with respect to ``h_n``, or None for zero. Returns the gradients
        with respect to x and the initial state (zeros were used when hx was
        None; the gradient is returned all the same), and adds the gradient of
        every parameter to ``layer.grads``. The tape is consumed.
        ``input_grad=False`` skips dx (returned as None) and its GEMM, as
        torch does for an input that does not require grad.
        """
        dx, dh0, _ = self._train_backward(tape, d_out, d_hn, None, input_grad)
        return dx, dh0


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
    """GRU, gate order r, z, n; arguments as ``torch.nn.GRU``. By default the
    reset gate applies after the recurrent product, as in PyTorch
    (``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``); ``reset_after=False``
    (keyword-only) applies it before, as ONNX's default and Keras
    ``reset_after=False`` (``n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)``).
    ``seed`` as for :class:`RNN`."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, reset_after=True, seed=None):
        reset_after = check_bool("reset_after", reset_after)
        self.__dict__["reset_after"] = reset_after
        super().__init__("GRU" if reset_after else "GRU_RB", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, seed=seed)


class LSTM(RNNBase):
    """LSTM, gate order i, f, g, o; arguments as ``torch.nn.LSTM``.
    ``proj_size`` R > 0 (< hidden_size) projects each step's output, as
    PyTorch does: ``h_t = W_hr (o * tanh(c_t))`` with parameters
    ``weight_hr_l{k}`` ``(R, H)``; h, the output's features per direction and
    ``weight_hh`` ``(4*H, R)`` are then R wide, c stays H wide. ``seed`` as
    for :class:`RNN`. Keyword-only, the variants of ONNX's LSTM:
    ``peephole=True`` adds parameters ``peephole_l{k}`` ``(3*H,)`` = (p_i,
    p_f, p_o), with i = s(.. + p_i*c_{t-1}), f = s(.. + p_f*c_{t-1}), o =
    s(.. + p_o*c_t); ``input_forget=True`` couples f = 1 - i (the forget
    gate's weights are then unused)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, peephole=False,
                 input_forget=False, seed=None):
        self.__dict__["peephole"] = check_bool("peephole", peephole)
        self.__dict__["input_forget"] = check_bool("input_forget", input_forget)
        proj_size = check_int("proj_size", proj_size, minimum=0)
        if proj_size and proj_size >= check_int("hidden_size", hidden_size, minimum=1):
            raise ValueError(f"proj_size must be smaller than hidden_size ({hidden_size}), "
                             f"got {proj_size}")
        self.__dict__["_proj_size"] = proj_size
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, seed=seed)

    def forward(self, x, hx=None, *, lengths=None):
        """``output, (h_n, c_n) = lstm(x, (h0, c0), lengths=None)``.

        Parameters
        ----------
        x : as for :meth:`RNN.forward`.
        hx : a pair ``(h0, c0)`` of arrays ``(num_layers*D, N, hidden_size)``
            (``(num_layers*D, hidden_size)`` unbatched), or None for zeros.
        lengths : as for :meth:`RNN.forward` (c_n too at each sequence's end).

        Returns
        -------
        output : ``(T, N, D*hidden_size)`` (``(N, T, ...)`` if batch_first).
        (h_n, c_n) : each shaped like h0.
        """
        h0, c0 = self._state_pair(hx)
        y, h_n, c_n = self._run(x, h0, c0, lengths=lengths)
        return y, (h_n, c_n)

    @staticmethod
    def _pair(name, value):
        """A (h, c) pair argument, or (None, None) for None."""
        if value is None:
            return None, None
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"{name} must be a pair (h, c) for LSTM, got "
                             + (f"a sequence of length {len(value)}"
                                if isinstance(value, (tuple, list)) else type(value).__name__))
        return value

    def _state_pair(self, hx):
        """The initial state (h0, c0): both arrays, or both None."""
        h0, c0 = self._pair("hx", hx)
        if hx is not None and (h0 is None or c0 is None):
            raise ValueError("hx must be a pair (h0, c0) of arrays, got None in it")
        return h0, c0

    def step(self, x_t, state=None):
        """``y_t, (h, c) = lstm.step(x_t, (h, c))``; see :meth:`RNN.step`."""
        if type(state) is tuple and len(state) == 2 and state[0] is not None and state[1] is not None:
            h, c = state
        else:
            h, c = self._state_pair(state)
        y, h, c = self._step(x_t, h, c)
        return y, (h, c)

    def forward_train(self, x, hx=None, *, rng=None, lengths=None):
        """``output, (h_n, c_n), tape = lstm.forward_train(x, (h0, c0))``; see
        :meth:`RNN.forward_train`."""
        h0, c0 = self._state_pair(hx)
        y, h_n, c_n, tape = self._run(x, h0, c0, rng, train=True, lengths=lengths)
        return y, (h_n, c_n), tape

    def backward(self, tape, d_out, d_hn=None, *, input_grad=True):
        """``dx, (dh0, dc0) = lstm.backward(tape, d_out, (dh_n, dc_n))``; either
        gradient of the pair may be None (zero). See :meth:`RNN.backward`."""
        dh_n, dc_n = self._pair("d_hn", d_hn)
        dx, dh0, dc0 = self._train_backward(tape, d_out, dh_n, dc_n, input_grad)
        return dx, (dh0, dc0)


LAYERS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def make_layer(cell, input_size, hidden_size, **kwargs):
    """A new layer of `cell` (an rnncore.engine.cells.Cell): its class with
    the options that select the cell, plus `kwargs`."""
    return LAYERS[cell.layer](input_size, hidden_size, **dict(cell.layer_options), **kwargs)
