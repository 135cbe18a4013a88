"""The fused softmax cross-entropy against float64 NumPy and PyTorch."""
import numpy as np
import pytest

import rnncore
from conftest import C_OPS, ISAS, backend


def numpy_xent(z, t):
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(logp, t[..., None], axis=-1)[..., 0], np.exp(logp)


@pytest.fixture(params=[f"c-{isa}" for isa in ISAS] + ["reference"])
def xent_path(request):
    """The fused loss on every CPU path (its row kernel is dispatched), and
    on the reference."""
    if request.param == "reference":
        with backend("reference"):
            yield request.param
        return
    saved = C_OPS.isa()
    C_OPS.set_isa(request.param[2:])
    with backend("c"):
        yield request.param
    C_OPS.set_isa(saved)


@pytest.mark.parametrize("V", [1, 7, 10000])
def test_matches_float64(xent_path, V, rng):
    z = (rng.standard_normal((3, 11, V)) * 4).astype(np.float32)
    t = rng.integers(0, V, size=(3, 11))
    losses, dz = rnncore.softmax_cross_entropy(z, t, reduction="none")
    mean, dz_mean = rnncore.softmax_cross_entropy(z, t)
    total, _ = rnncore.softmax_cross_entropy(z, t, reduction="sum", grad=False)
    ref, p = numpy_xent(z, t)
    np.testing.assert_allclose(losses, ref, rtol=1e-5, atol=1e-5)
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, t[..., None], 1.0, axis=-1)
    np.testing.assert_allclose(dz, p - onehot, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dz_mean, (p - onehot) / t.size, rtol=1e-5, atol=1e-8)
    assert mean == pytest.approx(ref.mean(), rel=1e-5) and total == pytest.approx(ref.sum(), rel=1e-5)


def test_matches_torch_with_ignored_targets(rng):
    torch = pytest.importorskip("torch")
    z = (rng.standard_normal((40, 50)) * 3).astype(np.float32)
    t = rng.integers(0, 50, size=40)
    t[::7] = -100
    loss, dz = rnncore.softmax_cross_entropy(z, t)
    tz = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(t), ignore_index=-100)
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-5)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-4, atol=1e-7)
    assert not dz[::7].any()


def test_stable_for_huge_logits_and_nan_propagates():
    z = np.array([[1e4, -1e4, 0.0], [-3e38, 3e38, 1.0]], np.float32)
    loss, dz = rnncore.softmax_cross_entropy(z, np.array([1, 1]), reduction="none")
    np.testing.assert_allclose(loss, [2e4, 0.0], rtol=1e-6)
    assert np.isfinite(dz).all()
    loss, dz = rnncore.softmax_cross_entropy(np.array([[0.0, np.nan]], np.float32), np.array([0]),
                                             reduction="none")
    assert np.isnan(loss).all() and np.isnan(dz).all()


def test_errors_name_the_argument():
    z = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="targets must be < V = 5"):
        rnncore.softmax_cross_entropy(z, np.array([0, 1, 2, 5]))
    with pytest.raises(TypeError, match="targets must be integers"):
        rnncore.softmax_cross_entropy(z, np.zeros(4))
    with pytest.raises(ValueError, match="logits must be"):
        rnncore.softmax_cross_entropy(z, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="reduction"):
        rnncore.softmax_cross_entropy(z, np.zeros(4, np.int64), reduction="avg")
    with pytest.raises(TypeError, match="logits must be float32"):
        rnncore.softmax_cross_entropy(z.astype(np.int32), np.zeros(4, np.int64))


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("V", [5, 67, 10000])
def test_in_place_gradient_keeps_the_loss(V, rng):
    """rows_xent(in_place=True) writes dz over the logits; the loss must still
    be read from the logits (a kernel once read the target's logit after
    overwriting it)."""
    from rnncore.engine.losses import rows_xent
    z = (rng.standard_normal((9, V)) * 3).astype(np.float32)
    t = rng.integers(0, V, size=9)
    ref_losses, ref_dz = rows_xent(z.copy(), t, 0.5, True)
    buf = z.copy()
    losses, dz = rows_xent(buf, t, 0.5, True, in_place=True)
    assert dz is buf
    np.testing.assert_array_equal(losses, ref_losses)
    np.testing.assert_array_equal(dz, ref_dz)
    np.testing.assert_allclose(losses, numpy_xent(z, t)[0], rtol=1e-5, atol=1e-5)
