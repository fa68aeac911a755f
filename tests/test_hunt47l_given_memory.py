"""LBFGS, NewtonCG and SAM step a torch tensor param given new memory (``p.data = t``, ``p.set_(t)``)
there, as torch.optim does.

They stepped torch tensors through NumPy views made at construction: after ``p.data = new`` every
step wrote the old memory, which ``p`` no longer showed, while the closure read the new one (LBFGS
then "converged" on values it never moved). Now each step follows the tensors to their memory
(optkern.optim._given.follow, the first-order optimizers' mechanism); one of another dtype, or sharing
memory with another param, is refused before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O
from optkern import hessian

torch = pytest.importorskip("torch")

C = [1.0, 2.0, 4.0, 0.5, 3.0, 8.0, 0.25]


def _loss(x, y=None):
    c = torch.tensor(C, dtype=x.dtype)
    f = 0.5 * (c * x * x).sum() + 0.125 * (x**4).sum()
    return f if y is None else f + (y**2).sum() + (x[:3] * y).sum()


def _swap(p, how, value=0.75, dtype=None):
    """``p`` given new memory holding ``value`` (None: half its values, as a scaled copy)."""
    new = p.detach() * 0.5 if value is None else torch.full(p.shape, value, dtype=dtype or p.dtype)
    with torch.no_grad():
        if how == "data":
            p.data = new
        else:
            p.set_(new)


def _params(dt):
    return [torch.linspace(-1, 1, 7, dtype=dt), torch.tensor([0.5, -0.25, 2.0], dtype=dt)]


def _ours_closure(ps):
    def closure():
        q = [p.detach().clone().requires_grad_() for p in ps]
        f = _loss(*q)
        f.backward()
        return f.item(), [t.grad.numpy() for t in q]

    return closure


def _lbfgs_run(mine, how, dt, steps, swap_at, **hp):
    ps = _params(dt)[:1]
    if mine:
        opt, closure = O.LBFGS(ps, **hp), _ours_closure(ps)
    else:
        qs = [p.requires_grad_() for p in ps]
        opt = torch.optim.LBFGS(qs, **hp)

        def closure():
            opt.zero_grad()
            f = _loss(*qs)
            f.backward()
            return f

    for s in range(steps):
        if s == swap_at:
            _swap(ps[0], how, None)
        opt.step(closure)
    return ps[0].detach().numpy().copy()


@pytest.mark.parametrize("ls", [None, "strong_wolfe"])
@pytest.mark.parametrize("how", ["data", "set_"])
@pytest.mark.parametrize("dt", [torch.float32, torch.float64])
def test_lbfgs_steps_a_tensor_given_new_memory_as_torch_does(ls, how, dt):
    """Bit for bit where optkern's L-BFGS is torch's (a first iteration: no history), to rounding
    after (the two-loop recursion in coefficient space, lbfgs.py), from the new memory's values."""
    hp = dict(max_iter=1, history_size=3, line_search_fn=ls)
    got, want = _lbfgs_run(True, how, dt, 1, 0, **hp), _lbfgs_run(False, how, dt, 1, 0, **hp)
    assert np.array_equal(got, want), (got, want)
    start = _params(dt)[0].numpy() * 0.5
    assert np.abs(got - start).max() > 0.1  # (it moved from the new memory's values)
    hp["max_iter"] = 4
    got, want = _lbfgs_run(True, how, dt, 4, 2, **hp), _lbfgs_run(False, how, dt, 4, 2, **hp)
    tol = 1e-12 if dt == torch.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 1e-2)
    assert np.abs(got).max() < 0.01  # (near the minimum at 0: it went on after the swap)


def _state(opt):
    sd = opt.state_dict()["state"]
    return {k: np.array(v, dtype=object if isinstance(v, list) else None) for k, v in sd.get(0, {}).items()}


