"""Optimizers, gradient clipping and learning-rate schedules, with PyTorch's
update rules (torch.optim.SGD, Adam, AdamW; torch.nn.utils.clip_grad_norm_;
torch.optim.lr_scheduler.StepLR, ExponentialLR, LambdaLR) over NumPy arrays.

What they optimise ("params"):

* a model: an object with ``named_parameters()`` (name, array pairs),
  ``grads`` (name -> gradient array) and ``load_state_dict(mapping,
  strict=False)`` (how new values are set; rnncore's layers re-pack their
  weights there) -- every rnncore layer is one;
* a dict ``{name: (param, grad)}`` of writable float arrays, updated in place;
* or a list of those.

>>> lstm = rnncore.LSTM(8, 16, seed=0)
>>> opt = rnncore.optim.Adam(lstm, lr=1e-3)
>>> # ... out, hn, tape = lstm.forward_train(x); lstm.backward(tape, d_out) ...
>>> rnncore.optim.clip_grad_norm(lstm, 5.0)    # doctest: +SKIP
>>> opt.step(); lstm.zero_grad()               # doctest: +SKIP
"""
import math

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "ExponentialAverage",
           "StepLR", "ExponentialLR", "LambdaLR"]


# ------------------------------------------------------------ parameter sources

def _is_model(obj):
    return all(hasattr(obj, a) for a in ("named_parameters", "grads", "load_state_dict"))


def _sources(params):
    """params as a list of models and (param, grad) dicts."""
    if _is_model(params) or isinstance(params, dict):
        params = [params]
    try:
        sources = list(params)
    except TypeError:
        raise TypeError("params must be a model (named_parameters, grads, load_state_dict), "
                        f"a dict name -> (param, grad) or a list of those, got "
                        f"{type(params).__name__}") from None
    if not sources:
        raise ValueError("params is empty")
    for i, src in enumerate(sources):
        if _is_model(src):
            continue
        if not isinstance(src, dict):
            raise TypeError(f"params[{i}] must be a model or a dict name -> (param, grad), "
                            f"got {type(src).__name__}")
        for name, pair in src.items():
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(f"params[{i}][{name!r}] must be a pair (param, grad)")
            p, g = pair
            for what, a in (("param", p), ("grad", g)):
                if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or not a.flags.writeable:
                    raise TypeError(f"params[{i}][{name!r}]: {what} must be a writable float ndarray")
            if p.shape != g.shape:
                raise ValueError(f"params[{i}][{name!r}]: param shape {p.shape} != grad shape {g.shape}")
    return sources


def _pairs(src):
    """(name, param, grad) of one source."""
    if isinstance(src, dict):
        return [(name, p, g) for name, (p, g) in src.items()]
    grads = src.grads
    return [(name, p, grads[name]) for name, p in src.named_parameters()]


def _grad_arrays(params):
    if isinstance(params, np.ndarray):
        return [params]
    if _is_model(params) or isinstance(params, dict):
        return [g for _, _, g in _pairs(params)]
    arrays = []
    for item in params:
        arrays += [item] if isinstance(item, np.ndarray) else _grad_arrays(item)
    return arrays


# ------------------------------------------------------------ optimizers

