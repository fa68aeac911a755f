"""Three reviewer findings (hunt 47q).

``check_slots`` tested every gradient whose memory another library owns (a NumPy view of a torch
tensor, a CuPy array) against every fusion buffer at each ``synchronize``: 1000 torch-backed
gradients took 13 ms a step in one buffer, ~0.5 s in 63. The buffers' spans are now sorted once a
call and each gradient's span bisected: the overlap tests are O(gradients), pinned by counting them.

An Optimizer whose group list was shrunk in place, with a torch param then given new memory, raised
IndexError (the moved tensor's place was found by walking the shrunk list) instead of the step's
ValueError naming the group. LBFGS / NewtonCG with ``param_groups[0]['params']`` set to a tuple took
it until a tensor moved, then raised ``'tuple' object does not support item assignment``: refused
by name now."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def test_slot_check_work_is_linear_in_the_gradients(monkeypatch):
    from optkern.distributed import buckets as bk

    params = [np.ones(8, np.float32) for _ in range(64)]
    buckets = bk.make_buckets(params, 32)  # (one param a bucket: 64 buffers)
    assert len(buckets) == 64
    for b in buckets:
        b.views  # noqa: B018 (allocates the buffer)
    calls = [0]
    real = bk._overlap

    def counted(a, b):
        calls[0] += 1
        return real(a, b)

    monkeypatch.setattr(bk, "_overlap", counted)
    grads = [np.from_dlpack(torch.ones(8)) for _ in params]  # (torch's memory: tested by address)
    bk.check_slots(buckets, grads)
    assert calls[0] <= len(grads)  # (was 64 x 64: each gradient against every buffer)
    # torch views of the buffers in their own places: one buffer's views each
    calls[0] = 0
    bk.check_slots(buckets, [np.from_dlpack(torch.from_numpy(b.views[0])) for b in buckets])
    assert calls[0] <= len(grads)
    # and still refused in another param's place, found by bisection among the 64 buffers
    grads = [np.from_dlpack(torch.from_numpy(b.views[0])) for b in buckets]
    grads[10], grads[40] = grads[40], grads[10]
    with pytest.raises(ValueError, match=r"grads\[10\]: shares memory with the fusion buffer of params\[40\]"):
        bk.check_slots(buckets, grads)
    # a slice reaching over two buffers' memory is found in whichever it meets
    whole = np.from_dlpack(torch.from_numpy(buckets[5].flat))
    grads = [np.ones(8, np.float32) for _ in params]
    grads[6] = whole[2:]
    with pytest.raises(ValueError, match=r"grads\[6\]: shares memory with the fusion buffer of params\[5\]"):
        bk.check_slots(buckets, grads)


def test_shrunk_group_with_a_moved_tensor_is_a_value_error():
    from optkern import optim

    a, b = torch.zeros(3), torch.zeros(2)
    opt = optim.SGD([a, b], lr=0.1)
    opt.param_groups[0]["params"].pop()
    b.data = torch.ones(2)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]: expected the group's 2 arrays"):
        opt.step([np.ones(3, np.float32), np.ones(2, np.float32)])
    assert torch.equal(a, torch.zeros(3)) and torch.equal(b, torch.ones(2))  # (nothing written)


@pytest.mark.parametrize("name", ["LBFGS", "NewtonCG"])
def test_one_group_params_as_a_tuple_are_refused_by_name(name):
    from optkern import optim

    a, b = torch.zeros(3), torch.zeros(2)

    def never():
        raise AssertionError("ran before the params were checked")

    opt = optim.LBFGS([a, b]) if name == "LBFGS" else optim.NewtonCG([a, b], never)
    opt.param_groups[0]["params"] = tuple(opt.param_groups[0]["params"])
    b.data = torch.ones(2)

    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]: expected a list of arrays, got tuple"):
        opt.step(never)
    assert torch.equal(a, torch.zeros(3)) and torch.equal(b, torch.ones(2))
