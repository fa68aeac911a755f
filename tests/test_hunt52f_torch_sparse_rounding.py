"""SGD's sparse grads without dense dims, against torch.optim.SGD bit for bit (hunt 52f).

torch adds a sparse grad into a contiguous CPU param along one of three paths
(``add_out_dense_sparse_cpu``): a grad with dense dims (an ``nn.Embedding(sparse=True)``'s rows),
or an uncoalesced one of several entries, goes through BLAS axpy, rounded once per entry, as
optkern's fused step rounds; but a coalesced grad -- or a grad of one entry, which torch takes as
coalesced -- with no dense dims adds ``r[i] += alpha * v`` in the param's dtype: the product rounded,
then the sum. optkern.torch.SGD rounded once there, an ulp apart from torch's on about half of the
elements, where its docs say bit for bit. Odd sizes, float32 and float64, maximize, a tensor lr.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks")
DTYPES = [torch.float32, torch.float64]
KWS = [dict(lr=0.1), dict(lr=0.0123, maximize=True), dict(lr=torch.tensor(0.037))]


def _grad(gen, shape, dtype, nnz, coalesced):
    """A sparse grad over every dim of ``shape`` (no dense dims), ``nnz`` entries (duplicates likely)."""
    idx = torch.stack([torch.randint(0, n, (nnz,), generator=gen) for n in shape])
    vals = torch.randn(nnz, generator=gen, dtype=torch.float64).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = torch.sparse_coo_tensor(idx, vals, shape)
    return g.coalesce() if coalesced else g


def _run(shape, dtype, kw, nnz, coalesced, steps=6):
    gen = torch.Generator().manual_seed(52)
    p0 = torch.randn(shape, generator=gen, dtype=dtype)
    a, b = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    ta = torch.optim.SGD([a], foreach=False, **kw)
    tb = ot.SGD([b], **{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kw.items()})
    for _ in range(steps):
        g = _grad(gen, shape, dtype, nnz, coalesced)
        a.grad, b.grad = g.clone(), g.clone()
        ta.step()
        tb.step()
        assert torch.equal(a, b), (a - b).abs().max().item()
    assert not torch.equal(a, p0)  # (the grads moved it)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", KWS, ids=["lr", "maximize", "tensor-lr"])
@pytest.mark.parametrize("shape, nnz", [((7,), 5), ((1023,), 400), ((6, 4), 9), ((3, 1, 5), 11)])
def test_coalesced_grad_without_dense_dims_is_torchs_bit_for_bit(dtype, kw, shape, nnz):
    _run(shape, dtype, kw, nnz, coalesced=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", KWS, ids=["lr", "maximize", "tensor-lr"])
def test_one_entry_grad_is_torchs_coalesced_path(dtype, kw):
    # (torch takes a grad of one entry as coalesced, whatever its flag says)
    _run((1,), dtype, kw, 1, coalesced=False)
    _run((9, 2), dtype, kw, 1, coalesced=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coalesced", [False, True])
def test_other_paths_still_torchs(dtype, coalesced):
    """Uncoalesced grads of several entries (axpy, one after the other) stay torch's too."""
    _run((7,), dtype, dict(lr=0.1), 12, coalesced)
    _run((5, 3), dtype, dict(lr=0.1, maximize=True), 12, coalesced)


def _hybrid(gen, shape, dtype, nnz):
    """A sparse grad over dim 0 of ``shape``, its rows dense, with repeated rows."""
    rows = torch.randint(0, shape[0], (nnz,), generator=gen)
    vals = torch.randn((nnz,) + tuple(shape[1:]), generator=gen, dtype=torch.float64).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_coo_tensor(rows.unsqueeze(0), vals, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("coalesced", [False, True])
def test_channels_last_param_takes_torchs_coalescing_path(dtype, hybrid, coalesced):
    """torch coalesces a grad before adding it into a param that is not contiguous (channels_last): the
    duplicates summed first. optkern.torch added them one after the other there, an ulp apart."""
    gen = torch.Generator().manual_seed(53)
    shape = (3, 4, 2, 5)
    p0 = torch.randn(shape, generator=gen, dtype=dtype).contiguous(memory_format=torch.channels_last)
    a, b = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    assert b.stride() == p0.stride() and not b.is_contiguous()
    ta, tb = torch.optim.SGD([a], lr=0.1, foreach=False), ot.SGD([b], lr=0.1)
    for _ in range(8):
        g = _hybrid(gen, shape, dtype, 7) if hybrid else _grad(gen, shape, dtype, 40, False)
        g = g.coalesce() if coalesced else g
        a.grad, b.grad = g.clone(), g.clone()
        ta.step()
        tb.step()
        assert torch.equal(a, b), (a - b).abs().max().item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coalesced", [False, True])
def test_grad_with_strided_values_takes_torchs_coalescing_path(dtype, coalesced):
    """Values that are not contiguous send torch's add down its coalescing path (one rounding), not
    the two-rounding one the coalesced grad it makes would take."""
    gen = torch.Generator().manual_seed(54)
    shape = (6, 4)
    p0 = torch.randn(shape, generator=gen, dtype=dtype)
    a, b = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    ta, tb = torch.optim.SGD([a], lr=0.1, foreach=False), ot.SGD([b], lr=0.1)
    for _ in range(8):
        g = _grad(gen, shape, dtype, 12, coalesced)
        wide = torch.randn(g._nnz(), 2, generator=gen, dtype=torch.float64).to(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = torch.sparse_coo_tensor(g._indices(), wide[:, 0], shape, is_coalesced=g.is_coalesced())
        assert not g._values().is_contiguous()
        a.grad, b.grad = g, g
        ta.step()
        tb.step()
        assert torch.equal(a, b), (a - b).abs().max().item()
