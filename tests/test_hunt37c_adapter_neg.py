"""optkern.torch's step looks for negated-view grads and for params without a grad in one pass over
the grads (``is_neg`` of a None grad is a TypeError). Whatever the order of the two in a group, a
negated grad is refused by name before anything is written, and params without a grad are skipped."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402

torch.set_num_threads(1)


def _params(n=4):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3 + k, generator=g).requires_grad_() for k in range(n)]


@pytest.mark.parametrize("name, kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01))])
@pytest.mark.parametrize("neg, none", [(0, 2), (2, 0), (1, 3), (3, 1)])
@pytest.mark.parametrize("steps_before", [0, 2])
def test_negated_grad_named_wherever_a_param_has_no_grad(name, kw, neg, none, steps_before):
    ps = _params()
    opt = getattr(ot, name)(ps, **kw)
    for _ in range(steps_before):
        for p in ps:
            p.grad = torch.ones_like(p)
        opt.step()
    for p in ps:
        p.grad = torch.ones_like(p)
    ps[none].grad = None
    ps[neg].grad = torch._neg_view(torch.ones_like(ps[neg]))
    before = [p.detach().clone() for p in ps]
    with pytest.raises(ValueError, match=rf"^param_groups\[0\]\['params'\]\[{neg}\]\.grad: a negated view"):
        opt.step()
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, ps))


@pytest.mark.parametrize("none", [[0], [3], [1, 2], [0, 1, 2, 3]])
def test_params_without_a_grad_are_skipped_as_torch_skips_them(none):
    out = []
    for mod in (torch.optim, ot):
        ps = _params()
        opt = mod.SGD(ps, lr=0.1, momentum=0.9)
        for k in range(3):
            for j, p in enumerate(ps):
                p.grad = None if (k == 1 and j in none) else torch.full_like(p, 0.5 + k)
            opt.step()
        out.append([p.detach().clone() for p in ps])
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
