"""What the adapter's step keeps between steps (optkern.torch's ``_Fused``) is dropped when what
it stands for changes: here the hyper-parameters that passed the dtype check (``_dtype_ok``: a
group's new value that the params' dtype cannot run is refused at the next step, nothing
written)."""

import pytest

torch = pytest.importorskip("torch")
import optkern.torch as OT  # noqa: E402


def _model(dtype):
    torch.manual_seed(0)
    m = torch.nn.Linear(5, 3).to(dtype)
    m(torch.randn(4, 5, dtype=dtype)).sum().backward()
    return m


@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_a_new_eps_that_rounds_to_zero_in_float32_is_refused_at_the_next_step(cls):
    m = _model(torch.float32)
    opt = getattr(OT, cls)(m.parameters(), lr=1e-2)
    opt.step()
    opt.step()  # (the dtype check's memo made)
    opt.param_groups[0]["eps"] = 1e-50  # (a float64 step runs it; a float32 one cannot)
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(ValueError, match=r"eps.*rounds to 0 in float32"):
        opt.step()
    for p, b in zip(m.parameters(), before):
        assert torch.equal(p.detach(), b)
    opt.param_groups[0]["eps"] = 1e-8
    opt.step()


def test_the_same_eps_runs_in_float64():
    m = _model(torch.float64)
    opt = OT.Adam(m.parameters(), lr=1e-2, eps=1e-50)
    opt.step()
    opt.step()


def _torch_ref(model, cls, **hp):
    ref = [p.detach().clone().requires_grad_() for p in model.parameters()]
    return ref, getattr(torch.optim, cls)(ref, **hp)


@pytest.mark.parametrize("cls,hp", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.1))])
def test_param_data_reassigned_between_steps_is_stepped_where_it_now_is(cls, hp):
    """The view cache's key (where the params' memory is: ``_data_key``) sees ``p.data = ...``: new
    memory, a view into another buffer, then another offset of that same buffer. Each next step
    writes the param where it now is (torch's result), never where it was."""
    m = _model(torch.float32)
    opt = getattr(OT, cls)(m.parameters(), **hp)
    ref, topt = _torch_ref(m, cls, **hp)
    for q, p in zip(ref, m.parameters()):
        q.grad = p.grad.clone()
    w = m.weight
    n = w.numel()
    big = torch.zeros(n + 1)

    def new_memory(old):
        return old.clone()

    def into_big_at_1(old):
        big[1:] = old.reshape(-1)
        return big[1:].view_as(old)

    def into_big_at_0(old):  # (the same storage as the last one, one element back)
        vals = old.reshape(-1).clone()
        big[:n] = vals
        return big[:n].view_as(old)

    for move in (None, new_memory, into_big_at_1, into_big_at_0):
        if move is not None:
            old = w.data
            w.data = move(old)
            kept = old.clone()
        opt.step()
        topt.step()
        for p, q in zip(m.parameters(), ref):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-6)
        if move is new_memory:
            assert torch.equal(old, kept)  # (where it was: not written)


def test_data_layouts_are_the_data_pointers_and_layouts():
    from optkern import _cpu

    if not _cpu.dlpack_exchange_usable(torch.Tensor):
        pytest.skip("this torch has no DLPack exchange API")
    import numpy as np

    base = torch.zeros(10)
    ts = [base, base[3:], torch.ones(2, 3).t(), torch.nn.Parameter(torch.ones(4)), torch.zeros(0)]
    got = np.frombuffer(_cpu.data_layouts(ts, torch.Tensor), np.int64).tolist()
    records = []  # (address, dtype, ndim, *shape, *strides) each
    while got:
        nd = got[2]
        records.append(got[: 3 + 2 * nd])
        got = got[3 + 2 * nd :]
    assert [r[0] for r in records[:4]] == [t.data_ptr() for t in ts[:4]]
    float32 = 2 | 32 << 8 | 1 << 16  # (DLPack's kDLFloat, 32 bits, one lane)
    assert [r[1:] for r in records] == [[float32, t.dim(), *t.shape, *t.stride()] for t in ts]
    with pytest.raises(TypeError, match=r"tensors\[1\]: expected a Tensor"):
        _cpu.data_layouts([base, np.zeros(3)], torch.Tensor)
    with pytest.raises(TypeError, match="type"):
        _cpu.data_layouts([base], np.ndarray)