@pytest.mark.parametrize("make", ["lbfgs", "newton"])
def test_a_tensor_moved_to_another_dtype_or_onto_another_param_is_refused_with_nothing_written(make):
    ps = [torch.linspace(-1, 1, 7, dtype=torch.float64), torch.tensor([0.5, -0.25, 2.0], dtype=torch.float64)]
    if make == "lbfgs":
        opt = O.LBFGS(ps, max_iter=2)
    else:
        opt = O.NewtonCG(ps, hessian.from_hvp(lambda v: 2.0 * v, 10, np.float64))
    closure = _ours_closure(ps)
    calls = []

    def counted():
        calls.append(1)
        return closure()

    opt.step(counted)
    before = [p.clone() for p in ps]
    snap = vars(opt).copy()
    _swap(ps[0], "data", dtype=torch.float32)
    n = len(calls)
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\]"):
        opt.step(counted)
    assert len(calls) == n and torch.equal(ps[1], before[1]) and not (ps[0] - 0.75).any()
    assert opt.param_groups[0]["params"][0] is snap["param_groups"][0]["params"][0]
    _swap(ps[0], "data", 0.25, torch.float64)  # (float64 again: stepped from there)
    opt.step(counted)
    assert len(calls) > n and not torch.equal(ps[0], torch.full((7,), 0.25, dtype=torch.float64))
    # memory shared with another param: each is written from its own slice, one update lost
    big = torch.zeros(10, dtype=torch.float64)
    with torch.no_grad():
        ps[0].data, ps[1].data = big[:7], big[5:8]
    n = len(calls)
    with pytest.raises(ValueError, match="share"):
        opt.step(counted)
    assert len(calls) == n and not big.any()


def test_newton_cg_steps_a_tensor_given_new_memory_there():
    def run(swap_to):
        p = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
        opt = O.NewtonCG([p], hessian.from_hvp(lambda v: 2.0 * v, 3, np.float64), damping=1e-8, min_damping=1e-12)

        def closure():
            return float((p * p).sum()), [2.0 * p.numpy()]

        opt.step(closure)
        if swap_to is not None:
            _swap(p, "set_", swap_to)
        opt.step(closure)
        return p.numpy().copy()

    # the exact Newton step of |p|^2 lands at 0 from anywhere: from the new memory's values too
    np.testing.assert_allclose(run(0.75), 0.0, atol=1e-6)


def test_sam_perturbs_and_steps_a_tensor_given_new_memory():
    def run(ours):
        ps = [torch.linspace(-1, 1, 7, dtype=torch.float64)]
        base = O.SGD(ps, lr=0.1)
        sam = O.SAM(base, rho=0.5)
        seen = []

        def closure():
            x = ps[0].numpy().copy()
            seen.append(x)
            return float((x**2).sum()), [2.0 * x]

        sam.step(closure)
        if ours:
            _swap(ps[0], "data", 0.75)
        else:  # (the same values written in place: what the step must do after the swap)
            ps[0].copy_(torch.full((7,), 0.75, dtype=torch.float64))
        sam.step(closure)
        return ps[0].numpy().copy(), seen

    (got, seen), (want, seen_want) = run(True), run(False)
    for a, b in zip(seen, seen_want):  # (the second evaluation at the ascent point of the new values)
        assert np.array_equal(a, b)
    assert np.array_equal(got, want)


def test_a_group_list_replaced_by_the_caller_is_left_as_it_is():
    p, q = torch.zeros(3, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    opt = O.LBFGS([p, q], max_iter=1)
    mine = np.zeros(7)
    opt.param_groups[0]["params"] = [mine]  # (the caller's one array for both: n elements alike)
    q.data = torch.ones(4, dtype=torch.float64)  # (q's slot is gone: nothing to follow it into)
    opt.step(lambda: (float((mine**2).sum() + 1), [2 * mine + 1]))
    assert opt.param_groups[0]["params"] == [mine] and mine.any() and not p.any() and (q == 1).all()
