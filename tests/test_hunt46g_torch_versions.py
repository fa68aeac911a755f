"""Hunt 46g: the closure-driven optimizers of ``optkern.optim`` (LBFGS, NewtonCG, SAM) bump the version
counters of torch tensors they are given as params and write, as ``Optimizer.step`` bumps its params'
(``_given._bump_torch_versions``): a graph saved before the write then refuses its backward (as after
torch's own in-place step) instead of silently differentiating the new values. LBFGS and NewtonCG
took torch tensors (stepping their NumPy views) but never bumped: the gradient of ``w * w`` saved
before an L-BFGS step came out ``2 * w_new``; SAM's ascent step (``first_step``) and its return to
``w`` wrote without a bump either. A step that writes nothing (converged at the start) bumps nothing;
a copy (pickle, deepcopy) steps arrays of its own, which no tensor shows, and bumps no tensor."""

import copy

import numpy as np
import pytest

from optkern import optim

torch = pytest.importorskip("torch")


def _stale_backward_raises(y) -> bool:
    try:
        y.backward()
    except RuntimeError as e:
        assert "modified by an inplace operation" in str(e)
        return True
    return False


def _w():
    return torch.linspace(1.0, 2.0, 5, dtype=torch.float64).requires_grad_()


def _closure(w):
    a = w.detach().numpy()  # (the optimizer writes the tensor's memory: this view sees it)
    return lambda: (float((a * a).sum()), 2 * a)


def _lbfgs(w):
    return optim.LBFGS([w], max_iter=2)


def _lbfgs_wolfe(w):
    return optim.LBFGS(w, max_iter=2, line_search_fn="strong_wolfe")  # (a lone tensor, not a list)


def _newton_cg(w):
    return optim.NewtonCG((w,), lambda: 2.0 * np.eye(5))


def _sam(w):
    return optim.SAM(optim.SGD([w], lr=0.1), rho=0.5)


MAKERS = [_lbfgs, _lbfgs_wolfe, _newton_cg, _sam]


@pytest.mark.parametrize("make", MAKERS)
def test_a_step_invalidates_graphs_that_saved_the_params(make):
    w = _w()
    opt = make(w)
    y = (w * w).sum()
    before = w.detach().clone()
    opt.step(_closure(w))
    assert not torch.equal(w.detach(), before)  # (it moved them)
    assert _stale_backward_raises(y)


def test_sams_ascent_step_alone_invalidates_graphs_that_saved_the_params():
    w = _w()
    sam = _sam(w)
    y = (w * w).sum()
    sam.first_step(np.ones(5))
    assert _stale_backward_raises(y)
    z = (w * w).sum()  # (a graph at the ascent point: the return to w writes the params again)
    sam.second_step(np.ones(5))
    assert _stale_backward_raises(z)


def test_sams_return_to_w_after_a_failing_closure_bumps_too():
    w = _w()
    sam = _sam(w)
    calls = []
    a = w.detach().numpy()
    saved = []

    def closure():
        calls.append(1)
        if len(calls) == 2:
            saved.append((w * w).sum())  # a graph at the ascent point
            raise KeyError("at the ascent point")
        return float((a * a).sum()), 2 * a

    with pytest.raises(KeyError):
        sam.step(closure)
    assert _stale_backward_raises(saved[0])


def test_lbfgs_converged_at_the_start_writes_nothing_and_bumps_nothing():
    w = _w()
    opt = optim.LBFGS([w], tolerance_grad=1e3)
    y = (w * w).sum()
    version = w._version
    opt.step(_closure(w))
    assert w._version == version
    y.backward()  # (valid: the params did not move)
    assert torch.equal(w.grad, 2.0 * w.detach())


@pytest.mark.parametrize("make", [_lbfgs, _newton_cg])
def test_a_copy_bumps_no_tensor_it_does_not_write(make):
    w = _w()
    opt = make(w)
    twin = copy.deepcopy(opt)
    version = w._version
    a = twin.param_groups[0]["params"][0]
    twin.step(lambda: (float((a * a).sum()), 2 * a))
    assert w._version == version and torch.equal(w.detach(), _w().detach())


@pytest.mark.parametrize("make", [_lbfgs, _newton_cg])
def test_a_shallow_copy_steps_the_same_tensors_and_bumps_them(make):
    w = _w()
    twin = copy.copy(make(w))
    y = (w * w).sum()
    twin.step(_closure(w))
    assert _stale_backward_raises(y)
