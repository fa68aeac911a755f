"""optkern.torch.RMSprop with a momentum that is not a number (hunt 52f): its call compared
``group["momentum"] > 0`` before the checks read it, so the constructor raised Python's TypeError
("'>' not supported between instances of 'str' and 'int'"), naming no argument. Now the checks name
it: ``momentum: expected a real number``. (A step after the group was changed named it already: kept
so, nothing written.)"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

BAD = ["x", None, 1j, [0.1]]


@pytest.mark.parametrize("bad", BAD)
def test_constructor_names_momentum(bad):
    with pytest.raises(TypeError):  # (torch's own: a TypeError too)
        torch.optim.RMSprop([torch.nn.Parameter(torch.ones(3))], momentum=bad)
    with pytest.raises(TypeError, match=r"^param_groups\[0\]: momentum: expected a real number"):
        ot.RMSprop([torch.nn.Parameter(torch.ones(3))], momentum=bad)


@pytest.mark.parametrize("bad", BAD)
def test_a_group_changed_later_is_named_at_the_step_before_anything_is_written(bad):
    p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 7))
    opt = ot.RMSprop([p], lr=0.1, momentum=0.5)
    p.grad = torch.ones(7)
    opt.step()
    before = p.detach().clone()
    state = {k: v.clone() for k, v in opt.state[p].items()}
    opt.param_groups[0]["momentum"] = bad
    with pytest.raises(TypeError, match=r"momentum'?\]?: expected a real number"):
        opt.step()
    assert torch.equal(p.detach(), before)
    assert all(torch.equal(opt.state[p][k], v) for k, v in state.items())
