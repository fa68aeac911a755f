"""A ``_cpu.HeldCapsules`` list with ``api`` set: its items are the tensors themselves, which the
native call describes through the type's DLPack exchange API (``__dlpack_c_exchange_api__``) instead
of capsules made per tensor in Python -- optkern.torch's CPU grads, where torch has one. Every
check a capsule gets (dtype, size, shape against ``shapes``, layout, host memory) applies; a refused
call writes nothing; an item of another type is named; the adapter steps as with capsules."""

import numpy as np
import pytest

from optkern import _cpu

torch = pytest.importorskip("torch")
if not _cpu.dlpack_exchange_usable(torch.Tensor):
    pytest.skip("this torch has no DLPack exchange API", allow_module_level=True)

from held_steps import adam_state, adam_step  # noqa: E402


def _held(gs, shapes=None):
    h = _cpu.HeldCapsules(gs)
    h.tensors = gs
    h.api = torch.Tensor
    if shapes is not None:
        h.shapes = np.array([x for s in shapes for x in (len(s), *s)], np.int64)
    return h


def test_usable_only_for_a_type_with_the_api():
    assert _cpu.dlpack_exchange_usable(torch.Tensor)
    assert not _cpu.dlpack_exchange_usable(np.ndarray)
    assert not _cpu.dlpack_exchange_usable(3)


@pytest.mark.parametrize("sizes", [[0], [1], [7, 1023], [5] * 33])
def test_tensors_step_as_numpy_grads(sizes):
    ps, gs, ms, vs = adam_state(sizes)
    ref = [a.copy() for a in ps], [a.copy() for a in ms], [a.copy() for a in vs]
    adam_step(ref[0], [g.numpy() for g in gs], ref[1], ref[2])
    held = _held(gs, [(n,) for n in sizes])
    adam_step(ps, held, ms, vs)
    assert len(held) == 0 and held.tensors is gs
    for got, want in zip(ps + ms + vs, ref[0] + ref[1] + ref[2]):
        np.testing.assert_array_equal(got, want)


def _refused(ps, ms, vs, held, err, match):
    before = [a.copy() for a in ps + ms + vs]
    with pytest.raises(err, match=match):
        adam_step(ps, held, ms, vs)
    assert len(held) == len(held.tensors)  # (left whole)
    for a, b in zip(ps + ms + vs, before):
        np.testing.assert_array_equal(a, b)


def test_every_capsule_check_applies_and_a_refused_call_writes_nothing():
    ps, gs, ms, vs = adam_state([6, 6])
    _refused(ps, ms, vs, _held([gs[0], torch.zeros(4)]), ValueError, r"grads\[1\]")  # size
    _refused(ps, ms, vs, _held([gs[0], torch.zeros(6, dtype=torch.float64)]), TypeError, r"grads\[1\]")  # dtype
    _refused(ps, ms, vs, _held([gs[0], torch.zeros(6, dtype=torch.int32)]), TypeError, r"grads\[1\]")
    t = torch.zeros(3, 2).t()  # (6 elements, not row-major)
    _refused(ps, ms, vs, _held([gs[0], t]), ValueError, r"grads\[1\].*contiguous")
    # (the shape each must have: 6 elements of another shape are refused by name)
    _refused(ps, ms, vs, _held([gs[0], torch.zeros(2, 3)], [(6,), (6,)]), ValueError, r"grads\[1\]: shape")
    _refused(ps, ms, vs, _held([gs[0], "not a tensor"]), TypeError, r"grads\[1\]: expected a Tensor")


def test_a_tensor_subclass_and_a_numpy_array_are_taken():
    ps, gs, ms, vs = adam_state([4, 4], seed=2)
    ref = [a.copy() for a in ps], [a.copy() for a in ms], [a.copy() for a in vs]
    adam_step(ref[0], [g.numpy() for g in gs], ref[1], ref[2])
    items = [torch.nn.Parameter(gs[0].clone(), requires_grad=False), gs[1].numpy()]
    held = _held(items)  # (``tensors`` holds the items: the call empties the list once read)
    adam_step(ps, held, ms, vs)
    for got, want in zip(ps, ref[0]):
        np.testing.assert_array_equal(got, want)


def test_an_api_of_another_type_is_refused():
    ps, gs, ms, vs = adam_state([3])
    held = _held(gs)
    held.api = np.ndarray
    with pytest.raises(TypeError, match="HeldCapsules.api"):
        adam_step(ps, held, ms, vs)


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_the_adapter_steps_alike_through_capsules_and_the_api(monkeypatch, name):
    """The adapter's grads through the exchange API and (a torch without one) through capsules: the
    same params, with new grad tensors every step (``zero_grad()``'s None) and one step of a grad
    replaced by a transposed copy (read by index, as torch reads it, since hunt 53d: the very bits
    of the row-major grad's step; it was refused by name before)."""
    import optkern.torch as OT
    from optkern.torch import _run_grads as _runs  # (the grads of a run: moved out of _runs)

    hp = dict(lr=1e-2, momentum=0.9) if name == "SGD" else dict(lr=1e-2)
    out = []
    for api in (_runs._EXCHANGE, None):
        for transposed in (True, False):
            monkeypatch.setattr(_runs, "_EXCHANGE", api)
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Linear(4, 4))
            opt = getattr(OT, name)(model.parameters(), **hp)
            for _ in range(4):
                opt.zero_grad()
                model(torch.randn(3, 6)).square().sum().backward()
                opt.step()
            w = model[1].weight
            if transposed:
                w.grad = w.grad.t().contiguous().t()  # (its shape, not row-major)
            given = w.grad
            opt.step()
            assert w.grad is given
            out.append([p.detach().clone() for p in model.parameters()])
    for run in out[1:]:
        for a, b in zip(out[0], run):
            assert torch.equal(a, b)
