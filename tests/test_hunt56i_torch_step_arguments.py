"""optkern.torch's ``step`` refuses bad arguments as torch's does, naming the user's class
(56th session's leftover pass, i): the errors named the internal method, ``_Fused._step()``, where
torch says ``Adam.step()``, with or without step hooks (torch's wrapper runs then)."""

from __future__ import annotations

import inspect

import pytest

torch = pytest.importorskip("torch")
import optkern.torch as ot  # noqa: E402

NAMES = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]
# (args, kwargs) after ``self``: each a binding error of ``step(self, closure=None)``
BAD_CALLS = [
    ((None, 3), {}),
    ((None, 3, 4), {}),
    ((), {"foo": 1}),
    ((), {"closure": None, "foo": 1}),
    ((None,), {"closure": None}),
    ((None, 3), {"closure": None}),
    ((None,), {"foo": 1, "closure": None}),
]


def _message(opt, args, kwargs) -> str:
    with pytest.raises(TypeError) as info:
        opt.step(*args, **kwargs)
    return str(info.value)


def _pair(name: str):
    w = [torch.nn.Parameter(torch.ones(5)) for _ in range(2)]
    for p in w:
        p.grad = torch.ones(5)
    return getattr(torch.optim, name)([w[0]], lr=0.1), getattr(ot, name)([w[1]], lr=0.1), w


@pytest.mark.parametrize("hooked", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_bad_step_arguments_name_the_class_as_torchs(name, hooked):
    theirs, ours, w = _pair(name)
    if hooked:  # (torch's step wrapper, which calls the method it wraps, runs when a hook is registered)
        ours.register_step_pre_hook(lambda *a: None)
    for args, kwargs in BAD_CALLS:
        # (torch's AdamW inherits Adam's step, so its errors say ``Adam.step()``: ours name the class)
        qualname, rest = _message(theirs, args, kwargs).split(" ", 1)
        assert qualname in (f"{name}.step()", "Adam.step()")
        assert _message(ours, args, kwargs) == f"{name}.step() {rest}", (args, kwargs)
    assert torch.equal(w[1].detach(), torch.ones(5))  # (refused before any update)


def test_subclass_is_named():
    class MyAdam(ot.Adam):
        pass

    opt = MyAdam([torch.nn.Parameter(torch.ones(3))])
    assert _message(opt, (None, 1), {}).startswith("MyAdam.step() takes from 1 to 2 positional")


@pytest.mark.parametrize("hooked", [False, True])
def test_good_calls_still_step_and_signature_is_torchs(hooked):
    w = torch.nn.Parameter(torch.ones(4))
    opt = ot.SGD([w], lr=0.5)
    if hooked:
        opt.register_step_post_hook(lambda *a: None)
    w.grad = torch.ones(4)
    assert opt.step() is None
    assert opt.step(None) is None
    assert opt.step(closure=lambda: 7.0) == 7.0
    assert opt.step(lambda: 8.0) == 8.0
    torch.testing.assert_close(w.detach(), torch.full((4,), -1.0))
    assert str(inspect.signature(opt.step)) == str(inspect.signature(torch.optim.SGD([w]).step))
