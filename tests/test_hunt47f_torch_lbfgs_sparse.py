"""optkern.torch.LBFGS with sparse grads (an ``nn.Embedding(sparse=True)``'s): torch.optim.LBFGS reads
them as their dense values (``_gather_flat_grad``: ``p.grad.to_dense()``); they were refused."""

import pytest
import torch

import optkern.torch as ot

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks")


def _fit(mod, dtype):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(12, 3, sparse=True).to(dtype)
    lin = torch.nn.Linear(3, 1).to(dtype)
    x = torch.randint(0, 12, (40,), generator=torch.Generator().manual_seed(1))
    y = torch.randn(40, 1, generator=torch.Generator().manual_seed(2), dtype=dtype)
    opt = mod.LBFGS([*emb.parameters(), *lin.parameters()], lr=0.5, max_iter=15, history_size=5)

    def closure():
        opt.zero_grad()
        loss = (lin(emb(x)) - y).pow(2).mean()
        loss.backward()
        assert emb.weight.grad.is_sparse
        return loss

    for _ in range(3):
        opt.step(closure)
    return emb.weight.detach().clone(), lin.weight.detach().clone()


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 5e-3)])
def test_lbfgs_sparse_grads_like_torch(dtype, tol):
    # (iterates agree with torch's to rounding: LBFGS's docstring; float32 over 45 iterations drifts)
    want, mine = _fit(torch.optim, dtype), _fit(ot, dtype)
    for w, m in zip(want, mine):
        torch.testing.assert_close(m, w, rtol=tol, atol=tol)


def test_lbfgs_sparse_grad_of_another_shape_named():
    p = torch.nn.Parameter(torch.randn(4, 2))
    opt = ot.LBFGS([p])

    def closure():
        p.grad = torch.sparse_coo_tensor(torch.tensor([[0]]), torch.ones(1, 2), (4, 2))
        p.grad.data = torch.sparse_coo_tensor(torch.tensor([[0]]), torch.ones(1, 3), (4, 3))
        return torch.tensor(1.0)

    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]\.grad"):
        opt.step(closure)
    assert torch.equal(p, before)
