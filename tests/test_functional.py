"""optkern.functional (user-owned state) against the NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

import optkern.functional as F
import reference as R

SHAPES = [(1,), (7,), (1000,), (4, 6)]
STEPS = 20


def _data(seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def _close(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def _zeros(params, k=1):
    return [[np.zeros_like(p) for p in params] for _ in range(k)]


def test_sgd_momentum_first_step_and_on():
    params, seq = _data(1)
    ps = [p.copy() for p in params]
    (bufs,) = _zeros(ps)
    for b in bufs:
        b[...] = 123.0  # ignored on the first step
    hp = dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01)
    for t, grads in enumerate(seq, start=1):
        F.sgd_(ps, grads, bufs, first=(t == 1), **hp)
    want, states = R.run("SGD", params, seq, hp)
    _close(ps, want)
    _close(bufs, [s["momentum_buffer"] for s in states])


def test_sgd_plain_and_textbook():
    params, seq = _data(2)
    ps = [p.copy() for p in params]
    for grads in seq:
        F.sgd_(ps, grads, lr=0.1, maximize=True)
    _close(ps, R.run("SGD", params, seq, dict(lr=0.1, maximize=True))[0])
    ps = [p.copy() for p in params]
    (bufs,) = _zeros(ps)
    hp = dict(lr=0.1, momentum=0.9, nesterov=True, momentum_form="textbook")
    for t, grads in enumerate(seq, start=1):
        F.sgd_(ps, grads, bufs, first=(t == 1), **hp)
    _close(ps, R.run("SGD", params, seq, hp)[0])


def test_adagrad():
    params, seq = _data(3)
    ps = [p.copy() for p in params]
    sums = [np.full_like(p, 0.1) for p in ps]
    hp = dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, eps=1e-9)
    for t, grads in enumerate(seq, start=1):
        F.adagrad_(ps, grads, sums, step=t, **hp)
    _close(ps, R.run("Adagrad", params, seq, dict(hp, initial_accumulator_value=0.1))[0])


def test_adagrad_norm():
    params, seq = _data(4)
    ps = [p.copy() for p in params]
    b_sq = np.array([0.5**2])
    for grads in seq:
        F.adagrad_norm_(ps, grads, b_sq, lr=0.2, weight_decay=0.01)
    want, want_b_sq = R.adagrad_norm_run(params, seq, lr=0.2, b0=0.5, weight_decay=0.01)
    _close(ps, want)
    assert b_sq[0] == pytest.approx(want_b_sq, rel=1e-13)


@pytest.mark.parametrize(
    "centered,momentum,nesterov", [(False, 0.0, False), (True, 0.0, False), (True, 0.9, False), (False, 0.9, True)]
)
def test_rmsprop(centered, momentum, nesterov):
    params, seq = _data(5)
    ps = [p.copy() for p in params]
    sq, ga, mb = _zeros(ps, 3)
    hp = dict(lr=0.01, alpha=0.95, weight_decay=0.01, momentum=momentum, nesterov=nesterov)
    for grads in seq:
        F.rmsprop_(ps, grads, sq, ga if centered else None, mb, **hp)
    _close(ps, R.run("RMSprop", params, seq, dict(hp, centered=centered))[0])


def test_adadelta():
    params, seq = _data(6)
    ps = [p.copy() for p in params]
    sq, acc = _zeros(ps, 2)
    for grads in seq:
        F.adadelta_(ps, grads, sq, acc, lr=0.7, rho=0.85, maximize=True)
    _close(ps, R.run("Adadelta", params, seq, dict(lr=0.7, rho=0.85, maximize=True))[0])


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_and_adamw(amsgrad):
    params, seq = _data(7)
    ps, qs = [p.copy() for p in params], [p.copy() for p in params]
    m, v, vmax, m2, v2, vmax2 = _zeros(ps, 6)
    for t, grads in enumerate(seq, start=1):
        F.adam_(ps, grads, m, v, vmax if amsgrad else None, step=t, lr=0.01, beta1=0.8, weight_decay=0.01)
        F.adamw_(qs, grads, m2, v2, vmax2 if amsgrad else None, step=t, lr=0.01)
    _close(ps, R.run("Adam", params, seq, dict(lr=0.01, betas=(0.8, 0.999), weight_decay=0.01, amsgrad=amsgrad))[0])
    _close(qs, R.run("AdamW", params, seq, dict(lr=0.01, amsgrad=amsgrad))[0])


def test_nadam_returns_mu_product():
    params, seq = _data(8)
    ps = [p.copy() for p in params]
    m, v = _zeros(ps, 2)
    mu_product = 1.0
    hp = dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, momentum_decay=0.01)
    for t, grads in enumerate(seq, start=1):
        mu_product = F.nadam_(ps, grads, m, v, step=t, mu_product=mu_product, **hp)
    want, states = R.run("NAdam", params, seq, hp)
    _close(ps, want)
    assert mu_product == pytest.approx(states[0]["mu_product"], rel=1e-13)


def test_single_array_and_float32():
    rng = np.random.default_rng(9)
    p = rng.standard_normal(101).astype(np.float32)
    g = rng.standard_normal(101).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    want = p.astype(np.float64)
    F.adam_(p, g, m, v, step=1, lr=0.1)  # bare arrays are one-element lists
    R.adam_step(want, g.astype(np.float64), {}, 1, lr=0.1)
    np.testing.assert_allclose(p, want, rtol=1e-6, atol=1e-6)


def test_grads_must_match_the_params_shapes():
    """The native calls compare sizes; a transposed gradient is caught here, before any write."""
    p = np.ones((2, 3))
    m, v = np.zeros_like(p), np.zeros_like(p)
    with pytest.raises(ValueError, match=r"^grads\[0\]: expected shape \(2, 3\), got \(3, 2\)$"):
        F.sgd_([p], [np.ones((3, 2))], lr=0.1)
    with pytest.raises(ValueError, match=r"^grads\[1\]: expected shape \(2, 3\), got \(6,\)$"):
        F.adam_([p, p.copy()], [np.ones((2, 3)), np.ones(6)], [m, m.copy()], [v, v.copy()], step=1)
    assert (p == 1).all() and not m.any() and not v.any()
    with pytest.raises(ValueError, match=r"^grads\[0\]: expected 6 elements, got 5"):  # sizes: native check
        F.sgd_([p], [np.ones(5)], lr=0.1)


@pytest.mark.parametrize("fn", [F.adam_, F.adamw_, F.nadam_])
def test_betas_are_named_by_their_keywords(fn):
    p = np.ones(3)
    m, v = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match=r"^beta1: must be in \[0.0, 1.0\), got 1.0$"):
        fn([p], [p.copy()], [m], [v], step=1, beta1=1.0)
    with pytest.raises(ValueError, match=r"^beta2: must be in \[0.0, 1.0\), got 1.5$"):
        fn([p], [p.copy()], [m], [v], step=1, beta2=1.5)
    assert (p == 1).all() and not m.any() and not v.any()
