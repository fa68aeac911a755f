"""Session 34's misc hunt.

* ``spectral_density`` of ``c A`` beside ``A`` (SLQ is scale-equivariant: nodes ``c theta``, density
  ``rho(t / c) / c``). ``1 / (sigma sqrt(2 pi) P)`` was formed in float64 and refused ("sigma: too
  small") once it overflowed -- at ``c = 2**-1018`` for a spectrum of range 0.2, whose density
  (~5 * 2**1018) is a float64; the default width of a one-point spectrum was an absolute 1e-3 below
  magnitude 1, so ``2**-1000 I``'s one node was smeared over 1e298 times its value; nodes near
  -+1e308 made ``hi - lo`` inf and the grid's margin NaN.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian

# Powers of two: c A is exact, so c A's density differs from A's only by the estimator's own rounding.
DENSITY_SCALES = [(np.float64, 2.0**e) for e in (-1018, -1000, 1000, 1016)] + [
    (np.float32, 2.0**e) for e in (-120, 120)
]


def _narrow():
    """A spectrum of range 0.2 (default width 0.002): its density peaks near 5."""
    return np.diag(np.linspace(1.0, 1.2, 30))


def _gauss_density(grid, nodes, weights, sigma):
    """Independent reference of the broadened quadrature (weights per probe sum to 1), in x87 long double
    where NumPy has it: its exponent range holds ``t - theta`` near 1e308 and ``1 / sigma`` near 1e-310."""
    ld = np.longdouble
    z = (grid.astype(ld)[:, None] - nodes.ravel().astype(ld)[None, :]) / ld(sigma)
    w = weights.ravel().astype(ld) / weights.shape[0]
    return ((np.exp(-0.5 * z * z) * w).sum(axis=1) / (ld(sigma) * np.sqrt(2 * np.pi, dtype=ld))).astype(np.float64)


@pytest.mark.parametrize("dtype,c", DENSITY_SCALES)
# (16 I: width 0.016, a peak of 25 -- times 2**1018 still a float64)
@pytest.mark.parametrize("make", [_narrow, lambda: 16 * np.eye(6), lambda: np.diag(np.linspace(-2.0, 5.0, 30))])
def test_spectral_density_of_a_scaled_operator_is_the_scaled_density(make, dtype, c):
    A = make()
    want = hessian.spectral_density(A.astype(dtype), num_probes=2, steps=12, grid=60)
    got = hessian.spectral_density((c * A).astype(dtype), num_probes=2, steps=12, grid=60)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    assert got.sigma / c == pytest.approx(want.sigma, rel=rtol)
    np.testing.assert_allclose(got.grid / c, want.grid, rtol=0, atol=rtol * np.abs(want.grid).max())
    np.testing.assert_allclose(got.density * c, want.density, rtol=0, atol=1e3 * rtol * want.density.max())
    ref = _gauss_density(got.grid, got.nodes, got.weights, got.sigma)
    np.testing.assert_allclose(got.density, ref, rtol=1e-9, atol=1e-12 * ref.max())
    assert np.trapezoid(want.density, want.grid) == pytest.approx(1.0, abs=5e-3)


def test_an_explicit_sigma_scales_with_the_operator():
    A = _narrow()
    c = 2.0**-1018
    want = hessian.spectral_density(A, num_probes=2, steps=12, sigma=0.002, grid=np.linspace(0.9, 1.3, 41))
    got = hessian.spectral_density(c * A, num_probes=2, steps=12, sigma=c * 0.002, grid=c * np.linspace(0.9, 1.3, 41))
    np.testing.assert_allclose(got.density * c, want.density, rtol=1e-9, atol=1e-12 * want.density.max())


def test_a_density_past_float64_is_refused_naming_sigma():
    """``2**-1018 I``: its one node's density ``400 * 2**1018`` is beyond float64's max."""
    with pytest.raises(ValueError, match="^sigma: too small for a float64 density"):
        hessian.spectral_density(2.0**-1018 * np.eye(6), num_probes=2, steps=6, grid=61)


@pytest.mark.parametrize("pad", [0.0, 0.01])
def test_spectral_density_of_nodes_near_the_ends_of_float64(pad):
    d = hessian.spectral_density(np.diag([-1e308, 0.0, 1e308]), num_probes=2, steps=3, grid=51, pad=pad)
    assert np.isfinite(d.grid).all() and np.isfinite(d.density).all()
    assert d.grid[0] < -1e308 and d.grid[-1] > 1e308 and np.all(np.diff(d.grid) > 0)
    assert d.sigma == pytest.approx(2e306, rel=1e-12)
    ref = _gauss_density(d.grid, d.nodes, d.weights, d.sigma)
    np.testing.assert_allclose(d.density, ref, rtol=1e-9, atol=1e-12 * ref.max())


# ``optkern study``'s divergence rule (optkern.study.divergence): "not finite or above 1000x the start"
# called a run that ended at 869x its start loss "done".

S = 2.3  # a 10-class cross-entropy's start


@pytest.mark.parametrize(
    "tail, last, want",
    [
        ([869 * S], True, 1),  # the case at hand: its last epoch, 869x the start
        ([2.0, 869 * S], True, 2),
        ([5 * S, 869 * S], False, 1),  # two epochs in a row above 4x: diverged at the first
        ([2.0, 1.5, 5 * S, 6 * S], False, 3),
        ([5 * S], False, None),  # one epoch above, more to come: a spike, not yet divergence
        ([2.0, 5 * S, 1.0], False, None),  # a spike it came back from
        ([2.0, 5 * S, 1.0], True, None),
        ([2.0, 3.9 * S, 3.9 * S, 3.9 * S], True, None),  # within 4x
        ([2.0, float("nan")], False, 2),  # not finite: at once
        ([2.0, float("inf")], False, 2),
        ([1001 * S], False, 1),  # beyond any recovery: at once, as before
    ],
)
def test_divergence_rule_on_synthetic_loss_curves(tail, last, want):
    from optkern.study import divergence

    assert divergence.diverged_at([S, *tail], last=last) == want


@pytest.fixture(scope="module")
def digits():
    from optkern import datasets

    return datasets.load_digits().split(0.2, seed=0)


def _sgd_run(digits, lr, epochs, whole=False):
    """One quick SGD study run on digits (``whole``: the study's result, else the run)."""
    from optkern.study import runner

    cfg = runner.StudyConfig.quick(
        optimizers=["sgd"],
        norms=["none"],
        hidden=(8,),
        curvature_batch=32,
        jobs=1,
        checkpoints=2,
        epochs=epochs,
        overrides={"sgd": {"lr": lr}},
    )
    res = runner.run_study(*digits, cfg, progress=False)
    if whole:
        return res
    (r,) = res["runs"]
    return r


def test_a_study_run_that_ends_far_above_its_start_loss_diverged(digits):
    """sgd at lr=20 for one epoch: the loss went from 2.3 to 51 (22x), reported "done"."""
    r = _sgd_run(digits, 20.0, 1)
    start = r["history"]["train_loss"][0]
    assert r["status"] == "diverged" and r["diverged_epoch"] == 1
    assert 4 * start < r["diverged_loss"] < 1e3 * start  # (the case at hand: finite, below the old bound)
    assert r["history"]["epoch"] == [0]


def test_a_study_run_that_stays_above_its_bound_diverged_at_the_first_such_epoch(digits):
    """sgd at lr=8: 17.3 (7.4x) at epoch 1 and above 4x at epoch 2 too; its epoch 1, logged while it
    might have recovered, is dropped with its Hessian: a diverged run's history ends before it."""
    r = _sgd_run(digits, 8.0, 4)
    start = r["history"]["train_loss"][0]
    assert r["status"] == "diverged" and r["diverged_epoch"] == 1
    assert 4 * start < r["diverged_loss"] < 1e3 * start
    assert r["history"]["epoch"] == [0] and all(len(v) == 1 for v in r["history"].values())
    assert [c["epoch"] for c in r["curvature"]] == [0]


# SAM and a gradient with NaN / Inf entries. The ascent step divided by its norm: a NaN in the first
# gradient made every param at the ascent point NaN (an Inf gave a scale of 0: no move), so every
# gradient there was NaN and the wrapped optimizer's step wrote NaN into every param and its state;
# step(closure) took both gradients without the check its loss gets (and LBFGS's / NewtonCG's do).
# (The Inf cases passed before: guards of the same contract.)

BAD = [float("nan"), float("inf"), -float("inf")]


def _params():
    rng = np.random.default_rng(7)
    return [rng.standard_normal(5).astype(np.float32), rng.standard_normal(3).astype(np.float32)]


def _quad_grads(ps):
    """The gradient of sum(p^2) / 2 + sum(p): p + 1 (depends on where it is taken)."""
    return [p + 1 for p in ps]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("at", ["w", "the ascent point"])
def test_sam_step_refuses_a_non_finite_closure_gradient_with_w_and_state_untouched(at, bad):
    from optkern import optim

    ps = _params()
    w = [p.copy() for p in ps]
    sam = optim.SAM(optim.Adam(ps, lr=0.1), rho=0.05)
    calls = []

    def closure():
        calls.append(1)
        g = _quad_grads(ps)
        if (len(calls) == 1) == (at == "w"):
            g[0][2] = bad
        return float(sum((p.astype(np.float64) ** 2).sum() / 2 for p in ps)), g

    with pytest.raises(ValueError, match=rf"^closure: returned a gradient with NaN or Inf entries \(at {at}\)"):
        sam.step(closure)
    assert len(calls) == (1 if at == "w" else 2)
    for p, p0 in zip(ps, w):
        np.testing.assert_array_equal(p.view(np.uint32), p0.view(np.uint32))  # (the very bits of w)
    assert sam.base.state_dict()["state"] == {}
    calls.append(1)  # (from here every closure result is finite: the next step works)
    sam.step(lambda: (1.0, _quad_grads(ps)))
    assert all(np.isfinite(p).all() for p in ps)


def _adam_step(w, g, lr=0.1):
    """Independent float64 reference of one Adam step from fresh state (PyTorch's defaults)."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    g = g.astype(np.float64)
    m, v = (1 - b1) * g, (1 - b2) * g * g
    return w.astype(np.float64) - lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("bad", BAD)
def test_sam_first_step_with_a_non_finite_gradient_stays_at_w(bad, adaptive):
    """The manual API follows the wrapped optimizer's step(grads) (no error): no ascent direction,
    so the params stay at w and the descent step is the wrapped optimizer's with the gradient given."""
    from optkern import optim

    ps = _params()
    w = [p.copy() for p in ps]
    sam = optim.SAM(optim.Adam(ps, lr=0.1), rho=0.05, adaptive=adaptive)
    g1 = _quad_grads(ps)
    g1[1][0] = bad
    sam.first_step(g1)
    assert not np.isfinite(sam.grad_norm)
    for p, p0 in zip(ps, w):
        np.testing.assert_array_equal(p.view(np.uint32), p0.view(np.uint32))
    g2 = _quad_grads(ps)  # (taken at the "ascent point": w)
    sam.second_step(g2)
    for p, p0, g in zip(ps, w, g2):
        np.testing.assert_allclose(p, _adam_step(p0, g), rtol=1e-5, atol=1e-6)


def test_sam_second_step_with_a_non_finite_gradient_is_the_wrapped_optimizers_step():
    from optkern import optim

    ps, ref = _params(), _params()
    sam = optim.SAM(optim.Adam(ps, lr=0.1), rho=0.05)
    base = optim.Adam(ref, lr=0.1)
    sam.first_step(_quad_grads(ps))
    g2 = [g.copy() for g in _quad_grads(ref)]
    g2[0][3] = np.nan
    sam.second_step([g.copy() for g in g2])
    base.step(g2)
    for p, r in zip(ps, ref):  # (NaN where the gradient has it, and only there)
        np.testing.assert_array_equal(p, r)
    assert np.isnan(ps[0][3]) and np.isfinite(np.delete(ps[0], 3)).all() and np.isfinite(ps[1]).all()


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("base_name", ["optkern", "torch"])
def test_torch_sam_with_a_non_finite_first_gradient_steps_from_w(base_name, bad):
    torch = pytest.importorskip("torch")
    import optkern.torch as okt

    base_cls = okt.Adam if base_name == "optkern" else torch.optim.Adam
    p = torch.nn.Parameter(torch.tensor(_params()[0]))
    ref = torch.nn.Parameter(p.detach().clone())
    sam = okt.SAM([p], base_cls, lr=0.1, rho=0.05)
    (0.5 * (p * p).sum() + p.sum()).backward()
    p.grad[2] = bad

    def closure():
        sam.zero_grad()
        loss = 0.5 * (p * p).sum() + p.sum()
        loss.backward()
        return loss

    sam.step(closure)
    base = base_cls([ref], lr=0.1)
    ref.grad = ref.detach() + 1  # (the gradient at w: the ascent point was w)
    base.step()
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p.detach(), ref.detach(), rtol=0, atol=0)
    want = _adam_step(_params()[0], _params()[0] + 1)
    np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-5, atol=1e-6)


def test_torch_sam_with_a_non_finite_second_gradient_is_the_base_step():
    torch = pytest.importorskip("torch")
    import optkern.torch as okt

    p = torch.nn.Parameter(torch.tensor(_params()[0]))
    ref = torch.nn.Parameter(p.detach().clone())
    sam = okt.SAM([p], okt.Adam, lr=0.1, rho=0.05)
    (0.5 * (p * p).sum()).backward()
    g2 = torch.tensor(_params()[0]) * 3
    g2[1] = float("nan")

    def closure():
        sam.zero_grad()
        p.grad = g2.clone()

    sam.step(closure)
    base = okt.Adam([ref], lr=0.1)
    ref.grad = g2.clone()
    base.step()
    torch.testing.assert_close(p.detach(), ref.detach(), rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(p[1]) and torch.isfinite(p[[0, 2, 3, 4]]).all()
