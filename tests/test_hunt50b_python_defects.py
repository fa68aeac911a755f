"""Defects of the optimizers' Python layer over NumPy arrays and torch tensors (hunt 50b).

1. A param put in a group's list in place (``opt.param_groups[g]['params'][i] = a.T``), or a torch
   tensor param re-laid out in place (``t.data = t.data.t()``, whose new view ``follow`` puts in the
   list), that the step cannot update in place (not C-contiguous) was refused by the step's native
   checks as ``params[k]``, its place among all the params -- the argument the caller never passed
   (L-BFGS named ``param_groups[0]['params'][i]``). ``_check_replaced`` checks it as
   ``add_param_group`` checks a param, naming where it was put.
2. L-BFGS and Newton-CG refused a torch tensor put in their group's list in place ("expected an
   array, got Tensor") where the first-order optimizers step it, follow it to new memory and bump
   its version (hunt 49d): ``_lbfgs_state.take_put`` takes it as they do.
3. A param reshaped at its own address -- the same bytes in the same order: ``a.shape = (3, 5)`` in
   place, ``a.reshape(3, 5)`` put in its place, a torch tensor re-viewed ``t.data = t.data.view(3, 5)``
   -- was not followed: the tensor kept its old view (grads of its own shape refused), the array put
   in place was refused against its state's shape, and an array reshaped in place stepped, but its
   ``state_dict()`` did not load back. Now followed: ``_given.follow`` compares shapes (its fast
   path one native ``data_layouts`` call), the state follows its param's shape where it is read
   (``_state_dict.follow_reshaped``); another array of another shape is still refused.
   NewtonCG also dropped its cached gradient only for a tensor that moved: an array put in place
   was stepped from the old values' gradient (after a converged step: not moved at all).
4. hessian/lanczos.py, krylov.py and mlp_operator.py split along their seams (power.py,
   _restart.py, _mlp_checks.py): the names keep their import paths.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O
from given_steppers import stepper

torch = pytest.importorskip("torch")

_FIRST_ORDER = [("SGD", {"momentum": 0.9}), ("Adam", {}), ("RMSprop", {"centered": True}), ("Adagrad", {})]


def _two_groups(cls, hp, rng):
    """``cls`` over two groups of odd-sized float32 arrays (7,) and [(3, 5), (1,)], and their grads."""
    ps = [rng.standard_normal(s).astype(np.float32) for s in ((7,), (3, 5), (1,))]
    opt = getattr(O, cls)([ps[0]], lr=0.1, **hp)
    opt.add_param_group({"params": ps[1:]})
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in ps]
    return opt, ps, grads


def _state_copy(opt) -> list:
    return [np.copy(a) for run in (r for rs in opt._runs for r in rs) for arrs in run.state.values() for a in arrs]


@pytest.mark.parametrize("cls,hp", _FIRST_ORDER)
def test_a_non_contiguous_array_put_in_place_is_named_where_it_was_put(cls, hp):
    rng = np.random.default_rng(5001)
    opt, ps, grads = _two_groups(cls, hp, rng)
    opt.step(grads)
    wide = rng.standard_normal((3, 10)).astype(np.float32)
    opt.param_groups[1]["params"][0] = wide[:, ::2]  # (a strided view: (3, 5), not C-contiguous)
    before, state, wide0 = [p.copy() for p in ps], _state_copy(opt), wide.copy()
    for _ in range(2):  # (at every step; before: "params[1]: array must be C-contiguous")
        with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]: array must be C-contiguous"):
            opt.step(grads)
        assert all(np.array_equal(a, b) for a, b in zip(ps, before)) and np.array_equal(wide, wide0)
        assert all(np.array_equal(a, b) for a, b in zip(_state_copy(opt), state))
    opt.param_groups[1]["params"][0] = ps[1]  # (given back: stepped again)
    opt.step(grads)
    assert not np.array_equal(ps[1], before[1])


def test_a_transposed_array_put_in_place_is_named_before_its_state_shape():
    rng = np.random.default_rng(5002)
    opt, ps, grads = _two_groups("SGD", {"momentum": 0.9}, rng)
    opt.step(grads)
    opt.param_groups[1]["params"][0] = ps[1].T  # (the same memory, F order)
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]: array must be C-contiguous"):
        opt.step([grads[0], grads[1].T, grads[2]])


def test_a_read_only_array_put_in_place_is_named_where_it_was_put():
    rng = np.random.default_rng(5003)
    opt, ps, grads = _two_groups("Adam", {}, rng)
    frozen = ps[2].copy()
    frozen.flags.writeable = False
    opt.param_groups[1]["params"][1] = frozen
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[1\]: .*read-only"):
        opt.step(grads)
    assert np.array_equal(frozen, ps[2])


@pytest.mark.parametrize("cls,hp", _FIRST_ORDER)
def test_a_tensor_re_laid_out_in_place_is_named_in_its_group(cls, hp):
    torch.manual_seed(5004)
    ps = [torch.randn(7), torch.randn(3, 3), torch.randn(5)]
    opt = getattr(O, cls)([ps[0]], lr=0.1, **hp)
    opt.add_param_group({"params": ps[1:]})
    grads = [np.ones(tuple(p.shape), np.float32) for p in ps]
    opt.step(grads)
    ps[1].data = ps[1].data.t()  # (the same address, size and shape: other strides)
    before = [p.clone() for p in ps]
    for _ in range(2):
        with pytest.raises(ValueError, match=r"^param_groups\[1\]\['params'\]\[0\]: array must be C-contiguous"):
            opt.step(grads)
        assert all(torch.equal(a, b) for a, b in zip(ps, before))
    ps[1].data = ps[1].data.t()  # (laid out back: stepped again)
    opt.step(grads)
    assert not torch.equal(ps[1], before[1].t())


_KINDS = ["sgd", "lbfgs", "newton"]


@pytest.mark.parametrize("kind", _KINDS)
def test_a_tensor_put_in_place_is_stepped_followed_and_bumped(kind):
    torch.manual_seed(5005)
    ps = [torch.randn(7), torch.randn(3)]  # (10 elements: the Newton stepper's operator)
    step = stepper(kind, ps)
    step()
    old, t = ps[1], torch.randn(3)
    step.opt.param_groups[0]["params"][1] = ps[1] = t  # (before: "expected an array, got Tensor")
    kept, version, mine = old.clone(), old._version, t._version
    before = t.clone()
    step()
    assert not torch.equal(t, before) and torch.equal(old, kept) and old._version == version
    assert t._version > mine  # (bumped: a graph that saved it refuses its backward)
    t.data = t.data.clone()  # (new memory: followed there)
    before = t.clone()
    step()
    assert not torch.equal(t, before) and torch.equal(old, kept)


def _sq_closure(ps):
    def closure():
        xs = [np.asarray(p, np.float64) for p in ps]
        return float(sum((x**2 * np.arange(1, x.size + 1)).sum() for x in xs)), [
            (2 * x * np.arange(1, x.size + 1)).astype(np.float32) for x in xs
        ]

    return closure


def test_a_tensor_put_in_place_steps_as_an_array_put_in_place():
    """The reference: the same values put in place as a NumPy array (the path that took them before).
    (L-BFGS: Newton-CG drops its cached gradient for a tensor put in place, not for an array.)"""
    rng = np.random.default_rng(5006)
    start = [rng.standard_normal(n).astype(np.float32) for n in (7, 3)]
    new = rng.standard_normal(3).astype(np.float32)
    ours, ref = [torch.from_numpy(a.copy()) for a in start], [a.copy() for a in start]
    runs = []
    for ps, put in ((ours, torch.from_numpy(new.copy())), (ref, new.copy())):
        opt = O.LBFGS(ps, max_iter=3)
        opt.step(_sq_closure(ps))
        opt.param_groups[0]["params"][1] = ps[1] = put
        for _ in range(2):
            opt.step(_sq_closure(ps))
        runs.append([np.asarray(p) for p in ps])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    assert not np.array_equal(runs[0][1], new)


@pytest.mark.parametrize("kind", _KINDS)
def test_a_tensor_put_in_place_of_another_dtype_is_refused_naming_it(kind):
    torch.manual_seed(5007)
    ps = [torch.randn(7), torch.randn(3)]
    step = stepper(kind, ps)
    t = torch.randn(3, dtype=torch.float64)
    step.opt.param_groups[0]["params"][1] = ps[1] = t
    before = [p.clone() for p in ps]
    for _ in range(2):
        with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[1\]: (expected float32|float64, where)"):
            step()
        assert all(torch.equal(a, b) for a, b in zip(ps, before))


@pytest.mark.parametrize("kind", ["lbfgs", "newton"])
def test_a_tensor_put_in_place_over_another_params_memory_is_refused(kind):
    torch.manual_seed(5008)
    ps = [torch.randn(7), torch.randn(3)]
    step = stepper(kind, ps)
    step.opt.param_groups[0]["params"][1] = ps[1] = ps[0][2:5]  # (three of the first param's elements)
    before = ps[0].clone()
    for _ in range(2):
        with pytest.raises(ValueError, match="overlap|share"):
            step()
        assert torch.equal(ps[0], before)


@pytest.mark.parametrize("kind", ["lbfgs", "newton"])
def test_a_followed_tensor_replaced_by_an_array_is_followed_no_more(kind):
    torch.manual_seed(5009)
    ps = [torch.randn(7), torch.randn(3)]
    step = stepper(kind, ps)
    old = ps[1]
    a = torch.randn(3)  # (stepped through the NumPy array put in place; the test's closure reads it)
    step.opt.param_groups[0]["params"][1] = a.numpy()
    ps[1] = a
    step()
    version = old._version
    old.data = old.data.clone()  # (moved: no longer the optimizer's, not followed there)
    kept = old.clone()
    step()
    assert torch.equal(old, kept) and old._version == version
    assert step.opt._given_tensors == [ps[0]]


def _torch_ref(cls, hp, start, grads):
    """torch.optim's ``cls`` over a float64 copy of ``start``, never reshaped: the same elements in the
    same order (torch's own state does not follow a re-view: its (15,) moments fail against (3, 5))."""
    q = torch.nn.Parameter(torch.from_numpy(start.astype(np.float64)))
    opt = getattr(torch.optim, cls)([q], lr=0.1, **hp)
    for g in grads:
        q.grad = torch.from_numpy(g.astype(np.float64))
        opt.step()
    return q.detach().numpy(), opt.state_dict()


@pytest.mark.parametrize("how", ["shape set", "reshape put in place", "tensor re-viewed"])
@pytest.mark.parametrize("cls,hp", _FIRST_ORDER)
def test_a_param_reshaped_at_its_address_is_stepped_as_torch_steps_it(cls, hp, how):
    rng = np.random.default_rng(5010)
    start = rng.standard_normal(15).astype(np.float32)
    grads = [rng.standard_normal(15).astype(np.float32) for _ in range(4)]
    other = rng.standard_normal(7).astype(np.float32)
    a = start.copy()
    given = torch.from_numpy(a) if how == "tensor re-viewed" else a
    opt = getattr(O, cls)([other, given], lr=0.1, **hp)
    for k, g in enumerate(grads):
        if k == 2:
            if how == "shape set":
                a.shape = (3, 5)
            elif how == "reshape put in place":
                opt.param_groups[0]["params"][1] = a = a.reshape(3, 5)
            else:
                given.data = given.data.view(3, 5)
                a = given.numpy()
        opt.step([np.ones(7, np.float32), g.reshape(a.shape)])  # (grads of its shape: refused before)
    want, ref_sd = _torch_ref(cls, hp, start, grads)
    np.testing.assert_allclose(a.reshape(-1), want, rtol=2e-5, atol=2e-6)
    assert a.shape == (3, 5) and np.shares_memory(a, given if how != "tensor re-viewed" else given.numpy())
    sd = opt.state_dict()
    for name, ref in ref_sd["state"][0].items():
        if name != "step":
            assert sd["state"][1][name].shape == (3, 5)  # (laid out as its param, as torch's)
            np.testing.assert_allclose(sd["state"][1][name].reshape(-1), ref.numpy(), rtol=2e-5, atol=2e-6)
    opt.load_state_dict(sd)  # (refused before: "expected shape (3, 5) (its parameter's), got (15,)")
    opt.step([np.ones(7, np.float32), np.ones((3, 5), np.float32)])


def test_another_array_of_another_shape_is_still_refused_against_its_state():
    rng = np.random.default_rng(5011)
    a = rng.standard_normal(15).astype(np.float32)
    opt = O.Adam([a], lr=0.1)
    opt.step([np.ones(15, np.float32)])
    opt.param_groups[0]["params"][0] = b = a.copy().reshape(3, 5)  # (the same size, other memory)
    with pytest.raises(ValueError, match=r"\[0\]: expected shape \(15,\) \(the shape of its optimizer state\)"):
        opt.step([np.ones((3, 5), np.float32)])
    assert np.array_equal(b.reshape(-1), a)


@pytest.mark.parametrize("kind", _KINDS)
def test_a_tensor_re_viewed_as_another_shape_is_stepped_with_grads_of_it(kind):
    """Against the same optimizer over the same values never re-viewed (the test closure's loss
    depends on the values only)."""
    torch.manual_seed(5012)
    start = [torch.randn(6), torch.randn(4)]
    runs = []
    for reshape in (False, True):
        ps = [t.clone() for t in start]
        step = stepper(kind, ps)
        step()
        if reshape:
            ps[0].data = ps[0].data.view(2, 3)  # (refused before: "grads[0]: expected shape (6,)")
        step()
        step()
        runs.append([p.reshape(-1) for p in ps])
    assert ps[0].shape == (2, 3)
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_zero1_follows_a_tensor_re_viewed_as_another_shape():
    from mpi4py import MPI

    from optkern.distributed import Communicator, ShardedOptimizer

    rng = np.random.default_rng(5013)
    start = [rng.standard_normal(n).astype(np.float32) for n in (7, 6, 9)]
    grads = [[rng.standard_normal(n).astype(np.float32) for n in (7, 6, 9)] for _ in range(3)]
    runs = []
    for reshape in (False, True):
        ps = [torch.from_numpy(a.copy()) for a in start]
        z = ShardedOptimizer(O.Adam, ps, Communicator(MPI.COMM_SELF), lr=0.1)
        for k, gs in enumerate(grads):
            if reshape and k == 1:
                ps[1].data = ps[1].data.view(2, 3)  # (refused: "given new memory of shape (2, 3)")
            z.step([g.reshape(p.shape) for g, p in zip(gs, ps)])
        runs.append([p.reshape(-1) for p in ps])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_the_split_hessian_modules_keep_their_import_paths():
    from optkern import hessian
    from optkern.hessian import _mlp_checks, _restart, power
    from optkern.hessian.krylov import restart_count, restart_keep, select
    from optkern.hessian.lanczos import PowerResult, power_iteration

    assert power_iteration is power.power_iteration is hessian.power_iteration
    assert PowerResult is power.PowerResult is hessian.PowerResult
    assert (restart_count, restart_keep, select) == (_restart.restart_count, _restart.restart_keep, _restart.select)
    assert callable(_mlp_checks._check_batches)
    r = power_iteration(np.diag([3.0, -1.0, 0.5]), max_iter=200, tol=1e-10)
    assert r.converged and abs(r.eigenvalue - 3.0) < 1e-8


def test_newton_cg_steps_an_array_put_in_place_from_its_own_gradient():
    from optkern import hessian

    w = np.arange(1, 11, dtype=np.float64)  # (loss sum w x^2: the Hessian diag(2 w), exact here)

    def closure():
        x = np.concatenate([p.ravel() for p in ps]).astype(np.float64)
        return float((w * x * x).sum()), [
            (2 * w[:7] * ps[0]).astype(np.float32),
            (2 * w[7:] * ps[1]).astype(np.float32),
        ]

    rng = np.random.default_rng(5014)
    ps = [rng.standard_normal(7).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    opt = O.NewtonCG(ps, hessian.from_hvp(lambda v: 2.0 * w.astype(np.float32) * v, 10, np.float32))
    opt.step(closure)
    new = (5 * rng.standard_normal(3)).astype(np.float32)
    opt.param_groups[0]["params"][1] = ps[1] = new.copy()
    opt.step(closure)  # (before: the cached gradient of the old values, ~0 after a Newton step: not moved)
    assert np.linalg.norm(ps[1]) < 0.1 * np.linalg.norm(new)
