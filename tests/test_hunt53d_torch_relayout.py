"""Hunt 53d: a param given another memory layout after its state exists, and a grad laid out
unlike its param, step as torch.optim steps them.

torch.optim's element-wise ops read every tensor by index, whatever its strides: a model put into
channels_last between steps (``p.data = p.data.to(memory_format=...)``, a param transposed in place,
a grad accumulated in place before the change, or set by hand) steps on. optkern's native calls
pair a param with its grad and state in memory order, and refused all of these by name
("tensor must be contiguous like its param"). Now a state tensor of its param's shape, dense in
another layout, is put into the param's layout in place (the same tensor object, the same values:
``opt.state[p]["exp_avg"]`` stays live, as torch's), and such a grad is read through a copy in its
param's layout for the step (it is only read; ``p.grad`` is put back). Refused still, by name: a
state tensor that is a view of another tensor's memory (re-laid out it would stop sharing it) and
grads or state with gaps or overlaps.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402
from torch_common import CASES, IDS, stepped_once  # noqa: E402

CL = torch.channels_last
TOL = {torch.float64: 1e-11, torch.float32: 2e-5}


def cnn(dtype):
    torch.manual_seed(3)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 5, 3), torch.nn.Tanh(), torch.nn.Conv2d(5, 7, 2), torch.nn.Flatten(), torch.nn.Linear(7, 3)
    )
    return m.to(dtype)


def batch(dtype):
    gen = torch.Generator().manual_seed(4)
    return torch.randn(11, 3, 4, 4, generator=gen).to(dtype), torch.randint(0, 3, (11,), generator=gen)


def relay(model, layout):
    """Every param given ``layout`` in place (4-D: memory format; 2-D: transposed memory)."""
    for p in model.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=layout)
        elif p.dim() == 2:
            p.data = p.data.t().contiguous().t() if layout is CL else p.data.contiguous()


def run(model, opt, dtype, changes, set_to_none=True):
    """Ten steps, the params re-laid at the steps in ``changes`` ({step: layout}); the iterates."""
    x, y = batch(dtype)
    out = []
    for k in range(10):
        if k in changes:
            relay(model, changes[k])
        opt.zero_grad(set_to_none=set_to_none)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        out.append([p.detach().clone() for p in model.parameters()])
    return out


def assert_iterates_close(ours, theirs, dtype):
    for k, (a, b) in enumerate(zip(ours, theirs)):
        for p, q in zip(a, b):
            err = float((p - q).abs().max() / q.abs().max())
            assert err < TOL[dtype], (k, err)


# (torch warns that an in-place accumulated grad does not obey its param's layout: what is tested)
@pytest.mark.filterwarnings("ignore:grad and param do not obey the gradient layout contract")
@pytest.mark.parametrize("dtype,set_to_none", [(torch.float64, True), (torch.float64, False), (torch.float32, True)])
@pytest.mark.parametrize("name,hp", CASES, ids=IDS)
def test_a_model_re_laid_between_steps_steps_as_torch(name, hp, set_to_none, dtype):
    """channels_last after 3 steps, back to contiguous after 6: iterate by iterate as torch.optim's
    for-loop (set_to_none=False: the grads accumulate in place in their old layout)."""
    changes = {3: CL, 6: torch.contiguous_format}
    ours, theirs = cnn(dtype), cnn(dtype)
    opt = getattr(ot, name)(ours.parameters(), **hp)
    ref = getattr(torch.optim, name)(theirs.parameters(), foreach=False, **hp)
    mine = run(ours, opt, dtype, changes, set_to_none)
    assert_iterates_close(mine, run(theirs, ref, dtype, changes, set_to_none), dtype)
    for p in ours.parameters():  # the state in its param's layout now
        for t in opt.state[p].values():
            if isinstance(t, torch.Tensor) and t.shape == p.shape and p.dim():
                assert t.stride() == p.stride()


def test_the_state_tensors_stay_the_same_objects_and_live():
    """A reference to a state tensor keeps following the step, as torch's does."""
    model = cnn(torch.float64)
    opt = ot.Adam(model.parameters(), lr=1e-2)
    run(model, opt, torch.float64, {}, True)
    w = model[0].weight
    held = opt.state[w]["exp_avg"]
    relay(model, CL)
    x, y = batch(torch.float64)
    before = held.clone()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    expected = 0.9 * before + 0.1 * w.grad
    opt.step()
    assert opt.state[w]["exp_avg"] is held and held.stride() == w.stride()
    torch.testing.assert_close(held, expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("param_layout", [CL, torch.contiguous_format])
def test_a_grad_laid_out_unlike_its_param_is_read_by_index_and_put_back(param_layout):
    torch.manual_seed(5)
    p0 = torch.randn(2, 3, 5, 7, dtype=torch.float64).contiguous(memory_format=param_layout)
    other = torch.contiguous_format if param_layout is CL else CL
    ps = [p0.clone(memory_format=torch.preserve_format).requires_grad_() for _ in range(2)]
    opts = [ot.AdamW([ps[0]], lr=0.1, amsgrad=True), torch.optim.AdamW([ps[1]], lr=0.1, amsgrad=True, foreach=False)]
    for _ in range(3):
        g = torch.randn(2, 3, 5, 7, dtype=torch.float64).contiguous(memory_format=other)
        for p, opt in zip(ps, opts):
            p.grad = g.clone(memory_format=torch.preserve_format)
            given = p.grad
            opt.step()
            assert p.grad is given and p.grad.stride() == g.stride() and torch.equal(p.grad, g)
        torch.testing.assert_close(ps[0].detach(), ps[1].detach(), rtol=1e-13, atol=1e-15)
    assert ps[0].stride() == p0.stride()


def test_two_groups_one_grad_re_laid_steps_both_as_torch():
    """A step of several runs (the precheck's path): the second group's grad laid out otherwise."""
    torch.manual_seed(6)
    a0, b0 = torch.randn(4, 6, dtype=torch.float64), torch.randn(3, 2, 2, 5, dtype=torch.float64)
    pairs = []
    for mod, kw in ((ot, {}), (torch.optim, {"foreach": False})):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        pairs.append(((a, b), mod.SGD([{"params": [a]}, {"params": [b], "lr": 0.3}], lr=0.1, momentum=0.9, **kw)))
    for _ in range(3):
        ga, gb = torch.randn(4, 6, dtype=torch.float64), torch.randn(3, 2, 2, 5, dtype=torch.float64)
        for (a, b), opt in pairs:
            a.grad, b.grad = ga.t().contiguous().t(), gb.contiguous(memory_format=CL)
            opt.step()
    for x, y in zip(*(ps for ps, _ in pairs)):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-14, atol=1e-15)


