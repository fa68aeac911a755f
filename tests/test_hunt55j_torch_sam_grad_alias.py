"""Hunt 55j: optkern.torch.SAM with ``p.grad`` sharing ``p``'s memory (``p.grad = p.detach()``: the
gradient of |w|^2 / 2 handed over without a copy).

It was refused by the ascent kernel as "grads[0] shares memory with params[0]" -- names the user never
passed. The reference SAM (github.com/davda54/sam) is well defined there: ``first_step`` computes
``e_w = p.grad * scale`` (a new tensor) before ``p.add_(e_w)``, so it reads the grad as it was before
the move; ``second_step`` rebinds ``p.data = old_p``, so the grad keeps the ascent point's values and
the base optimizer steps ``w`` with them. optkern follows it: the ascent reads such a grad through a
copy, and ``second_step`` gives the param a copy of its grad before writing ``w`` back in place (the
in-place restore would otherwise overwrite the grad with ``w``).
"""

import numpy as np
import pytest
import torch

import optkern.torch as ot
from optkern.benchmarks.sam_reference import ReferenceSAM


def _params(seed, sizes=(1, 7, 1023)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dtype=torch.float64, generator=g).requires_grad_() for n in sizes]


def _aliased_grads(ps):
    for p in ps:
        p.grad = p.detach()  # |w|^2 / 2: the gradient is w itself, in w's memory
    assert all(p.grad.data_ptr() == p.data_ptr() for p in ps)


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("base", ["SGD", "Adam"])
def test_a_grad_in_its_params_memory_steps_as_the_reference(base, adaptive):
    ours, ref = _params(3), _params(3)
    opt = ot.SAM(ours, getattr(ot, base), rho=0.05, adaptive=adaptive, lr=0.1)
    r = ReferenceSAM(ref, getattr(torch.optim, base), rho=0.05, adaptive=adaptive, lr=0.1)
    for _ in range(3):
        for ps, o in ((ours, opt), (ref, r)):
            _aliased_grads(ps)
            o.first_step(zero_grad=True)
            _aliased_grads(ps)  # at the ascent point, in the moved params' memory
            o.second_step(zero_grad=True)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-13, atol=1e-15)


def test_float64_reference_of_one_aliased_step():
    """w' = w (1 + rho / |w|), then w - lr w' (SGD): the two steps by hand in float64."""
    w0 = np.array([1.0, -2.0, 0.5])
    w = torch.tensor(w0, requires_grad=True)
    opt = ot.SAM([w], ot.SGD, rho=0.05, lr=0.1)
    w.grad = w.detach()
    opt.first_step(zero_grad=True)
    ascent = w0 * (1 + 0.05 / (np.linalg.norm(w0) + 1e-12))
    np.testing.assert_allclose(w.detach().numpy(), ascent, rtol=1e-15)
    w.grad = w.detach()
    opt.second_step()
    np.testing.assert_allclose(w.detach().numpy(), w0 - 0.1 * ascent, rtol=1e-15)
    np.testing.assert_allclose(w.grad.numpy(), ascent, rtol=1e-15)  # the grad kept the ascent values
    assert w.grad.data_ptr() != w.data_ptr()


def test_step_with_a_closure_returning_aliased_grads():
    ours, ref = _params(5), _params(5)
    opt = ot.SAM(ours, ot.SGD, rho=0.1, lr=0.05, momentum=0.9)
    r = ReferenceSAM(ref, torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)
    for _ in range(4):
        _aliased_grads(ours)
        opt.step(lambda: _aliased_grads(ours))
        _aliased_grads(ref)
        r.first_step(zero_grad=True)
        _aliased_grads(ref)
        r.second_step(zero_grad=True)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-13, atol=1e-15)


def test_the_ordinary_path_is_unchanged_and_grads_not_copied():
    ps = _params(7)
    opt = ot.SAM(ps, ot.SGD, lr=0.1)
    for p in ps:
        p.grad = torch.ones_like(p)
    grads = [p.grad for p in ps]
    opt.first_step()
    opt.second_step()
    assert all(p.grad is g for p, g in zip(ps, grads))  # (only a grad in a param's memory is replaced)


def test_a_grad_over_part_of_a_params_memory_or_a_later_params_reads_the_values_before_the_move():
    """A grad over a param's memory shifted by one element (its own param) and one over the next
    param's: the reference reads both before it moves them (its loop moves a param after computing
    its e_w, and the next param later), and so does the fused ascent."""
    bufs = [torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(s)) for s in (1, 1)]
    results = []
    for buf, cls in zip(bufs, ("ours", "ref")):
        p0 = buf[0:4].clone().requires_grad_()  # (its own memory; the grads below are over buf)
        store = buf.clone()
        p1 = store[0:7].requires_grad_()
        params = [p0, p1]
        opt = ot.SAM(params, ot.SGD, lr=0.1) if cls == "ours" else ReferenceSAM(params, torch.optim.SGD, lr=0.1)
        p0.grad = store[3:7].detach()  # p0's grad in p1's memory (p1 comes later)
        p1.grad = store[1:8].detach()  # p1's grad over its own memory, shifted by one
        opt.first_step(zero_grad=True)
        results.append([t.detach().clone() for t in params])
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-14)


def test_other_kernel_refusals_still_raise_unchanged():
    """The fallback looks only for grads in a param's memory: two params sharing memory are refused as
    before (named by place since h336), and a grad in no param's memory is passed on uncopied."""
    store = torch.zeros(6, dtype=torch.float64)
    a, b = store[0:4].requires_grad_(), store[2:6].requires_grad_()
    opt = ot.SAM([a, b], ot.SGD, lr=0.1)
    a.grad, b.grad = torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"^param_groups\[0\]\['params'\]\[1\] shares memory with param_groups\[0\]\['params'\]\[0\]"
    ):
        opt.first_step()
    np.testing.assert_array_equal(store.numpy(), np.zeros(6))
