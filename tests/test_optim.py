"""Optimizers, clipping and schedules against torch.optim on the same numbers,
resuming from state dicts, and an end-to-end check that a small stacked LSTM
actually learns."""
import numpy as np
import pytest

import rnncore
from rnncore import optim

OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.5)),
]


def grads_sequence(shapes, steps, seed):
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
            for _ in range(steps)]


@pytest.mark.parametrize("name,kw", OPTIMIZERS)
def test_optimizer_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    layer = rnncore.GRU(3, 5, num_layers=2, seed=0)
    params = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in layer.state_dict().values()]
    ours = getattr(optim, name)(layer, **kw)
    theirs = getattr(torch.optim, name)(params, **kw)
    for grads in grads_sequence(layer._shapes, 6, seed=1):
        for p, g in zip(params, grads.values()):
            p.grad = torch.from_numpy(g)
        theirs.step()
        layer.zero_grad()
        for k, g in grads.items():
            layer.grads[k] += g
        ours.step()
    for (k, v), p in zip(layer.state_dict().items(), params):
        np.testing.assert_allclose(v, p.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


def test_models_keep_the_new_values_without_sharing_them():
    """An optimizer hands its new arrays to the model uncopied (the layers
    keep them read-only and repack them); an _update that returns one of
    its own buffers gets a copy, so later steps cannot write the model's
    weights behind its back."""
    vocab = rnncore.Vocabulary(list("abcdef") + ["<unk>"], "char")
    lm = rnncore.LanguageModel(vocab, "lstm", 6, 5, 2, seed=0)
    for g in lm.grads.values():
        g[...] = 0.5
    before = {k: v.copy() for k, v in lm.named_parameters()}
    optim.SGD(lm, lr=0.1).step()
    for k, v in lm.named_parameters():
        np.testing.assert_allclose(v, before[k] - np.float32(0.05), rtol=1e-6, err_msg=k)
    assert not lm.rnn.weight_hh_l1.flags.writeable
    x = np.array([[0, 1, 2, 3]]).T
    logits, _ = lm.forward(x)  # the packed weights follow the new values
    twin = rnncore.LanguageModel(vocab, "lstm", 6, 5, 2, seed=1)
    twin.load_state_dict(dict(lm.named_parameters()))
    np.testing.assert_array_equal(twin.forward(x)[0], logits)

    class Keeps(optim.SGD):  # returns an array it keeps and writes again
        def _update(self, p, g, state):
            buf = state.setdefault("buf", np.zeros_like(p))
            buf[...] = p - self.lr * g
            return buf
    opt = Keeps(lm, lr=0.1)
    opt.step()
    kept = {k: v.copy() for k, v in lm.named_parameters()}
    for s in opt.state.values():
        s["buf"][...] = 7.0
    for k, v in lm.named_parameters():
        np.testing.assert_array_equal(v, kept[k], err_msg=k)


def test_dict_params_update_in_place_and_resume_from_state_dict():
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    grads = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(6)]

    def run(split):
        w, g = w0.copy(), np.zeros_like(w0)
        opt = optim.Adam({"w": (w, g)}, lr=0.05, weight_decay=0.01)
        sched = optim.StepLR(opt, step_size=2, gamma=0.5)
        for i, gi in enumerate(grads):
            if i == split:  # a new optimizer restored from the saved states
                saved, saved_sched = opt.state_dict(), sched.state_dict()
                opt = optim.Adam({"w": (w, g)}, lr=1.0)
                opt.load_state_dict(saved)
                sched = optim.StepLR(opt, step_size=2, gamma=0.5)
                sched.load_state_dict(saved_sched)
            g[...] = gi
            opt.step()
            sched.step()
        return w

    straight = run(split=None)
    assert not np.array_equal(straight, w0)
    np.testing.assert_array_equal(run(split=3), straight)