def test_a_state_view_of_other_memory_laid_out_unlike_its_param_is_refused_nothing_written():
    p, opt = stepped_once(ot.Adam, (2, 3, 4, 5), torch.float64, 7, lr=0.1)
    flat = torch.zeros(2 * p.numel(), dtype=torch.float64)
    opt.state[p]["exp_avg"] = flat[: p.numel()].view(p.shape)  # (a view of a buffer, row-major)
    p.data = p.data.contiguous(memory_format=CL)
    p.grad = torch.randn_like(p)
    before = p.detach().clone()
    sq = opt.state[p]["exp_avg_sq"].clone()
    with pytest.raises(ValueError, match=r"^state\[param_groups\[0\]\['params'\]\[0\]\]\['exp_avg'\]: .*a view of"):
        opt.step()
    assert torch.equal(p.detach(), before) and torch.equal(opt.state[p]["exp_avg_sq"], sq)
    assert opt.state[p]["exp_avg"]._base is flat


def test_a_grad_with_gaps_is_still_refused_by_name():
    p = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    opt = ot.SGD([p], lr=0.1)
    p.grad = torch.zeros(3, 8, dtype=torch.float64)[:, ::2]
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[0\]\.grad: tensor must be contiguous"):
        opt.step()


@pytest.mark.parametrize(
    "name,dtype,kw",
    [
        ("Adam", torch.bfloat16, dict(master_weights=True, stochastic_rounding=True)),
        ("Adam", torch.float32, dict(state_dtype="int8", block_size=64)),
        ("Adam", torch.float32, dict(state_dtype="bfloat16")),
        # (its own group step: the master copy was stepped against the re-laid param, silently)
        ("AdagradNorm", torch.bfloat16, dict(master_weights=True)),
        ("AdagradNorm", torch.float16, dict(master_weights=True, stochastic_rounding=True, seed=3)),
    ],
)
def test_low_precision_storage_refuses_a_re_laid_param_by_name_nothing_written(name, dtype, kw):
    """Its storage runs over the param's elements in C order (8-bit blocks, stochastic rounding's
    counters): a param re-laid after its state exists is refused, not its state re-laid into."""
    p, opt = stepped_once(getattr(ot, name), (2, 3, 8, 8), dtype, 8, lr=0.1, **kw)
    p.data = p.data.contiguous(memory_format=CL)
    p.grad = torch.randn_like(p)
    before = p.detach().clone()
    state = {k: (v.clone(), v.stride()) for k, v in opt.state[p].items() if isinstance(v, torch.Tensor)}
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[0\]: low-precision storage needs a contig"):
        opt.step()
    assert torch.equal(p.detach(), before)
    for k, (v, stride) in state.items():
        assert torch.equal(opt.state[p][k], v) and opt.state[p][k].stride() == stride, k


