"""optkern.torch's cached CPU step compares its grads' shapes in the native call, on the DLPack
capsules it hands over (``_cpu.HeldCapsules.shapes``), not on torch.Size objects in Python. What
the Python comparison did must hold: a grad of another shape is refused by name before anything is
written (another ndim, or the same ndim with dims swapped); a param and its state given a new shape
in place (``p.data = p.data.view(...)``) step as torch steps them; the native call refuses a
capsule of another shape than the list's ``shapes`` and leaves the list whole."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _cpu

torch = pytest.importorskip("torch")
from torch.utils.dlpack import to_dlpack  # noqa: E402

import optkern.torch as ot  # noqa: E402

torch.set_num_threads(1)

CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", dict(lr=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
]


def _params(shapes):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=g, dtype=torch.float32).requires_grad_() for s in shapes]


def _grads(ps, k=0):
    g = torch.Generator().manual_seed(10 + k)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def _snapshot(opt, ps):
    out = [p.detach().clone() for p in ps]
    for p in ps:
        out += [v.clone() for v in opt.state.get(p, {}).values() if isinstance(v, torch.Tensor)]
    return out


@pytest.mark.parametrize("name, kw", CASES)
@pytest.mark.parametrize("bad", [(6,), (3, 2), (1, 2, 3)])
def test_cached_step_names_a_grad_of_another_shape_and_writes_nothing(name, kw, bad):
    ps = _params([(5,), (2, 3), (4,)])
    opt = getattr(ot, name)(ps, **kw)
    for k in range(3):  # (the second and third steps are cached ones)
        _grads(ps, k)
        opt.step()
    _grads(ps, 3)
    ps[1].grad.data = ps[1].grad.detach().reshape(bad).clone()  # (torch's .grad setter would refuse it)
    before = _snapshot(opt, ps)
    versions = [p._version for p in ps]
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[1\]\.grad: .* does not match its param"):
        opt.step()
    after = _snapshot(opt, ps)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert [p._version for p in ps] == versions
    ps[1].grad = torch.ones_like(ps[1])  # (a good grad again: the step goes on)
    opt.step()


@pytest.mark.parametrize("name, kw", CASES)
def test_param_and_state_given_a_new_shape_in_place_step_as_torch(name, kw):
    out = []
    for mod in (torch.optim, ot):
        ps = _params([(6,), (4,)])
        opt = getattr(mod, name)(ps, **kw)
        for k in range(2):
            _grads(ps, k)
            opt.step()
        ps[0].data = ps[0].data.view(2, 3)  # the param and every state tensor of it: a new shape
        st = opt.state[ps[0]]
        for key, v in st.items():
            if isinstance(v, torch.Tensor) and v.shape == (6,):
                st[key].data = v.data.view(2, 3)
        for k in range(2, 5):
            _grads(ps, k)
            opt.step()
        out.append([p.detach().clone() for p in ps])
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _held(gs, shapes):
    h = _cpu.HeldCapsules(map(to_dlpack, gs))
    h.tensors = gs
    h.shapes = np.array([x for s in shapes for x in (len(s), *s)], np.int64)
    return h


def _sgd(ps, grads, bufs):
    _cpu.sgd_(ps, grads, bufs, 0.1, 0.9, 0.0, 0.0, False, False, False, 2)


@pytest.mark.parametrize("gshape", [(6,), (3, 2), (2, 3, 1)])
def test_native_call_refuses_a_capsule_of_another_shape(gshape):
    ps = [np.ones(4, np.float32), np.ones((2, 3), np.float32)]
    bufs = [np.ones(4, np.float32), np.ones(6, np.float32)]
    gs = [torch.ones(4), torch.ones(gshape)]
    held = _held(gs, [(4,), (2, 3)])
    with pytest.raises(ValueError, match=r"grads\[1\]: shape is not its param's"):
        _sgd(ps, held, bufs)
    assert len(held) == 2  # (left whole: nothing read is freed on a refusal)
    assert all((a == 1).all() for a in ps + bufs)  # nothing written
    ok = _held([torch.ones(4), torch.ones(2, 3)], [(4,), (2, 3)])
    _sgd(ps, ok, bufs)
    assert len(ok) == 0 and not (ps[0] == 1).any()


def test_native_call_refuses_shapes_that_are_not_int64():
    gs = [torch.ones(4)]
    held = _cpu.HeldCapsules(map(to_dlpack, gs))
    held.tensors = gs
    held.shapes = np.array([1, 4], np.int32)
    with pytest.raises(TypeError, match="HeldCapsules.shapes"):
        _sgd([np.ones(4, np.float32)], held, [np.ones(4, np.float32)])


def test_shapes_too_short_refuse():
    gs = [torch.ones(4), torch.ones(3)]
    held = _held(gs, [(4,)])  # (the second capsule has no shape to be compared with)
    with pytest.raises(ValueError, match=r"grads\[1\]: shape is not its param's"):
        _sgd([np.ones(4, np.float32), np.ones(3, np.float32)], held, [np.ones(4, np.float32), np.ones(3, np.float32)])
