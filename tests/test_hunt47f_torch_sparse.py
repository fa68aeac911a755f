"""Sparse (torch.sparse_coo) grads in optkern.torch, against torch.optim itself: every class refused
them ("sparse gradients are not supported"), where torch.optim.SGD and Adagrad step them (an
``nn.Embedding(sparse=True)``'s) and the others raise their own RuntimeError."""

import warnings

import pytest
import torch

import optkern.torch as ot
from torch_ieee_sqrt import ieee_sqrt

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks")
DTYPES = [torch.float32, torch.float64]


def _sparse(gen, shape, dtype, coalesced, dup=True):
    """A sparse grad over dim 0 of ``shape`` (hybrid: its rows dense), with duplicate indices and
    entries of very different sizes (the order of an uncoalesced grad's additions shows)."""
    rows = torch.randint(0, shape[0], (6,), generator=gen)
    if dup:
        rows = torch.cat([rows, rows[:2], rows[:1]])
    scale = torch.tensor([1e6, 1.0, -1e6, 3.0, 1e-3, 7.0, 2.0, -5.0, 1e5][: rows.numel()], dtype=torch.float64)
    vals = torch.randn((rows.numel(),) + tuple(shape[1:]), generator=gen, dtype=torch.float64)
    vals = (vals * scale.reshape(-1, *([1] * (len(shape) - 1)))).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = torch.sparse_coo_tensor(rows.unsqueeze(0), vals, shape)
    return g.coalesce() if coalesced else g


def _pair(name, kw, dtype, gen, shapes=((6, 3), (4,))):
    ps = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    a = [torch.nn.Parameter(p.clone()) for p in ps]
    b = [torch.nn.Parameter(p.clone()) for p in ps]
    return a, b, getattr(torch.optim, name)(a, foreach=False, **kw), getattr(ot, name)(b, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coalesced", [False, True])
@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=torch.tensor(0.05), maximize=True)])
def test_sgd_sparse_grads_bitwise_like_torch(dtype, coalesced, kw):
    gen = torch.Generator().manual_seed(47)
    a, b, ta, tb = _pair("SGD", kw, dtype, gen)
    for _ in range(20):
        g, d = _sparse(gen, (6, 3), dtype, coalesced), torch.randn(4, generator=gen, dtype=dtype)
        a[0].grad, b[0].grad, a[1].grad, b[1].grad = g.clone(), g.clone(), d.clone(), d.clone()
        ta.step()
        tb.step()
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert not tb.state  # (torch's plain SGD keeps none)


def test_sgd_sparse_touches_only_listed_elements():
    p = torch.nn.Parameter(torch.tensor([[-0.0, 1.0], [-0.0, 2.0]]))
    opt = ot.SGD([p], lr=0.5, maximize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.tensor([[4.0, 2.0]]), (2, 2))
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([[-0.0, 1.0], [2.0, 3.0]]))
    assert torch.signbit(p.detach()[0, 0])  # (a dense step of zeros makes it +0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coalesced", [False, True])
@pytest.mark.parametrize(
    "kw", [dict(lr=0.1, lr_decay=0.01), dict(lr=0.1, maximize=True, initial_accumulator_value=0.2, eps=1e-6)]
)
def test_adagrad_sparse_grads_like_torch(dtype, coalesced, kw):
    """torch coalesces the grad and steps its entries: params and state here are torch's step on the
    dense grad bit for bit (its for-loop's: the listed elements' update, the others unchanged), and
    within an ulp or two of torch's sparse path per step, which rounds differently: its sum adds
    ``g.pow(2)`` (rounded) where the dense step's addcmul rounds once, and it adds its update into the
    param as torch.add of a sparse tensor does, one fused multiply-add.)"""
    gen = torch.Generator().manual_seed(48)
    a, b, ta, tb = _pair("Adagrad", kw, dtype, gen)
    c = [torch.nn.Parameter(x.detach().clone()) for x in a]
    tc = torch.optim.Adagrad(c, foreach=False, **kw)
    for _ in range(20):
        g, d = _sparse(gen, (6, 3), dtype, coalesced), torch.randn(4, generator=gen, dtype=dtype)
        a[0].grad, b[0].grad, a[1].grad, b[1].grad = g.clone(), g.clone(), d.clone(), d.clone()
        c[0].grad, c[1].grad = g.to_dense(), d.clone()
        with ieee_sqrt():
            ta.step()
            tc.step()
        tb.step()
        for x, y, z in zip(a, b, c):
            assert torch.equal(y, z)
            torch.testing.assert_close(y, x, rtol=4 * torch.finfo(dtype).eps, atol=torch.finfo(dtype).eps)
            sx, sy, sz = ta.state[x], tb.state[y], tc.state[z]
            assert torch.equal(sx["step"], sy["step"]) and torch.equal(sz["sum"], sy["sum"])
            torch.testing.assert_close(sy["sum"], sx["sum"], rtol=2 * torch.finfo(dtype).eps, atol=0)
        with torch.no_grad():  # (each step compared from the same params: the ulps do not add up)
            for x, y in zip(a, b):
                x.copy_(y)
                ta.state[x]["sum"].copy_(tb.state[y]["sum"])


