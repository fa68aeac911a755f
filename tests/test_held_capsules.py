"""``_cpu.HeldCapsules``: the list of DLPack capsules optkern.torch hands a native step as the
grads. The call empties it once every capsule is read and checked (the capsules freed while in
cache, cpp/py_arrays.hpp), keeps the list (and the tensors its ``tensors`` holds) alive until it
returns, and leaves it whole when it refuses anything."""

import gc

import numpy as np
import pytest

from optkern import _cpu

torch = pytest.importorskip("torch")
from torch.utils.dlpack import to_dlpack  # noqa: E402

from held_steps import adam_state, adam_step  # noqa: E402


def _held(gs, tensors=True):
    h = _cpu.HeldCapsules(map(to_dlpack, gs))
    if tensors:
        h.tensors = gs
    return h


@pytest.mark.parametrize("sizes", [[0], [1], [7, 1023], [5] * 33])
def test_held_list_is_emptied_and_steps_as_a_plain_list(sizes):
    ps, gs, ms, vs = adam_state(sizes)
    ref = [a.copy() for a in ps], [a.copy() for a in ms], [a.copy() for a in vs]
    adam_step(ref[0], [g.numpy() for g in gs], ref[1], ref[2])
    held = _held(gs)
    adam_step(ps, held, ms, vs)
    assert len(held) == 0 and held.tensors is gs
    for got, want in zip(ps + ms + vs, ref[0] + ref[1] + ref[2]):
        np.testing.assert_array_equal(got, want)


def test_the_tensors_outlive_the_capsules():
    """The capsules go during the call; the grads' memory is the tensors', which ``tensors`` holds."""
    ps, gs, ms, vs = adam_state([4096] * 3, seed=1)
    want = [g.numpy().copy() for g in gs]
    held = _held(gs)
    del gs
    gc.collect()
    adam_step(ps, held, ms, vs)
    for t, w in zip(held.tensors, want):
        np.testing.assert_array_equal(t.numpy(), w)


def test_without_tensors_the_list_is_left_alone():
    ps, gs, ms, vs = adam_state([3, 5])
    held = _held(gs, tensors=False)
    adam_step(ps, held, ms, vs)
    assert len(held) == 2


def test_a_refused_call_leaves_the_list_whole_and_writes_nothing():
    ps, gs, ms, vs = adam_state([3, 5])
    before = [a.copy() for a in ps]
    held = _held([gs[0], torch.zeros(4)])  # (a grad of another size than its param)
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        adam_step(ps, held, ms, vs)
    assert len(held) == 2
    held = _held([gs[0], torch.zeros(5, dtype=torch.float64)])
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        adam_step(ps, held, ms, vs)
    assert len(held) == 2
    for a, b in zip(ps, before):
        np.testing.assert_array_equal(a, b)


def test_a_written_list_of_the_type_is_not_emptied():
    """Only lists a call reads hand their capsules over (a written list holds arrays anyway)."""
    ps, gs, ms, vs = adam_state([3])
    held_params = _cpu.HeldCapsules(ps)
    held_params.tensors = ps
    adam_step(held_params, [g.numpy() for g in gs], ms, vs)
    assert len(held_params) == 1


def test_the_adapter_hands_its_grads_over():
    """optkern.torch's step gives the native call a HeldCapsules list of the grads (CPU)."""
    import optkern.torch as OT
    from optkern.torch import _run_grads as _runs  # (the grads of a run: moved out of _runs)

    seen = []
    real = _runs._held

    def spy(caps, tensors, *shapes):
        out = real(caps, tensors, *shapes)
        seen.append(out)
        return out

    model = torch.nn.Linear(7, 3)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt = OT.Adam(model.parameters(), lr=1e-2)
    ref = torch.optim.Adam([p.detach().clone().requires_grad_() for p in model.parameters()], lr=1e-2)
    for q, p in zip(ref.param_groups[0]["params"], model.parameters()):
        q.grad = p.grad.clone()
    try:
        _runs._held = spy
        for _ in range(3):
            opt.step()
            ref.step()
    finally:
        _runs._held = real
    assert seen and all(len(h) == 0 for h in seen)
    for q, p in zip(ref.param_groups[0]["params"], model.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)
