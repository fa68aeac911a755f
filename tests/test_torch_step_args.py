"""optkern.torch: what ``step`` is called with, as torch.optim sees it, and how a param listed twice
is named.

torch's step pre-hooks receive step's own ``(args, kwargs)`` (``args`` starts with the optimizer)
and may return new ones, which the step then runs with; post-hooks see what the step ran with.
"""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

torch.set_num_threads(1)


def _calls(mod, name: str, calls) -> list:
    """What a pre-hook and a post-hook of ``mod.<name>`` see for each ``calls(opt, closure)``:
    (hook, len(args), args[1:] as names, kwargs' keys); a closure's calls as "closure"."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = getattr(mod, name)([p], lr=0.1)
    seen: list = []

    def closure():
        seen.append("closure")
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    def pre(o, args, kwargs):
        assert o is opt and args[0] is opt
        seen.append(("pre", len(args), ["closure" if a is closure else repr(a) for a in args[1:]], sorted(kwargs)))

    def post(o, args, kwargs):
        seen.append(("post", len(args), sorted(kwargs)))

    opt.register_step_pre_hook(pre)
    opt.register_step_post_hook(post)
    p.grad = torch.ones(3)
    losses = calls(opt, closure)
    return seen + [[None if v is None else round(float(v.detach()), 4) for v in losses], p.detach().tolist()]


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_step_hooks_see_the_callers_args_and_kwargs_as_torch(name):
    def calls(opt, closure):
        return [opt.step(), opt.step(closure=closure), opt.step(closure)]

    mine, ref = _calls(ot, name, calls), _calls(torch.optim, name, calls)
    assert mine[:-1] == ref[:-1]
    assert mine[-1] == pytest.approx(ref[-1], rel=1e-6)  # (the params: float32, to rounding)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_step_pre_hook_may_replace_the_closure_as_torch(name):
    """A pre-hook returning new (args, kwargs): the step runs with them (a wrapped closure)."""

    def calls(opt, closure):
        wrapped = []

        def hook(o, args, kwargs):
            if kwargs.get("closure") is None:
                return None

            def counted():
                wrapped.append("wrapped")
                return kwargs["closure"]()

            return args, {**kwargs, "closure": counted}

        opt.register_step_pre_hook(hook)
        out = [opt.step(), opt.step(closure=closure)]
        return out + [torch.tensor(len(wrapped))]

    mine, ref = _calls(ot, name, calls), _calls(torch.optim, name, calls)
    assert mine[:-1] == ref[:-1]
    assert mine[-1] == pytest.approx(ref[-1], rel=1e-6)
    assert ref[-2][-1] == 1.0  # (the wrapped closure ran once)


def test_step_called_with_too_many_arguments_is_refused_as_torch():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = ot.SGD([p], lr=0.1)
    with pytest.raises(TypeError, match="positional argument"):
        opt.step(None, None)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        opt.step(closur=None)
    assert torch.equal(p.detach(), torch.ones(3))


@pytest.mark.parametrize("name", ["SGD", "Adam"])
@pytest.mark.parametrize("dup", ["again", "new twice"])
def test_param_listed_twice_is_named_at_both_positions(name, dup):
    """A tensor appended to ``group["params"]`` after construction that is already there, or
    appended twice: refused (one tensor cannot be updated twice in one call) naming its two
    different positions."""
    ps = [torch.nn.Parameter(torch.randn(3)) for _ in range(2)]
    opt = getattr(ot, name)(ps, lr=0.1)
    for p in ps:
        p.grad = torch.ones(3)
    opt.step()
    if dup == "again":
        opt.param_groups[0]["params"].append(ps[1])
        first, second = 1, 2
    else:
        q = torch.nn.Parameter(torch.randn(3))
        q.grad = torch.ones(3)
        opt.param_groups[0]["params"] += [q, q]
        first, second = 2, 3
    before = [p.detach().clone() for p in opt.param_groups[0]["params"]]
    # (the param, or with state, a state tensor of it: whichever the check meets first)
    msg = rf"\['params'\]\[{second}\]\]?(\['\w+'\])? shares memory with "
    msg += rf"(state\[)?param_groups\[0\]\['params'\]\[{first}\]"
    with pytest.raises(ValueError, match=msg):
        opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(opt.param_groups[0]["params"], before))
