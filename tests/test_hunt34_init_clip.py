"""torch.nn.init / torch.nn.utils parity: optkern.init's trunc_normal_, constant_, ones_, eye_,
dirac_, sparse_ and optkern.torch's get_total_norm, clip_grads_with_norm_ (torch 2.6), checked
against torch's results and, for the random fills, against the distributions' analytic moments."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

import optkern.clip as okclip
import optkern.init as okinit

torch = pytest.importorskip("torch")
okt = pytest.importorskip("optkern.torch.clip")

DTYPES = (np.float16, np.float32, np.float64)


# ---- trunc_normal_ ----------------------------------------------------------------------------


def _truncnorm_moments(mean, std, a, b):
    """Mean and std of N(mean, std^2) truncated to [a, b], in float64 (the textbook formulas)."""
    al, be = (a - mean) / std, (b - mean) / std
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))
    z = cdf(be) - cdf(al)
    d = (pdf(al) - pdf(be)) / z
    var = 1 + (al * pdf(al) - be * pdf(be)) / z - d * d
    return mean + std * d, std * math.sqrt(var)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "mean,std,a,b",
    [
        (0.0, 1.0, -2.0, 2.0),
        (0.5, 2.0, -1.0, 3.0),
        (0.0, 0.02, -0.04, 0.04),
        (0.0, 1.0, 3.0, 5.0),
        (1.0, 1.0, -6.0, -4.0),
    ],
)
def test_trunc_normal_within_bounds_and_moments(dtype, mean, std, a, b):
    w = np.empty((301, 333), dtype=dtype)
    with (
        np.errstate(all="ignore"),
        pytest.warns(UserWarning) if (mean < a - 2 * std or mean > b + 2 * std) else contextlib.nullcontext(),
    ):
        assert okinit.trunc_normal_(w, mean, std, a, b, rng=7) is w
    x = w.astype(np.float64).ravel()
    assert x.min() >= a and x.max() <= b
    want_mean, want_std = _truncnorm_moments(mean, std, a, b)
    n = x.size
    se_mean = x.std() / math.sqrt(n)
    dev = (x - x.mean()) ** 2
    se_var = dev.std() / math.sqrt(n)
    resolution = float(np.finfo(dtype).eps) * max(abs(a), abs(b))  # float16's rounding of the values
    assert abs(x.mean() - want_mean) <= 4 * se_mean + resolution
    assert abs(x.var() - want_std**2) <= 4 * se_var + 2 * want_std * resolution


def test_trunc_normal_seeded_zero_size_and_new():
    a, b = np.empty((17, 9), np.float32), np.empty((17, 9), np.float32)
    okinit.trunc_normal_(a, rng=3)
    okinit.trunc_normal_(b, rng=3)
    assert np.array_equal(a, b) and np.unique(a).size > 100
    e = np.empty((0, 4), np.float32)
    assert okinit.trunc_normal_(e, rng=0) is e
    c = okinit.trunc_normal((17, 9), rng=3)
    assert c.dtype == np.float32 and np.array_equal(c, a)


@pytest.mark.parametrize(
    "kw,exc,name",
    [
        (dict(std=0.0), ValueError, "std"),
        (dict(std=-1.0), ValueError, "std"),
        (dict(a=1.0, b=1.0), ValueError, "b"),
        (dict(a=2.0, b=-2.0), ValueError, "b"),
        (dict(mean=float("nan")), ValueError, "mean"),
        (dict(a="x"), TypeError, "a"),
        (dict(a=40.0, b=41.0), ValueError, "b"),  # no probability mass in float64
        (dict(a=1.00000001, b=1.00000002), ValueError, "b"),  # no float32 value in [a, b]
        (dict(rng=-1), ValueError, "rng"),
    ],
)
def test_trunc_normal_refuses_naming_argument(kw, exc, name):
    w = np.full((5, 3), 7.0, np.float32)
    with pytest.raises(exc, match=name):
        okinit.trunc_normal_(w, **kw)
    assert np.all(w == 7.0)


# ---- constant_, ones_, zeros_, eye_, dirac_ ---------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_ones_zeros(dtype):
    w = np.random.default_rng(0).standard_normal((4, 7)).astype(dtype)
    assert okinit.constant_(w, 0.3) is w and np.all(w == dtype(0.3))
    assert okinit.ones_(w) is w and np.all(w == 1)
    assert okinit.zeros_(w) is w and np.all(w == 0)
    e = np.empty((0, 3), dtype)
    assert okinit.constant_(e, 2.0) is e and okinit.ones_(e) is e


def test_constant_refuses_naming_val():
    w = np.full(4, 3.0, np.float16)
    with pytest.raises(ValueError, match="val"):
        okinit.constant_(w, 1e6)  # past float16's range
    with pytest.raises(TypeError, match="val"):
        okinit.constant_(w, "1")
    assert np.all(w == 3.0)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (1, 6), (0, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_eye_matches_torch(shape, dtype):
    w = np.full(shape, 5.0, dtype)
    assert okinit.eye_(w) is w
    want = torch.nn.init.eye_(torch.empty(shape, dtype=torch.float64)).numpy()
    assert np.array_equal(w, want.astype(dtype))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_eye_refuses_other_ranks(shape):
    w = np.full(shape, 5.0)
    with pytest.raises(ValueError, match="w"):
        okinit.eye_(w)
    assert np.all(w == 5.0)


@pytest.mark.parametrize(
    "shape,groups",
    [((6, 3, 3), 1), ((3, 6, 5), 1), ((6, 4, 3, 3), 2), ((6, 2, 3, 4), 3), ((4, 6, 3, 2, 5), 2), ((0, 2, 3), 1)],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dirac_matches_torch(shape, groups, dtype):
    w = np.full(shape, 5.0, dtype)
    assert okinit.dirac_(w, groups) is w
    want = torch.nn.init.dirac_(torch.empty(shape, dtype=torch.float64), groups).numpy()
    assert np.array_equal(w, want.astype(dtype))


@pytest.mark.parametrize(
    "shape,groups,exc,name",
    [((6, 3, 3), 4, ValueError, "groups"), ((6, 3, 3), 0, ValueError, "groups"), ((6, 3, 3), 1.0, TypeError, "groups"),
     ((6, 3), 1, ValueError, "w")],
)  # fmt: skip
def test_dirac_refuses_naming_argument(shape, groups, exc, name):
    w = np.full(shape, 5.0)
    with pytest.raises(exc, match=name):
        okinit.dirac_(w, groups)
    assert np.all(w == 5.0)


# ---- sparse_ ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(10, 7), (33, 50), (1, 4)])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.35, 0.5, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_zero_count_per_column_as_torch(shape, sparsity, dtype):
    w = np.empty(shape, dtype)
    assert okinit.sparse_(w, sparsity, std=0.5, rng=1) is w
    t = torch.nn.init.sparse_(torch.empty(shape, dtype=torch.float64), sparsity, std=0.5)
    want = (t == 0).sum(0).numpy()  # torch: ceil(sparsity * rows) per column
    assert np.array_equal((w == 0).sum(0), want)
    assert np.all(want == math.ceil(sparsity * shape[0]))


def test_sparse_values_and_positions_random_seeded():
    w = np.empty((200, 300), np.float64)
    okinit.sparse_(w, 0.25, std=0.1, rng=5)
    nz = w[w != 0]
    assert abs(nz.std() - 0.1) <= 4 * 0.1 / math.sqrt(2 * nz.size) and abs(nz.mean()) <= 4 * 0.1 / math.sqrt(nz.size)
    frac = (w == 0).mean(axis=1)  # each row zero in ~ a quarter of the columns: positions not fixed
    assert abs(frac.mean() - 0.25) < 1e-12 and frac.min() > 0.1 and frac.max() < 0.4
    v = okinit.sparse((200, 300), 0.25, std=0.1, dtype=np.float64, rng=5)
    assert np.array_equal(v, w)


@pytest.mark.parametrize(
    "shape,kw,exc,name",
    [((4, 3), dict(sparsity=1.5), ValueError, "sparsity"), ((4, 3), dict(sparsity=-0.1), ValueError, "sparsity"),
     ((4, 3), dict(sparsity="a"), TypeError, "sparsity"), ((4, 3), dict(sparsity=0.5, std=-1.0), ValueError, "std"),
     ((4, 3, 2), dict(sparsity=0.5), ValueError, "w")],
)  # fmt: skip
def test_sparse_refuses_naming_argument(shape, kw, exc, name):
    w = np.full(shape, 5.0)
    with pytest.raises(exc, match=name):
        okinit.sparse_(w, **kw)
    assert np.all(w == 5.0)


# ---- get_total_norm, clip_grads_with_norm_ ----------------------------------------------------

TDTYPES = (torch.float32, torch.float64)
ORDERS = (1.0, 2.0, math.inf, 3.0)


def _tensors(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(37, 5, generator=g, dtype=dtype),
        torch.randn(101, generator=g, dtype=dtype) * 3,
        torch.randn(1, generator=g, dtype=dtype),
    ]


@pytest.mark.parametrize("dtype", TDTYPES)
@pytest.mark.parametrize("p", ORDERS)
def test_get_total_norm_matches_torch(dtype, p):
    ts = _tensors(dtype)
    got, want = okt.get_total_norm(ts, p), torch.nn.utils.get_total_norm(ts, p)
    assert got.dtype == want.dtype and got.shape == () and got.device == want.device
    ref = float(np.linalg.norm(np.concatenate([t.double().numpy().ravel() for t in ts]), p))  # float64 reference
    tol = 2e-7 if dtype == torch.float32 else 1e-14
    assert abs(got.item() - ref) <= tol * ref and abs(got.item() - want.item()) <= 2 * tol * ref
    one = okt.get_total_norm(ts[1], p)
    assert abs(one.item() - torch.nn.utils.get_total_norm(ts[1], p).item()) <= tol * one.item()
    assert okt.get_total_norm([], p).item() == 0.0


@pytest.mark.parametrize("dtype", TDTYPES)
def test_get_total_norm_error_if_nonfinite_as_torch(dtype):
    ts = _tensors(dtype)
    ts[1][4] = math.nan
    with pytest.raises(RuntimeError):
        torch.nn.utils.get_total_norm(ts, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=r"tensors\[1\]"):
        okt.get_total_norm(ts, error_if_nonfinite=True)
    assert math.isnan(okt.get_total_norm(ts).item())


def _params(dtype, seed):
    ps = [torch.nn.Parameter(t) for t in _tensors(dtype, seed)]
    for p, g in zip(ps, _tensors(dtype, seed + 1)):
        p.grad = g
    return ps


@pytest.mark.parametrize("dtype", TDTYPES)
@pytest.mark.parametrize("p", ORDERS)
@pytest.mark.parametrize("max_norm", [0.5, 1e6, math.inf, 0.0])
def test_clip_grads_with_norm_matches_torch_bitwise(dtype, p, max_norm):
    ours, theirs = _params(dtype, 3), _params(dtype, 3)
    total = torch.nn.utils.get_total_norm([q.grad for q in theirs], p)
    before = [q.grad.clone() for q in ours]
    assert okt.clip_grads_with_norm_(ours, max_norm, total) is None
    torch.nn.utils.clip_grads_with_norm_(theirs, max_norm, total)
    for a, b, g in zip(ours, theirs, before):
        assert torch.equal(a.grad, b.grad)
        coef = min(1.0, max_norm / (total.item() + 1e-6))  # float64 reference of the factor
        assert torch.allclose(a.grad.double(), g.double() * coef, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", TDTYPES)
def test_get_total_norm_then_clip_equals_clip_grad_norm(dtype):
    a, b = _params(dtype, 9), _params(dtype, 9)
    total = okt.get_total_norm([q.grad for q in a], 2.0)
    okt.clip_grads_with_norm_(a, 1.0, total)
    want = okt.clip_grad_norm_(b, 1.0, 2.0)
    assert torch.equal(total, want) and all(torch.equal(x.grad, y.grad) for x, y in zip(a, b))


def test_clip_grads_with_norm_infinite_norm_as_torch():
    ours, theirs = _params(torch.float32, 4), _params(torch.float32, 4)
    inf = torch.tensor(math.inf)
    okt.clip_grads_with_norm_(ours, math.inf, inf)
    torch.nn.utils.clip_grads_with_norm_(theirs, math.inf, inf)
    assert all(torch.isnan(q.grad).all() for q in ours) and all(torch.isnan(q.grad).all() for q in theirs)


@pytest.mark.parametrize(
    "max_norm,total,exc,name",
    [(-1.0, torch.tensor(3.0), ValueError, "max_norm"), (float("nan"), torch.tensor(3.0), ValueError, "max_norm"),
     ("1", torch.tensor(3.0), TypeError, "max_norm"), (1.0, 3.0, TypeError, "total_norm"),
     (1.0, torch.ones(2), ValueError, "total_norm")],
)  # fmt: skip
def test_clip_grads_with_norm_refuses_naming_argument(max_norm, total, exc, name):
    ps = _params(torch.float32, 5)
    before = [q.grad.clone() for q in ps]
    with pytest.raises(exc, match=name):
        okt.clip_grads_with_norm_(ps, max_norm, total)
    assert all(torch.equal(q.grad, g) for q, g in zip(ps, before))


def test_numpy_get_total_norm_and_clip_grads_with_norm():
    rng = np.random.default_rng(2)
    gs = [rng.standard_normal(n).astype(np.float32) for n in (13, 1000, 7)]
    hs = [g.copy() for g in gs]
    for p in ORDERS:
        ref = float(np.linalg.norm(np.concatenate(gs).astype(np.float64), p))
        assert abs(okclip.get_total_norm(gs, p) - ref) <= 1e-12 * ref
    total = okclip.get_total_norm(gs)
    okclip.clip_grads_with_norm_(gs, 1.0, total)
    assert okclip.clip_grad_norm_(hs, 1.0) == total
    assert all(np.array_equal(g, h) for g, h in zip(gs, hs))
    with pytest.raises(TypeError, match="total_norm"):
        okclip.clip_grads_with_norm_(gs, 1.0, np.ones(2))


def test_numpy_clip_grads_with_norm_without_grads():
    okclip.clip_grads_with_norm_([], 1.0, np.ones(1))  # nothing to clip: torch returns too
    okclip.clip_grads_with_norm_([None], 1.0, 3.0)
    with pytest.raises(TypeError, match="total_norm"):
        okclip.clip_grads_with_norm_([], 1.0, None)  # (was an AttributeError)
    with pytest.raises(ValueError, match="max_norm"):
        okclip.clip_grads_with_norm_([], -1.0, 3.0)


@pytest.mark.parametrize("kw", [dict(norm_type=7.0), dict(error_if_nonfinite=True), dict(norm_type=2.0)])
def test_get_total_norm_only_reads(kw):
    """The norm writes no array: read-only or overlapping ones are measured (they were refused
    with p > 6 or error_if_nonfinite, the paths that ran the writing checks of clip_grad_norm_)."""
    a = np.arange(1.0, 6.0)
    a.flags.writeable = False
    p = kw.get("norm_type", 2.0)
    assert abs(okclip.get_total_norm([a], **kw) - float(np.sum(a**p) ** (1 / p))) <= 1e-14 * 5
    x = torch.randn(8, dtype=torch.float64)
    got, want = okt.get_total_norm([x, x[2:5]], **kw), torch.nn.utils.get_total_norm([x, x[2:5]], **kw)
    assert abs(got.item() - want.item()) <= 1e-14 * want.item()