class Optimizer:
    """Base class: subclasses define ``_update(p, g, state) -> new p`` and the
    names of their hyper-parameters (``_hyper``) and state buffers
    (``_buffers``)."""

    _hyper = ()
    _buffers = ()

    def __init__(self, params, lr):
        self._sources = _sources(params)
        self.lr = _positive_float("lr", lr, allow_zero=True)
        self.step_count = 0
        self.state = {}  # "i.name" -> {buffer: float32 array}

    def _key(self, i, name):
        return f"{i}.{name}"

    def step(self):
        """Apply one update to every parameter from its current gradient."""
        self.step_count += 1
        for i, src in enumerate(self._sources):
            updated = {}
            for name, p, g in _pairs(src):
                state = self.state.setdefault(self._key(i, name), {})
                new = self._update(np.asarray(p, np.float32), np.asarray(g, np.float32), state)
                if isinstance(src, dict):
                    p[...] = new
                else:  # the model keeps `new` itself: a copy if an _update returned a kept array
                    fresh = new.flags.owndata and all(new is not b for b in state.values())
                    updated[name] = new if fresh else np.array(new, np.float32)
            if updated:
                take = getattr(src, "_take_parameters", None)
                take(updated) if take else src.load_state_dict(updated, strict=False)

    def zero_grad(self):
        """Zero every gradient array of the optimised parameters."""
        for src in self._sources:
            for _, _, g in _pairs(src):
                g.fill(0.0)

    def state_dict(self):
        """Hyper-parameters, step count and per-parameter buffers (copies)."""
        return {"type": type(self).__name__, "lr": self.lr, "step_count": self.step_count,
                "hyper": {k: getattr(self, k) for k in self._hyper},
                "state": {k: {b: v.copy() for b, v in s.items()} for k, s in self.state.items()}}

    def load_state_dict(self, state_dict):
        """Restore a state_dict() of the same optimizer type over the same
        parameters; validated entirely before anything changes."""
        if not isinstance(state_dict, dict) or state_dict.get("type") != type(self).__name__:
            got = state_dict.get("type") if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"state_dict is not a {type(self).__name__} state (got {got!r})")
        shapes = {self._key(i, name): p.shape
                  for i, src in enumerate(self._sources) for name, p, _ in _pairs(src)}
        state = {}
        for key, bufs in state_dict.get("state", {}).items():
            if key not in shapes:
                raise KeyError(f"state_dict has state for unknown parameter {key!r}")
            if set(bufs) - set(self._buffers):
                raise KeyError(f"state_dict[{key!r}] has unknown buffers {sorted(set(bufs) - set(self._buffers))}")
            state[key] = {}
            for b, v in bufs.items():
                v = np.array(v, dtype=np.float32)
                if v.shape != shapes[key]:
                    raise ValueError(f"state_dict[{key!r}][{b!r}] has shape {v.shape}, "
                                     f"expected {shapes[key]}")
                state[key][b] = v
        hyper = dict(state_dict.get("hyper", {}))
        if set(hyper) != set(self._hyper):
            raise KeyError(f"state_dict hyper-parameters {sorted(hyper)} != {sorted(self._hyper)}")
        lr = _positive_float("lr", state_dict["lr"], allow_zero=True)
        step_count = int(state_dict["step_count"])
        self.state, self.lr, self.step_count = state, lr, step_count
        for k, v in hyper.items():
            setattr(self, k, tuple(v) if isinstance(v, list) else v)

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("lr",) + self._hyper)
        return f"{type(self).__name__}({hyper})"


def _positive_float(name, value, allow_zero=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value}")
    return value


