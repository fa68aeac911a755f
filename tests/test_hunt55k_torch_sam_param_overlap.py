"""optkern.torch.SAM with two params in one memory: refused naming them as the caller knows them
(``param_groups[g]['params'][i]``), not as the ascent kernel's ``params[1]`` / ``params[0]``, with
nothing written (params, grads, state) and the optimizer not left perturbed."""

from __future__ import annotations

import pytest
import torch

import optkern.torch as T

ALIAS = r"^{} shares memory with {} \(aliasing"


def _case(groups: bool):
    buf = torch.randn(1023 + 7, dtype=torch.float64)
    p0, p1, p2 = buf[:1023], buf[1020:], torch.randn(7, dtype=torch.float64)
    for p in (p0, p1, p2):
        p.grad = torch.randn_like(p)
    params = [{"params": [p2, p0]}, {"params": [p1]}] if groups else [p2, p0, p1]
    return buf, [p0, p1, p2], T.SAM(params, T.SGD, lr=0.1, momentum=0.9)


@pytest.mark.parametrize(
    ("groups", "later", "earlier"),
    [
        (True, r"param_groups\[1\]\['params'\]\[0\]", r"param_groups\[0\]\['params'\]\[1\]"),
        (False, r"param_groups\[0\]\['params'\]\[2\]", r"param_groups\[0\]\['params'\]\[1\]"),
    ],
)
def test_overlapping_params_are_named_by_place_nothing_written(groups, later, earlier):
    buf, ps, sam = _case(groups)
    before = [buf.clone(), ps[2].clone()] + [p.grad.clone() for p in ps]
    with pytest.raises(ValueError, match=ALIAS.format(later, earlier)):
        sam.first_step()
    after = [buf, ps[2]] + [p.grad for p in ps]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert sam.state_dict()["state"] == {}
    with pytest.raises(RuntimeError, match="call first_step first"):  # (not left perturbed)
        sam.second_step()
    with pytest.raises(ValueError, match=ALIAS.format(later, earlier)):  # step(closure): refused first
        sam.step(lambda: None)
    assert torch.equal(buf, before[0])


def test_an_overlapping_param_without_a_grad_is_not_moved_and_not_refused():
    # only the params with a grad are moved (as the reference's first_step skips the others)
    buf, ps, sam = _case(True)
    ps[1].grad = None
    w2 = ps[2].clone()
    sam.first_step()
    assert not torch.equal(ps[2], w2)
    sam.second_step()