def test_state_dict_errors_leave_the_optimizer_unchanged():
    layer = rnncore.RNN(2, 3, seed=0)
    opt = optim.SGD(layer, lr=0.1, momentum=0.9)
    layer.grads["weight_hh_l0"] += 1.0
    opt.step()
    good = opt.state_dict()
    with pytest.raises(ValueError, match="not a SGD state"):
        opt.load_state_dict(optim.Adam(layer).state_dict())
    bad = opt.state_dict()
    bad["state"]["0.weight_hh_l0"]["momentum_buffer"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="has shape"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["0.nope"] = {}
    with pytest.raises(KeyError, match="unknown parameter"):
        opt.load_state_dict(bad)
    np.testing.assert_array_equal(opt.state["0.weight_hh_l0"]["momentum_buffer"],
                                  good["state"]["0.weight_hh_l0"]["momentum_buffer"])


def test_bad_arguments_name_themselves():
    layer = rnncore.LSTM(2, 3)
    with pytest.raises(ValueError, match="lr must be"):
        optim.SGD(layer, lr=-1)
    with pytest.raises(TypeError, match="lr must be a number"):
        optim.SGD(layer, lr="0.1")
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(layer, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(layer, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="params must be"):
        optim.Adam(3)
    with pytest.raises(ValueError, match="params is empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="writable float"):
        optim.SGD({"w": (np.zeros(3, np.int32), np.zeros(3, np.int32))}, lr=0.1)
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm(layer, 0)
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(optim.SGD(layer, lr=0.1), step_size=0)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    layer = rnncore.LSTM(4, 6, num_layers=2, seed=0)
    for scale, max_norm in ((1.0, 0.5), (1e-3, 10.0)):
        for g in layer.grads.values():
            g[...] = rng.standard_normal(g.shape) * scale
        params = [torch.nn.Parameter(torch.zeros(g.shape)) for g in layer.grads.values()]
        for p, g in zip(params, layer.grads.values()):
            p.grad = torch.from_numpy(g.copy())
        theirs = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        ours = optim.clip_grad_norm(layer, max_norm)
        assert ours == pytest.approx(theirs, rel=1e-6)
        for p, g in zip(params, layer.grads.values()):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-6, atol=1e-9)
    layer.grads["weight_ih_l0"][0, 0] = np.nan
    with pytest.raises(FloatingPointError):
        optim.clip_grad_norm(layer, 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("name,kw", [("StepLR", dict(step_size=3, gamma=0.5)),
                                     ("ExponentialLR", dict(gamma=0.7))])
def test_schedules_match_torch(name, kw):
    torch = pytest.importorskip("torch")
    ours = getattr(optim, name)(optim.SGD(rnncore.RNN(1, 1), lr=2.0), **kw)
    t_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    theirs = getattr(torch.optim.lr_scheduler, name)(t_opt, **kw)
    for _ in range(8):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr()[0], rel=1e-12)
        t_opt.step()
        ours.step()
        theirs.step()


def test_zaremba_schedule_with_lambda():
    opt = optim.SGD(rnncore.LSTM(1, 1), lr=1.0)
    sched = optim.LambdaLR(opt, lambda e: 0.5 ** max(0, e - 3))
    lrs = []
    for _ in range(7):
        lrs.append(opt.lr)
        sched.step()
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]


def test_two_layer_lstm_learns_a_delayed_copy_task():
    """Output the symbol seen two steps earlier: needs memory across steps.
    A 2-layer LSTM 32 with a linear read-out, Adam, 16 fixed sequences of 12
    symbols from 6; the cross-entropy falls from ~1.8 to near zero."""
    rng = np.random.default_rng(0)
    V, T, N, H, delay = 6, 12, 16, 32, 2
    seq = rng.integers(0, V, size=(T, N))
    x = np.eye(V, dtype=np.float32)[seq]
    target = seq[:-delay]  # the output at step t + delay
    lstm = rnncore.LSTM(V, H, num_layers=2, seed=1)
    w = (rng.standard_normal((V, H)) * 0.1).astype(np.float32)
    b = np.zeros(V, np.float32)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    opt = optim.Adam([lstm, {"w": (w, dw), "b": (b, db)}], lr=0.02)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        out, _, tape = lstm.forward_train(x)
        logits = out[delay:] @ w.T + b
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=-1, keepdims=True)
        picked = np.take_along_axis(p, target[..., None], axis=-1)[..., 0]
        losses.append(float(-np.log(picked).mean()))
        dlogits = p
        np.put_along_axis(dlogits, target[..., None], picked[..., None] - 1.0, axis=-1)
        dlogits /= target.size
        d_out = np.zeros_like(out)
        d_out[delay:] = dlogits @ w
        dw += np.einsum("tnv,tnh->vh", dlogits, out[delay:])
        db += dlogits.sum(axis=(0, 1))
        lstm.backward(tape, d_out)
        optim.clip_grad_norm([lstm, dw, db], 5.0)
        opt.step()
    assert losses[0] > 1.5
    assert losses[-1] < 0.02, losses[::30]