def test_embedding_trains_like_torch_sgd():
    torch.manual_seed(0)
    e1, l1 = torch.nn.Embedding(30, 4, sparse=True), torch.nn.Linear(4, 1)
    e2, l2 = torch.nn.Embedding(30, 4, sparse=True), torch.nn.Linear(4, 1)
    e2.load_state_dict(e1.state_dict())
    l2.load_state_dict(l1.state_dict())
    o1 = torch.optim.SGD([*e1.parameters(), *l1.parameters()], lr=0.05)
    o2 = ot.SGD([*e2.parameters(), *l2.parameters()], lr=0.05)
    for _ in range(20):
        x = torch.randint(0, 30, (16,))  # (repeated tokens: an uncoalesced grad)
        for e, lin, o in ((e1, l1, o1), (e2, l2, o2)):
            o.zero_grad()
            lin(e(x)).tanh().sum().backward()
            o.step()
    assert torch.equal(e1.weight, e2.weight) and torch.equal(l1.weight, l2.weight)


REFUSED = [
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, fused=True)),
    ("Adagrad", dict(weight_decay=0.1)),
    ("Adagrad", dict(fused=True)),
    ("RMSprop", {}),
    ("Adadelta", {}),
    ("Adam", {}),
    ("AdamW", {}),
    ("NAdam", {}),
]


@pytest.mark.parametrize(("name", "kw"), REFUSED)
def test_torch_refusals_are_torchs_and_write_nothing(name, kw):
    gen = torch.Generator().manual_seed(49)
    a, b, ta, tb = _pair(name, kw, torch.float32, gen)
    g, d = _sparse(gen, (6, 3), torch.float32, False), torch.randn(4, generator=gen)
    # (the dense param first in torch's own order too: torch refuses mid-step, this before any update)
    a[0].grad, a[1].grad = g.clone(), d.clone()
    b[0].grad, b[1].grad = g.clone(), d.clone()
    with pytest.raises(RuntimeError) as want:
        ta.step()
    before = [x.detach().clone() for x in b]
    state = {k: v.clone() for s in tb.state.values() for k, v in s.items() if torch.is_tensor(v)}
    with pytest.raises(type(want.value)) as got:
        tb.step()
    assert str(got.value) == str(want.value)
    assert all(torch.equal(x, y) for x, y in zip(b, before))
    after = {k: v for s in tb.state.values() for k, v in s.items() if torch.is_tensor(v)}
    assert all(torch.equal(after[k], v) for k, v in state.items())


@pytest.mark.parametrize(
    ("name", "kw", "err", "match"),
    [
        ("SGD", dict(lr=0.1, momentum=0.9), ValueError, r"\['params'\]\[0\]\.grad: sparse gradients with momentum"),
        ("AdagradNorm", dict(lr=0.1), TypeError, r"\['params'\]\[0\]\.grad: sparse gradients are not supported"),
        ("SGD", dict(lr=0.1, master_weights=True), TypeError, r"\['params'\]\[0\]\.grad: sparse gradients"),
    ],
)
def test_sparse_refused_by_name_before_anything_is_written(name, kw, err, match):
    gen = torch.Generator().manual_seed(50)
    ps = [torch.nn.Parameter(torch.randn(6, 3, generator=gen)), torch.nn.Parameter(torch.randn(4, generator=gen))]
    opt = getattr(ot, name)(ps, **kw)
    ps[0].grad, ps[1].grad = _sparse(gen, (6, 3), torch.float32, True), torch.randn(4, generator=gen)
    before = [p.detach().clone() for p in ps]
    with pytest.raises(err, match=match):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, before))
    assert ps[0].grad.is_sparse  # (the grad given back)


def test_sparse_inference_param_refused_before_the_dense_ones_step():
    """An inference tensor (made under torch.inference_mode()) with a sparse grad, stepped outside
    inference mode: torch's RuntimeError naming it, before the other params' dense step wrote (the
    sparse ones step last: it came after the dense param had moved)."""
    with torch.inference_mode():
        a = torch.nn.Parameter(torch.randn(5, 2))
    b = torch.nn.Parameter(torch.randn(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.ones(1, 2), (5, 2))
    b.grad = torch.ones(3)
    opt = ot.SGD([b, a], lr=0.1)
    before = b.detach().clone()
    with pytest.raises(RuntimeError, match=r"param_groups\[0\]\['params'\]\[1\]: Inplace update to inference"):
        opt.step()
    assert torch.equal(b.detach(), before)


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
def test_sparse_grad_of_a_param_without_a_rows_view(name):
    """A param with no (rows, *dense) view over its memory (a transposed one): stepped through torch's
    indexing. (torch's own add of a sparse grad rounds differently into a non-contiguous param than
    into a contiguous one: compared to rounding.)"""
    gen = torch.Generator().manual_seed(51)
    base = torch.randn(3, 5, generator=gen)
    a, b = torch.nn.Parameter(base.clone().t()), torch.nn.Parameter(base.clone().t())
    ta, tb = getattr(torch.optim, name)([a], lr=0.1), getattr(ot, name)([b], lr=0.1)
    for _ in range(5):
        g = _sparse(gen, (5, 3), torch.float32, name == "Adagrad")
        a.grad, b.grad = g.clone(), g.clone()
        ta.step()
        tb.step()
    assert not b.is_contiguous()
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
