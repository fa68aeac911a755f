"""A step whose grads are laid out unlike their params (``_views.GradLayout``): torch.optim reads a
grad element by element in logical order whatever its strides, optkern's native calls pair it with
its param in memory order. Such a grad (set by hand, or accumulated in place before ``p.data`` got
another layout) is read through a copy in its param's layout for the step, then put back: the grad
is only read, so the copy changes nothing the caller sees."""

from __future__ import annotations

import contextlib

import torch

from . import _views
from ._checks_inputs import check_grad
from ._overlaps import _check_overlaps, _span


def _relayable(p: torch.Tensor) -> bool:
    """Whether ``p``'s grad is one ``check_grad`` refuses for its layout only (its conditions, asked
    of it: on this path only, met once a step has refused such a grad)."""
    g = p.grad
    if g is None:
        return False
    try:
        check_grad(p, g, 0, 0)
    except _views.GradLayout:
        return True
    except (TypeError, ValueError):  # (anything else: named by the step's checks)
        return False
    return False


def _check_aliasing(groups: list, state) -> None:
    """ValueError naming a grad to be re-laid that shares memory with a param with a grad or a
    state tensor of one (``state``: the step's, by param): its copy would hide that from the step's
    overlap checks (``p.grad = p.detach().t()``, ``p.grad = opt.state[p]["exp_avg"].t()``: torch
    refuses both). The step's own check (``_check_overlaps``), on the grads as given."""
    written: dict = {}  # id -> span (a tensor held twice, AdaGrad-Norm's one b_sq per group, once)
    read = []
    for gi, group in enumerate(groups):
        for j, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            name = f"param_groups[{gi}]['params'][{j}]"
            st = state.get(p) or {}
            ts = [(p, name)] + [(t, f"state[{name}][{k!r}]") for k, t in st.items() if isinstance(t, torch.Tensor)]
            for t, tname in ts:
                if t.layout is torch.strided and t.numel():
                    written.setdefault(id(t), _span(t, tname))
            if _relayable(p) and p.grad.numel():
                read.append(_span(p.grad, name + ".grad"))
    _check_overlaps(list(written.values()), read)


@contextlib.contextmanager
def relaid_grads(groups: list, state):
    """Within: every grad of ``groups``' params that is laid out unlike its param replaced by a copy
    in its param's layout (``_views.in_layout_of``); the grads put back on leaving, however it is left.
    Refused first, by name, where such a grad shares memory with a param or a state tensor of ``state``
    (the step's state by param: ``_check_aliasing``)."""
    _check_aliasing(groups, state)
    swapped = []
    try:
        with torch.no_grad():
            for group in groups:
                for p in group["params"]:
                    if _relayable(p):
                        g = p.grad
                        p.grad = _views.in_layout_of(p, g)
                        swapped.append((p, g))
        yield
    finally:
        for p, g in swapped:
            p.grad = g
