"""Hunt 53i: a state tensor whose memory is shared is not re-laid into its param's new layout.

Re-laid (``_views.relay_state``: ``t.set_`` onto new memory) it stops sharing that memory: a user's
``m.view(-1)`` of ``opt.state[p]["exp_avg"]`` went stale, silently (torch.optim steps it in place,
the view follows). Refused by name, nothing written: a state that has live views, and one ``.set_``
onto a larger storage. With the views dropped, the step re-lays it and steps as torch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402

CL = torch.channels_last
NAME = r"^state\[param_groups\[0\]\['params'\]\[0\]\]\['exp_avg'\]: laid out unlike its param .*memory shared"


def _stepped_once(mod, kw):
    torch.manual_seed(11)
    p = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    opt = mod.Adam([p], lr=0.1, **kw)
    p.grad = torch.randn_like(p)
    opt.step()
    return p, opt


def _re_laid(p):
    p.data = p.data.contiguous(memory_format=CL)
    p.grad = torch.full_like(p, 0.5)


def _refused_unchanged(p, opt):
    before = p.detach().clone()
    state = {k: (v.clone(), v.stride()) for k, v in opt.state[p].items()}
    with pytest.raises(ValueError, match=NAME):
        opt.step()
    assert torch.equal(p.detach(), before)
    for k, (v, stride) in state.items():
        assert torch.equal(opt.state[p][k], v) and opt.state[p][k].stride() == stride, k


@pytest.mark.parametrize("make_view", [lambda m: m.view(-1), lambda m: m[0, 1], lambda m: m.detach()])
def test_a_state_with_a_live_view_is_refused_then_steps_once_it_is_dropped(make_view):
    p, opt = _stepped_once(ot, {})
    v = make_view(opt.state[p]["exp_avg"])
    _re_laid(p)
    _refused_unchanged(p, opt)
    del v  # (the view gone: re-laid in place and stepped as torch, the state tensor the same object)
    m = opt.state[p]["exp_avg"]
    opt.step()
    q, ref = _stepped_once(torch.optim, {"foreach": False})
    _re_laid(q)
    ref.step()
    assert opt.state[p]["exp_avg"] is m and m.stride() == p.stride()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(m, ref.state[q]["exp_avg"], rtol=1e-13, atol=1e-14)


def test_a_state_on_a_larger_storage_is_refused():
    p, opt = _stepped_once(ot, {})
    m = opt.state[p]["exp_avg"]
    big = torch.zeros(3 * m.numel(), dtype=m.dtype)
    big[: m.numel()] = m.reshape(-1)
    m.set_(big.untyped_storage(), 0, m.shape, m.stride())  # (its other bytes: another tensor's)
    del big
    _re_laid(p)
    _refused_unchanged(p, opt)


def test_a_state_held_only_by_the_optimizer_and_the_user_as_itself_is_re_laid():
    """``opt.state[p]["exp_avg"]`` held by the user is the tensor itself, not a view: re-laid in
    place, the user's reference stays live (as torch's)."""
    p, opt = _stepped_once(ot, {})
    m = opt.state[p]["exp_avg"]
    sd = opt.state_dict()  # (holds the same tensor objects)
    _re_laid(p)
    opt.step()
    assert m is opt.state[p]["exp_avg"] is sd["state"][0]["exp_avg"] and m.stride() == p.stride()


@pytest.mark.parametrize("view", [False, True])
def test_two_groups_the_precheck_re_lays_or_refuses_as_one_group(view):
    """Several runs: the step's precheck meets the re-laid param first (its own pass, the same
    decision): re-laid and stepped as torch, or, with a live view, refused with nothing written."""
    out = []
    for mod, kw in ((torch.optim, {"foreach": False}), (ot, {})):
        torch.manual_seed(12)
        p = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
        q = torch.randn(7, dtype=torch.float64, requires_grad=True)
        opt = mod.Adam([{"params": [p]}, {"params": [q], "lr": 0.01}], lr=0.1, **kw)
        p.grad, q.grad = torch.randn_like(p), torch.randn_like(q)
        opt.step()
        v = opt.state[p]["exp_avg"].view(-1) if view else None
        _re_laid(p)
        q.grad = torch.ones_like(q)
        if view and mod is ot:
            _refused_unchanged(p, opt)
            assert v is not None and v.data_ptr() == opt.state[p]["exp_avg"].data_ptr()
            return
        opt.step()
        out.append((p.detach(), q.detach()))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)