class SGD(Optimizer):
    """torch.optim.SGD: with weight decay wd, momentum m, dampening d,
    g <- g + wd p;  b <- g (first step) or m b + (1 - d) g;
    g <- g + m b (nesterov) or b;  p <- p - lr g."""

    _hyper = ("momentum", "dampening", "nesterov", "weight_decay")
    _buffers = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = _positive_float("momentum", momentum, allow_zero=True)
        self.dampening = _positive_float("dampening", dampening, allow_zero=True)
        self.weight_decay = _positive_float("weight_decay", weight_decay, allow_zero=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening = 0")

    def _update(self, p, g, state):
        if self.weight_decay:
            g = g + np.float32(self.weight_decay) * p
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= np.float32(self.momentum)
                buf += np.float32(1.0 - self.dampening) * g
            g = g + np.float32(self.momentum) * buf if self.nesterov else buf
        new = g * np.float32(-self.lr)  # p - lr g, one temporary
        new += p
        return new


class Adam(Optimizer):
    """torch.optim.Adam: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps); weight
    decay adds wd p to g (L2), as torch's Adam."""

    _hyper = ("betas", "eps", "weight_decay")
    _buffers = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError("betas must be a pair (beta1, beta2)")
        b1, b2 = (_positive_float("betas", b, allow_zero=True) for b in betas)
        if b1 >= 1 or b2 >= 1:
            raise ValueError(f"betas must be in [0, 1), got {tuple(betas)}")
        self.betas = (b1, b2)
        self.eps = _positive_float("eps", eps)
        self.weight_decay = _positive_float("weight_decay", weight_decay, allow_zero=True)

    def _update(self, p, g, state):
        b1, b2 = self.betas
        if self.weight_decay and self._decoupled:
            p = p * np.float32(1.0 - self.lr * self.weight_decay)
        elif self.weight_decay:
            g = g + np.float32(self.weight_decay) * p
        if "exp_avg" not in state:
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        t = self.step_count  # every parameter is updated at every step
        m *= np.float32(b1)
        m += np.float32(1 - b1) * g
        v *= np.float32(b2)
        v += np.float32(1 - b2) * (g * g)
        denom = np.sqrt(v) / np.float32(math.sqrt(1 - b2 ** t)) + np.float32(self.eps)
        return p - np.float32(self.lr / (1 - b1 ** t)) * (m / denom)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay,
    p <- p (1 - lr wd) before the Adam step (default wd = 0.01)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


# ------------------------------------------------------------ clipping

_CHUNK = 1 << 15


def _sum_of_squares(g):
    """sum(g**2) as a Python float: a float32 sum of products (einsum) per
    32k-element chunk, the chunks added in float64; a chunk whose float32
    sum is not finite is redone in float64, so large finite gradients keep a
    finite norm. Converting whole gradients to float64 made clip_grad_norm
    35 ms of a 229 ms PTB step; squares then a pairwise sum per chunk took
    5.8 ms for 5.12 M floats, einsum's one pass 3.5 ms (Xeon, relative error
    1e-8 and 5e-8 against float64). Not np.dot: OpenBLAS's threads would
    spin on after it, taking the cores from the kernels."""
    flat = g.reshape(-1)
    if flat.dtype != np.float32:
        return _sum_of_squares_f64(flat)
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, flat.size, _CHUNK):
            chunk = flat[i:i + _CHUNK]
            part = np.einsum("i,i->", chunk, chunk)
            if not np.isfinite(part):  # overflow (|g| > 1.8e19) or inf/NaN: redo in float64
                part = _sum_of_squares_f64(chunk)
            total += float(part)
    return total


def _sum_of_squares_f64(x):
    x = x.astype(np.float64)  # one copy, used twice
    return float(np.dot(x, x))


def clip_grad_norm(params, max_norm, error_if_nonfinite=False):
    """Scale every gradient in place so that their global L2 norm is at most
    max_norm (torch.nn.utils.clip_grad_norm_: factor max_norm / (norm + 1e-6)
    when the norm exceeds max_norm). params: a model, a (param, grad) dict, a
    gradient array or a list of those. Returns the norm before clipping. A
    non-finite norm raises with error_if_nonfinite, else (as torch) the
    gradients are scaled by a NaN factor."""
    max_norm = _positive_float("max_norm", max_norm)
    grads = _grad_arrays(params)
    total = math.sqrt(sum(_sum_of_squares(g) for g in grads))
    if error_if_nonfinite and not math.isfinite(total):
        raise FloatingPointError(f"the total gradient norm is {total}")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # also for NaN
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 -> NaN, as torch
            for g in grads:
                g *= np.float32(coef)
    return total


# ------------------------------------------------------------ weight averaging

