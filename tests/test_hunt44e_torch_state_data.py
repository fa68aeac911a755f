"""A state tensor given other memory in place (``opt.state[p]["exp_avg"].data = t`` or ``.set_(t)``)
is the state the next step reads and writes, as torch.optim's: the step's view cache held a view of
the old memory and went on stepping it (documented as not followed until hunt 44e). The cache's
memory key now holds the state tensors' data pointers beside the params' (one native call)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)

CASES = [
    ("Adam", dict(lr=0.01), "exp_avg_sq"),
    ("AdamW", dict(lr=0.01, amsgrad=True), "max_exp_avg_sq"),
    ("SGD", dict(lr=0.01, momentum=0.9), "momentum_buffer"),
    ("RMSprop", dict(lr=0.01, centered=True), "grad_avg"),
    ("Adagrad", dict(lr=0.01), "sum"),
    ("NAdam", dict(lr=0.01), "exp_avg"),
]


def _stepped(mod, name, kw):
    """Params of 7 and 3, optimizer `name` of `mod` over them, and a step on fresh random grads; the
    view cache warmed by 3 steps."""
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(n)) for n in (7, 3)]
    opt = getattr(mod, name)(ps, **kw)
    g = torch.Generator().manual_seed(1)

    def step():
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()

    for _ in range(3):
        step()
    return ps, opt, step


def _run(mod, name, kw, entry, how):
    ps, opt, step = _stepped(mod, name, kw)
    old = opt.state[ps[1]][entry]
    new = old.detach().clone().mul_(0.5)  # (other memory, other values)
    if how == "data":
        old.data = new
    else:
        old.set_(new)
    for _ in range(3):
        step()
    assert opt.state[ps[1]][entry] is old  # (the same tensor, over new memory)
    return ps, opt.state[ps[1]][entry], new


@pytest.mark.parametrize("how", ["data", "set_"])
@pytest.mark.parametrize("name,kw,entry", CASES, ids=[c[0] + "-" + c[2] for c in CASES])
def test_state_given_other_memory_in_place_is_followed(name, kw, entry, how):
    with ieee_sqrt():
        want, want_s, _ = _run(torch.optim, name, kw, entry, how)
    got, got_s, new = _run(ot, name, kw, entry, how)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(got_s, want_s, rtol=0, atol=0)
    assert got_s.data_ptr() == new.data_ptr()  # (the step wrote the new memory)


@pytest.mark.parametrize("how", ["data", "set_"])
@pytest.mark.parametrize("name", ["Adam", "NAdam", "Adagrad"])
def test_step_counts_given_other_memory_in_place_are_read(name, how):
    # every param's step count moved to new memory (a resumed count): the warm view cache read the
    # old memory (its joined counts), stepping from 3 with bias corrections of steps 4 and 5 where
    # torch steps from 7, and left the counts at 7
    def run(mod):
        kw = dict(lr=0.01, lr_decay=0.1) if name == "Adagrad" else dict(lr=0.01)
        ps, opt, step = _stepped(mod, name, kw)
        for p in ps:
            if how == "data":
                opt.state[p]["step"].data = torch.tensor(7.0)
            else:
                opt.state[p]["step"].set_(torch.tensor(7.0))
        for _ in range(2):
            step()
        return ps, [float(opt.state[p]["step"]) for p in ps]

    with ieee_sqrt():
        want, want_steps = run(torch.optim)
    got, got_steps = run(ot)
    assert got_steps == want_steps == [9.0, 9.0]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
