"""optkern.optim.SAM given a gradient in a param's memory (a closure of |w|^2 / 2 returning ``w``).

It steps as the reference SAM (davda54/sam) does, and as optkern.torch.SAM does since h335: the
ascent reads the gradients before any param moves, and the return to ``w`` leaves the wrapped
optimizer the ascent point's gradient (it was refused by name before). Checked against a float64
NumPy reference of the two-step update written here, and bit for bit against the same steps with
the gradients copied.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O

SIZES = (1, 7, 0, 1023)
RHO, LR, EPS = 0.5, 0.1, 1e-12


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n) for n in SIZES]


def _ascent(ws, gs, rho, adaptive=False):
    """The reference's ascent point: w + rho s^2 g / (||s g|| + eps), s = |w| (adaptive) or 1."""
    ss = [np.abs(w) if adaptive else np.ones_like(w) for w in ws]
    norm = np.sqrt(sum(float(np.sum((s * g) ** 2)) for s, g in zip(ss, gs)))
    return [w + rho * s * s * g / (norm + EPS) for w, s, g in zip(ws, ss, gs)]


def _ref_sgd_momentum(ws, steps, momentum=0.9, rho=RHO):
    """SAM over SGD with momentum (PyTorch's: buf = g at the first step), loss |w|^2 / 2."""
    ws, bufs = [w.copy() for w in ws], None
    for _ in range(steps):
        gs = _ascent(ws, ws, rho)  # the gradient at the ascent point is the ascent point
        bufs = gs if bufs is None else [momentum * b + g for b, g in zip(bufs, gs)]
        ws = [w - LR * b for w, b in zip(ws, bufs)]
    return ws


def _ref_adam(ws, steps, b1=0.9, b2=0.999, eps=1e-8, adaptive=False, rho=RHO):
    ws = [w.copy() for w in ws]
    m, v = [np.zeros_like(w) for w in ws], [np.zeros_like(w) for w in ws]
    for t in range(1, steps + 1):
        gs = _ascent(ws, ws, rho, adaptive)
        m = [b1 * a + (1 - b1) * g for a, g in zip(m, gs)]
        v = [b2 * a + (1 - b2) * g * g for a, g in zip(v, gs)]
        ws = [w - LR * (a / (1 - b1**t)) / (np.sqrt(b / (1 - b2**t)) + eps) for w, a, b in zip(ws, m, v)]
    return ws


def _grouped(ps, make):
    return make([{"params": ps[:2]}, {"params": ps[2:]}])


def test_step_with_the_params_as_gradients_follows_the_reference_sgd_momentum():
    ps = _params()
    want = _ref_sgd_momentum(ps, 3)
    sam = O.SAM(_grouped(ps, lambda g: O.SGD(g, lr=LR, momentum=0.9)), rho=RHO)
    for _ in range(3):
        sam.step(lambda: (0.5 * sum(float(p @ p) for p in ps), list(ps)))
    for p, q in zip(ps, want):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("adaptive", [False, True])
def test_first_and_second_step_with_aliased_gradients_follow_the_reference_adam(adaptive):
    ps = _params(1)
    want = _ref_adam(ps, 2, adaptive=adaptive)
    sam = O.SAM(_grouped(ps, lambda g: O.Adam(g, lr=LR)), rho=RHO, adaptive=adaptive)
    for _ in range(2):
        sam.first_step(list(ps))
        sam.second_step(list(ps))  # (the params now hold the ascent point: its gradient)
    for p, q in zip(ps, want):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


def test_aliased_gradients_step_bit_equal_to_copied_ones():
    ps, qs = _params(2), _params(2)
    sam_a = O.SAM(O.Adam(ps, lr=LR), rho=RHO)
    sam_c = O.SAM(O.Adam(qs, lr=LR), rho=RHO)
    for _ in range(3):
        la = sam_a.step(lambda: (float(sum(p.sum() for p in ps)), ps))
        lc = sam_c.step(lambda: (float(sum(q.sum() for q in qs)), [q.copy() for q in qs]))
        assert la == lc
        assert sam_a.grad_norm == sam_c.grad_norm
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p, q)


def test_a_gradient_in_another_params_memory_follows_the_reference():
    # grads[1] is params[0] itself (same shape): the ascent reads it before params[0] moves, and the
    # return of params[0] to w leaves grads[1] at params[0]'s ascent point for the wrapped SGD
    rng = np.random.default_rng(3)
    ps = [rng.standard_normal(7), rng.standard_normal(7)]
    w = [p.copy() for p in ps]
    sam = O.SAM(O.SGD(ps, lr=LR), rho=RHO)
    g0 = rng.standard_normal(7)
    sam.first_step([g0, ps[0]])
    up = _ascent(w, [g0, w[0]], RHO)
    for p, q in zip(ps, up):
        np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-15)
    g0b = rng.standard_normal(7)
    sam.second_step([g0b, ps[0]])
    np.testing.assert_allclose(ps[0], w[0] - LR * g0b, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ps[1], w[1] - LR * up[0], rtol=1e-13, atol=1e-15)


def test_a_gradient_in_part_of_a_param_is_read_before_the_move():
    rng = np.random.default_rng(4)
    p = rng.standard_normal(1023)
    q = rng.standard_normal(7)
    w, wq = p.copy(), q.copy()
    sam = O.SAM(O.SGD([p, q], lr=LR), rho=RHO)
    sam.first_step([rng.standard_normal(1023), p[100:107]])  # (q's gradient: a slice of p)
    g = p[100:107].copy()
    sam.second_step([rng.standard_normal(1023), g])
    want_q = wq - LR * g
    np.testing.assert_allclose(q, want_q, rtol=1e-13, atol=1e-15)
    assert not np.array_equal(p, w)  # (p stepped too: its own gradient)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rho_zero_with_aliased_gradients_is_the_wrapped_optimizers_step_bit_for_bit(dtype):
    ps = [p.astype(dtype) for p in _params(5)]
    qs = [p.copy() for p in ps]
    sam = O.SAM(O.Adam(ps, lr=LR, weight_decay=0.01), rho=0.0)
    base = O.Adam(qs, lr=LR, weight_decay=0.01)
    for _ in range(3):
        sam.step(lambda: (1.0, ps))
        base.step([q.copy() for q in qs])
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p, q)


def test_two_params_in_one_memory_are_still_refused_by_name_nothing_written():
    buf = np.random.default_rng(6).standard_normal(10)
    before = buf.copy()
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\] shares memory with param_groups\[0\]"):
        sam = O.SAM(O.SGD([buf[:6]], lr=LR), rho=RHO)
        sam.base.add_param_group({"params": [buf[4:]]})  # (the base may refuse it itself)
        sam.first_step([np.ones(6), np.ones(6)])
    np.testing.assert_array_equal(buf, before)
