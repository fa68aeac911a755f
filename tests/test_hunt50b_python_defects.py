"""Defects of the optimizers' Python layer over NumPy arrays and torch tensors (hunt 50b).

1. A param put in a group's list in place (``opt.param_groups[g]['params'][i] = a.T``), or a torch
   tensor param re-laid out in place (``t.data = t.data.t()``, whose new view ``follow`` puts in the
   list), that the step cannot update in place (not C-contiguous) was refused by the step's native
   checks as ``params[k]``, its place among all the params -- the argument the caller never passed
   (L-BFGS named ``param_groups[0]['params'][i]``). ``_check_replaced`` checks it as
   ``add_param_group`` checks a param, naming where it was put.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O

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