class ExponentialAverage:
    """An exponential moving average of the parameters (Polyak averaging;
    torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn(decay)):
    the first update() copies the parameters, each later one sets
    ``avg = decay * avg + (1 - decay) * p``. Evaluating the average instead
    of the last weights smooths out the noise of the last steps.
    params: a model or (param, grad) dicts, as for the optimizers.

    >>> ema = rnncore.optim.ExponentialAverage(model, decay=0.99)
    >>> # ... after each opt.step(): ema.update() ...
    >>> raw = ema.swap_in()      # the model holds the average   # doctest: +SKIP
    >>> model.evaluate(...); ema.swap_out(raw)                   # doctest: +SKIP
    """

    def __init__(self, params, decay):
        decay = _positive_float("decay", decay, allow_zero=True)
        if not decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self._sources = _sources(params)
        self.count = 0
        self.average = {}  # "i.name" -> float32 array

    def _params(self):
        for i, src in enumerate(self._sources):
            for name, p, _ in _pairs(src):
                yield i, name, f"{i}.{name}", p

    def update(self):
        """Fold the current parameters into the average."""
        first, d = self.count == 0, np.float32(self.decay)
        for _, _, key, p in self._params():
            if first:
                self.average[key] = np.array(p, np.float32)
            else:
                a = self.average[key]
                a *= d
                a += (1 - d) * np.asarray(p, np.float32)
        self.count += 1

    def _load(self, values):
        for i, src in enumerate(self._sources):
            mine = {name: values[f"{i}.{name}"] for name, _, _ in _pairs(src)}
            if isinstance(src, dict):
                for name, (p, _) in src.items():
                    p[...] = mine[name]
            else:
                src.load_state_dict(mine, strict=False)

    def swap_in(self):
        """Put the average into the parameters; returns the values they had
        (for swap_out)."""
        if self.count == 0:
            raise RuntimeError("no average yet: call update() after an optimizer step first")
        raw = {key: np.array(p, np.float32) for _, _, key, p in self._params()}
        self._load(self.average)
        return raw

    def swap_out(self, raw):
        """Put back the values swap_in returned."""
        self._load(raw)

    def state_dict(self):
        return {"type": "ExponentialAverage", "decay": self.decay, "count": self.count,
                "average": {k: v.copy() for k, v in self.average.items()}}

    def load_state_dict(self, state_dict):
        if not isinstance(state_dict, dict) or state_dict.get("type") != "ExponentialAverage":
            raise ValueError("state_dict is not an ExponentialAverage state")
        shapes = {key: p.shape for _, _, key, p in self._params()}
        count = int(state_dict["count"])
        average = {k: np.array(v, np.float32) for k, v in state_dict["average"].items()}
        if count and set(average) != set(shapes):
            raise KeyError(f"state_dict averages {sorted(average)} != the parameters "
                           f"{sorted(shapes)}")
        for k, v in average.items():
            if v.shape != shapes[k]:
                raise ValueError(f"state_dict average {k!r} has shape {v.shape}, expected "
                                 f"{shapes[k]}")
        self.decay = _positive_float("decay", state_dict["decay"], allow_zero=True)
        self.count, self.average = count, average


# ------------------------------------------------------------ schedules

class _Schedule:
    """torch.optim.lr_scheduler semantics: construction sets the lr of epoch
    0; each step() moves to the next epoch."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an rnncore.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        optimizer.lr = self._lr(0)

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self._lr(self.last_epoch)

    def get_last_lr(self):
        return self.optimizer.lr

    def state_dict(self):
        return {"type": type(self).__name__, "base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict):
        if not isinstance(state_dict, dict) or state_dict.get("type") != type(self).__name__:
            raise ValueError(f"state_dict is not a {type(self).__name__} state")
        self.base_lr = _positive_float("base_lr", state_dict["base_lr"], allow_zero=True)
        self.last_epoch = int(state_dict["last_epoch"])
        self.optimizer.lr = self._lr(self.last_epoch)


class StepLR(_Schedule):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, (int, np.integer)) or step_size < 1:
            raise ValueError(f"step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _positive_float("gamma", gamma, allow_zero=True)
        super().__init__(optimizer)

    def _lr(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(StepLR):
    """lr = base_lr * gamma ** epoch."""

    def __init__(self, optimizer, gamma):
        super().__init__(optimizer, 1, gamma)


class LambdaLR(_Schedule):
    """lr = base_lr * lr_lambda(epoch), e.g. Zaremba et al.'s halving after
    the 4th epoch: ``LambdaLR(opt, lambda e: 0.5 ** max(0, e - 3))``."""

    def __init__(self, optimizer, lr_lambda):
        if not callable(lr_lambda):
            raise TypeError("lr_lambda must be callable")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def _lr(self, epoch):
        return self.base_lr * float(self.lr_lambda(epoch))
