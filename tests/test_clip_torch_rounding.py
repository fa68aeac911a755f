"""clip_grad_norm_'s scaling rounded as torch's: the factor min(1, max_norm / (norm + 1e-6)) made by
torch's own ops on a norm tensor of the grads' dtype (reciprocal, multiply, clamp), so that the
clipped gradients carry torch's bits wherever the norms agree (rules::clip_coef)."""

import numpy as np
import pytest

import optkern

torch = pytest.importorskip("torch")

DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def _cases(dt, count=60, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        sizes = [int(s) for s in rng.integers(0, 257, size=rng.integers(1, 5))]
        scale = rng.uniform(0.1, 10.0)
        yield [(rng.standard_normal(s) * scale).astype(dt) for s in sizes], float(rng.uniform(0.01, 5.0))


def _torch_scaled(grads, max_norm, norm, dt):
    """torch's clip_grad_norm_ scaling given the norm: its ops on a norm tensor of the grads' dtype."""
    t = torch.tensor(norm, dtype=DTYPES[dt])
    coef = torch.clamp(max_norm / (t + 1e-6), max=1.0)
    return [(torch.from_numpy(g) * coef).numpy() for g in grads]


@pytest.mark.parametrize("dt", list(DTYPES), ids=["float32", "float64"])
def test_numpy_clip_scales_with_torchs_rounding(dt):
    for grads, max_norm in _cases(dt):
        ours = [g.copy() for g in grads]
        norm = optkern.clip_grad_norm_(ours, max_norm)
        for a, b in zip(ours, _torch_scaled(grads, max_norm, norm, dt)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dt", list(DTYPES), ids=["float32", "float64"])
def test_adapter_matches_torch_bitwise_where_the_norms_agree(dt):
    import optkern.torch as OT

    agreed = 0
    for grads, max_norm in _cases(dt, seed=1):
        ps = [torch.zeros(g.shape, dtype=DTYPES[dt], requires_grad=True) for g in grads]
        qs = [torch.zeros(g.shape, dtype=DTYPES[dt], requires_grad=True) for g in grads]
        for p, q, g in zip(ps, qs, grads):
            p.grad, q.grad = torch.from_numpy(g.copy()), torch.from_numpy(g.copy())
        theirs = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        ours = OT.clip_grad_norm_(qs, max_norm)
        assert ours.dtype == theirs.dtype
        if ours.item() != theirs.item():  # (torch sums in the grads' dtype, optkern in float64)
            continue
        agreed += 1
        for p, q in zip(ps, qs):
            assert torch.equal(p.grad, q.grad)
    assert agreed >= 20  # (the norms agree in most cases: the comparison is not vacuous)


@pytest.mark.parametrize("dt", list(DTYPES), ids=["float32", "float64"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_nonfinite_norm_as_torch(dt, value):
    """An infinite norm scales by 0 (finite grads 0, infinite ones NaN), a NaN norm by NaN."""
    g = np.array([1.0, value, 2.0], dtype=dt)
    p = torch.zeros(3, dtype=DTYPES[dt], requires_grad=True)
    p.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_([p], 1.0)
    optkern.clip_grad_norm_([g], 1.0)
    np.testing.assert_array_equal(g, p.grad.numpy())


def test_adapter_takes_a_tensor_max_norm_as_torch():
    import optkern.torch as OT

    g = np.array([3.0, 4.0], np.float32)
    p, q = (torch.zeros(2, requires_grad=True) for _ in range(2))
    p.grad, q.grad = torch.from_numpy(g.copy()), torch.from_numpy(g.copy())
    want = torch.nn.utils.clip_grad_norm_([p], torch.tensor(1.0))
    got = OT.clip_grad_norm_([q], torch.tensor(1.0))
    assert got.item() == want.item() and torch.equal(p.grad, q.grad)
