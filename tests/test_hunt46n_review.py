"""The session's final read: bad input in new code raised unnamed errors.

``to_torch_state_dict`` of a textbook-form SGD group whose lr is a tensor of several elements or a
complex one (``float(lr)``: "only one element tensors ..." / a RuntimeError), or whose ``params``
hold an unhashable id (``TypeError: unhashable type``); ``limit_threads.__exit__`` without its block
entered on the thread (``AttributeError`` of a thread-local)."""

from __future__ import annotations

import pytest

from optkern import threads

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402 (after the torch skip)


def _textbook_state():
    p = torch.nn.Parameter(torch.ones(3))
    opt = ot.SGD([p], lr=0.1, momentum=0.9, momentum_form="textbook")
    p.grad = torch.ones(3)
    opt.step()
    return opt.state_dict()


@pytest.mark.parametrize(
    "key, value",
    [("lr", torch.tensor([0.1, 0.2])), ("lr", torch.tensor(0.1 + 0j)), ("params", [[0]])],
    ids=["lr-two-elements", "lr-complex", "params-unhashable"],
)
def test_a_textbook_group_s_bad_entry_is_named(key, value):
    sd = _textbook_state()
    sd["param_groups"][0][key] = value
    before = sd["state"][0]["momentum_buffer"].clone()
    with pytest.raises(ValueError, match=rf"^state_dict\['param_groups'\]\[0\]\['{key}'\]: "):
        ot.to_torch_state_dict(sd)
    assert torch.equal(sd["state"][0]["momentum_buffer"], before)


def test_limit_threads_exit_without_its_block_on_this_thread_is_a_clear_error():
    scope = threads.limit_threads(1)
    with pytest.raises(RuntimeError, match="^limit_threads: __exit__ without a block"):
        scope.__exit__(None, None, None)
    with scope:  # (the object still works afterwards)
        pass