def test_clip_grad_norm_float32_sums_match_float64():
    """The norm is summed in float32 chunks: it must stay within float32
    rounding of the float64 norm for big gradients, and fall back to float64
    where float32 squares overflow (|g| > 1.8e19)."""
    rng = np.random.default_rng(3)
    for g in (rng.standard_normal(1_000_003).astype(np.float32),
              np.full(70_000, 3e20, np.float32),
              np.array([1e-30, -2e-30], np.float32)):
        exact = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
        got = optim.clip_grad_norm(g.copy(), 1e38)
        assert got == pytest.approx(exact, rel=1e-5), (g[:2], got, exact)


def test_exponential_average_matches_torch_ema():
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    layer = rnncore.GRU(3, 5, seed=0)
    net = torch.nn.GRU(3, 5)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.from_numpy(layer.state_dict()[name].copy()))
    ours, theirs = optim.ExponentialAverage(layer, 0.9), AveragedModel(
        net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    opt = optim.SGD(layer, lr=0.1)
    for grads in grads_sequence(layer._shapes, 5, seed=2):
        for k, g in grads.items():
            layer.grads[k][...] = g
        opt.step()
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(torch.from_numpy(layer.state_dict()[name].copy()))
        ours.update()
        theirs.update_parameters(net)
    last = {k: v.copy() for k, v in layer.state_dict().items()}
    raw = ours.swap_in()
    for name, p in theirs.module.named_parameters():
        np.testing.assert_allclose(layer.state_dict()[name], p.detach().numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    ours.swap_out(raw)
    for k, v in last.items():
        np.testing.assert_array_equal(layer.state_dict()[k], v)


def test_exponential_average_of_dicts_resume_and_errors():
    p, g = np.zeros(3, np.float32), np.zeros(3, np.float32)
    ema = optim.ExponentialAverage({"w": (p, g)}, 0.5)
    with pytest.raises(RuntimeError, match="no average yet"):
        ema.swap_in()
    for value in (2.0, 4.0, 8.0):
        p[...] = value
        ema.update()
    np.testing.assert_array_equal(ema.average["0.w"], [5.5] * 3)  # 2 -> 3 -> 5.5
    again = optim.ExponentialAverage({"w": (p, g)}, 0.5)
    again.load_state_dict(ema.state_dict())
    p[...] = 0.0
    ema.update()
    again.update()
    np.testing.assert_array_equal(again.average["0.w"], ema.average["0.w"])
    raw = again.swap_in()
    np.testing.assert_array_equal(p, [2.75] * 3)
    again.swap_out(raw)
    np.testing.assert_array_equal(p, [0.0] * 3)
    for decay in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="decay"):
            optim.ExponentialAverage({"w": (p, g)}, decay)
    bad = ema.state_dict()
    bad["average"]["0.w"] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="shape"):
        again.load_state_dict(bad)
    with pytest.raises(ValueError, match="not an ExponentialAverage"):
        again.load_state_dict({"type": "Adam"})
