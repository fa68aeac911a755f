"""state_dict post-hooks registered while ``state_dict()`` runs (from a pre-hook, or from a post-hook's
own handle removal) behave as in torch.optim: registered on the optimizer for good, run in that call
and the next, and removable by their handle.

Before: the post-hook dict was swapped for an empty one during torch's packing, so a post-hook a
pre-hook registered ran inside that packing on torch's state dict and was dropped afterwards (its
handle pointed at the temporary dict): 'late' in the first state_dict() only."""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

MODS = pytest.mark.parametrize("mod", [torch.optim, ot], ids=["torch", "optkern"])


def stepped(mod, name="Adam"):
    torch.manual_seed(0)
    p = torch.randn(7, requires_grad=True)
    opt = getattr(mod, name)([p], lr=0.01, **({"momentum": 0.9} if name == "SGD" else {}))
    p.grad = torch.randn(7)
    opt.step()
    return opt


def late_post_hook(opt, handles, **kw):
    """A pre-hook that registers, on its first call only, a post-hook marking the state dict."""

    def pre(o):
        if not handles:
            handles.append(o.register_state_dict_post_hook(lambda o, sd: {**sd, "late": True}, **kw))

    return opt.register_state_dict_pre_hook(pre)


@MODS
@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_post_hook_registered_by_a_pre_hook_stays(mod, name):
    opt = stepped(mod, name)
    handles: list = []
    late_post_hook(opt, handles)
    first, second = opt.state_dict(), opt.state_dict()
    assert first.get("late") is True and second.get("late") is True
    assert sorted(first["state"]) == [0]  # (its shown state dict is the finished one)
    handles[0].remove()
    assert "late" not in opt.state_dict()


@MODS
def test_late_prepended_post_hook_runs_first(mod):
    opt = stepped(mod)
    seen: list = []
    opt.register_state_dict_post_hook(lambda o, sd: seen.append("early"))

    def pre(o):
        if not seen:
            o.register_state_dict_post_hook(lambda o, sd: seen.append("late"), prepend=True)

    opt.register_state_dict_pre_hook(pre)
    opt.state_dict()
    assert seen == ["late", "early"]


@MODS
def test_same_as_torch_side_by_side(mod):
    # what optkern returns over three calls equals torch.optim's, key for key
    runs = {}
    for m in (torch.optim, mod):
        opt = stepped(m)
        handles: list = []
        late_post_hook(opt, handles)
        runs[m] = [sorted(opt.state_dict()) for _ in range(3)]
    assert runs[mod] == runs[torch.optim]


@MODS
def test_handles_remove_in_every_phase(mod):
    # a post-hook registered before the call, one from a pre-hook and one after: each handle removes its own
    opt = stepped(mod)
    marks: list = []
    before = opt.register_state_dict_post_hook(lambda o, sd: marks.append("before"))
    handles: list = []

    def pre(o):
        if not handles:
            handles.append(o.register_state_dict_post_hook(lambda o, sd: marks.append("during")))

    pre_handle = opt.register_state_dict_pre_hook(pre)
    opt.state_dict()
    after = opt.register_state_dict_post_hook(lambda o, sd: marks.append("after"))
    marks.clear()
    opt.state_dict()
    assert marks == ["before", "during", "after"]
    for h, gone in ((handles[0], "during"), (before, "before"), (after, "after")):
        h.remove()
        marks.clear()
        opt.state_dict()
        assert gone not in marks
    assert marks == []
    pre_handle.remove()
    opt.state_dict()
    assert handles and len(handles) == 1
