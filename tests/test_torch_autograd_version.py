"""optkern.torch steps write the params through NumPy / DLPack views, which autograd does not see:
a graph that saved a param before the step then ran its backward on the new values, silently
(torch's in-place step bumps the version counters, and that backward raises). Every step now bumps
them (torch.autograd.graph.increment_version)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from optkern import hessian  # noqa: E402

FIRST_ORDER = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adagrad", dict(lr=0.1)),
    ("AdagradNorm", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("Adadelta", dict(lr=1.0)),
    ("Adam", dict(lr=0.1)),
    ("AdamW", dict(lr=0.1)),
    ("NAdam", dict(lr=0.1)),
]


def _stale_backward_raises(y) -> bool:
    try:
        y.backward()
    except RuntimeError as e:
        assert "modified by an inplace operation" in str(e)
        return True
    return False


# float32, and bfloat16 params with a float32 master (the low-precision step: AdagradNorm, whose
# state is one scalar, takes no low-precision keywords)
CASES = [(n, hp, torch.float32) for n, hp in FIRST_ORDER]
CASES += [(n, hp, torch.bfloat16) for n, hp in FIRST_ORDER if n != "AdagradNorm"]


def _closure(opt, w, target: float, power: int):
    """torch's closure for ``sum((w - target) ** power)``: zero the grads, backward, the loss."""

    def closure():
        opt.zero_grad()
        loss = ((w - target) ** power).sum()
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("name, hp, dtype", CASES, ids=[f"{n}-{str(d)[6:]}" for n, _, d in CASES])
def test_first_order_step_invalidates_graphs_that_saved_the_params(name, hp, dtype):
    w = torch.nn.Parameter(torch.linspace(1.0, 2.0, 5).to(dtype))
    extra = dict(master_weights=True) if dtype == torch.bfloat16 else {}
    opt = getattr(ot, name)([w], **hp, **extra)
    y = (w * w).sum()  # saves w
    w.grad = torch.ones_like(w)
    before = w._version
    opt.step()
    assert w._version > before
    assert _stale_backward_raises(y)


def test_lbfgs_step_invalidates_graphs_that_saved_the_params():
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = ot.LBFGS([w], max_iter=3)
    y = (w * w).sum()

    closure = _closure(opt, w, 2.0, 2)

    opt.step(closure)
    assert _stale_backward_raises(y)


def test_newton_cg_step_invalidates_graphs_that_saved_the_params():
    w = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = ot.NewtonCG([w], hessian.from_hvp(lambda v: 2.0 * v, 4), damping=1e-3)
    y = (w * w).sum()

    closure = _closure(opt, w, 1.0, 2)

    opt.step(closure)
    assert not np.allclose(w.detach().numpy(), 0.0)  # (it moved)
    assert _stale_backward_raises(y)


def test_a_graph_built_inside_the_closure_stays_valid_for_it():
    """The closure's own backward, at the point it evaluates, must not be refused."""
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = ot.LBFGS([w], max_iter=5, line_search_fn="strong_wolfe")

    closure = _closure(opt, w, 2.0, 4)

    for _ in range(3):
        opt.step(closure)
    assert float(((w.detach() - 2.0) ** 4).sum()) < 1e-2


def test_lbfgs_one_iteration_without_a_second_closure_call_still_bumps():
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = ot.LBFGS([w], max_iter=1)
    y = (w * w).sum()
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = ((w - 2.0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert len(calls) == 1
    assert _stale_backward_raises(y)


def test_lbfgs_converged_at_the_start_moves_nothing_and_bumps_nothing():
    """torch returns before any move when the first gradient is below tolerance_grad."""
    w = torch.nn.Parameter(torch.full((3,), 2.0, dtype=torch.float64))
    opt = ot.LBFGS([w])
    y = (w * w).sum()

    closure = _closure(opt, w, 2.0, 2)

    opt.step(closure)
    y.backward()  # (valid: the params did not move)
    assert torch.equal(w.grad, 2.0 * w.detach())


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_core_optim_on_torch_tensors_bumps_their_versions(name):
    """optkern.optim stepping torch tensors (DLPack views) directly: the same hazard as the adapter."""
    import optkern.optim as O

    w = torch.linspace(1.0, 2.0, 5).requires_grad_()
    opt = getattr(O, name)([w], lr=0.1)
    y = (w * w).sum()
    opt.step([torch.ones(5)])
    assert _stale_backward_raises(y)


def test_negated_view_grad_is_refused_by_name_not_stepped_the_wrong_way():
    """torch._neg_view grads: NumPy refuses them (an unnamed RuntimeError once) and a DLPack capsule
    drops the sign bit (a step the wrong way, silently): refused by name, nothing written."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = ot.SGD([w], lr=1.0)
    for _ in range(2):  # (the second step takes the cached path)
        w.grad = torch.ones(3)
        opt.step()
    w.grad = torch._neg_view(torch.ones(3))
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[0\]\.grad: a negated view"):
        opt.step()
    assert torch.equal(w.detach(), torch.full((3,), -1.0))
    w.grad = w.grad.resolve_neg()
    opt.step()
    assert torch.equal(w.detach(), torch.zeros(3))


@pytest.mark.parametrize("name, hp", FIRST_ORDER, ids=[n for n, _ in FIRST_ORDER])
def test_a_refused_step_leaves_the_versions_and_saved_graphs_as_they_were(name, hp):
    """A refused step writes nothing and bumps no version counter: a graph that saved a param
    before it still runs its backward; after a good step it raises."""
    w = torch.nn.Parameter(torch.linspace(1.0, 2.0, 5))
    u = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 3))
    opt = getattr(ot, name)([w, u], **hp)
    w.grad, u.grad = torch.ones_like(w), torch.ones_like(u)
    opt.step()
    y = (w * w).sum() + (u * u).sum()  # saves w and u
    before = (w._version, u._version)
    w.grad = w.detach()  # shares the param's memory: refused before anything is written
    with pytest.raises(ValueError, match="shares memory"):
        opt.step()
    assert (w._version, u._version) == before
    assert not _stale_backward_raises(y)
    y = (w * w).sum()
    w.grad = torch.ones_like(w)
    opt.step()
    assert _stale_backward_raises(y)