def test_low_precision_storage_reads_a_grad_laid_out_otherwise_by_index():
    """A contiguous bfloat16 param with a channels_last grad: bit for bit the step of the same grad
    in the param's layout (stochastic rounding draws by the param's element index)."""
    torch.manual_seed(9)
    p0 = torch.randn(2, 3, 8, 8).to(torch.bfloat16)
    gs = [torch.randn(2, 3, 8, 8).to(torch.bfloat16) for _ in range(3)]
    out = []
    for layout in (torch.contiguous_format, CL):
        p = p0.clone().requires_grad_()
        opt = ot.AdamW([p], lr=0.1, master_weights=True, stochastic_rounding=True, seed=3)
        for g in gs:
            p.grad = g.contiguous(memory_format=layout)
            opt.step()
        out.append(p.detach())
    assert torch.equal(out[0], out[1])


def test_a_sparse_grad_and_a_grad_laid_out_otherwise_in_one_step_as_torch():
    """Both special paths at once (the sparse grads hidden for the dense step, the re-laid grad
    read through a copy): bit for bit torch's SGD."""
    res = []
    for mod in (torch.optim, ot):
        torch.manual_seed(10)
        emb = torch.nn.Embedding(10, 3, sparse=True).double()
        w = torch.randn(2, 3, 4, 5, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
        opt = mod.SGD([emb.weight, w], lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            emb(torch.tensor([1, 2, 2, 7])).sum().backward()
            w.grad = torch.randn(2, 3, 4, 5, dtype=torch.float64)  # (contiguous: unlike its param)
            opt.step()
        res.append((emb.weight.detach().clone(), w.detach().clone()))
    assert all(torch.equal(a, b) for a, b in zip(*res))


def test_a_complex_param_re_laid_steps_as_torch():
    res = []
    for mod, kw in ((torch.optim, {"foreach": False}), (ot, {})):
        torch.manual_seed(11)
        z = torch.randn(2, 3, 4, 5, dtype=torch.complex128, requires_grad=True)
        opt = mod.Adam([z], lr=0.1, **kw)
        for k in range(4):
            if k == 2:
                z.data = z.data.contiguous(memory_format=CL)
            z.grad = torch.randn(2, 3, 4, 5, dtype=torch.complex128)
            opt.step()
        res.append(z.detach().clone())
    torch.testing.assert_close(res[1], res[0], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["Adam", "AdagradNorm"])
def test_low_precision_storage_refuses_a_param_re_laid_before_its_first_step(name):
    """No state yet: its master copy would be made in C order and stepped against the param's
    memory order (AdagradNorm's own group step made and stepped it, silently)."""
    torch.manual_seed(8)
    p = torch.randn(2, 3, 8, 8).to(torch.bfloat16).requires_grad_()
    opt = getattr(ot, name)([p], lr=0.1, master_weights=True)
    p.data = p.data.contiguous(memory_format=CL)
    p.grad = torch.randn_like(p)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[0\]: low-precision storage needs a contig"):
        opt.step()
    assert torch.equal(p.detach(), before) and not opt.state[p]
