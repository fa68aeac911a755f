"""optkern.torch.clip_grad_norm_ / clip_grad_value_ as drop-ins where torch users lean on them:
``max_norm=inf`` to measure the norm, orders below 1, ``clip_value=inf``."""

import math

import numpy as np
import pytest

import optkern

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")


def params(values, dtype=torch.float32):
    out = []
    for v in values:
        p = torch.nn.Parameter(torch.zeros(len(v), dtype=dtype))
        p.grad = torch.tensor(v, dtype=dtype)
        out.append(p)
    return out


def grads_of(ps):
    return [p.grad.clone() for p in ps]


def assert_same(ours, ref):
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0, equal_nan=True)


VALUES = [[3.0, -4.0, 0.5], [1.5, 0.0], [-2.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "values",
    [VALUES, [[0.0, 0.0]], [[1.0, math.inf], [2.0]], [[1.0, math.nan]], [[1e-30, -1e-30]]],
    ids=["finite", "zero", "inf", "nan", "tiny"],
)
def test_max_norm_inf_measures_without_clipping_like_torch(values, dtype):
    # clip_grad_norm_(ps, float("inf")) is torch's idiom for logging the grad norm: it was a
    # ValueError ("max_norm: must be finite"). Finite norms leave the grads as they are; an infinite
    # one makes them NaN (inf / inf), as torch does.
    ours, ref = params(values, dtype), params(values, dtype)
    got = ot.clip_grad_norm_(ours, math.inf)
    want = torch.nn.utils.clip_grad_norm_(ref, math.inf)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, equal_nan=True)
    assert_same(ours, ref)


def test_max_norm_inf_with_error_if_nonfinite_raises_and_writes_nothing():
    ours = params([[1.0, math.inf]])
    before = grads_of(ours)
    with pytest.raises(RuntimeError, match=r"parameters\[0\]\.grad: contains non-finite values"):
        ot.clip_grad_norm_(ours, math.inf, error_if_nonfinite=True)
    assert torch.equal(ours[0].grad, before[0])


@pytest.mark.parametrize("norm_type", [0.5, 0.0, 0, -math.inf, -1.0])
def test_orders_below_one_run_like_torch(norm_type):
    # torch takes any vector_norm order; the drop-in refused these ("must be >= 1 or inf")
    ours, ref = params(VALUES), params(VALUES)
    got = ot.clip_grad_norm_(ours, 1.0, norm_type)
    want = torch.nn.utils.clip_grad_norm_(ref, 1.0, norm_type)
    torch.testing.assert_close(got, want)
    assert_same(ours, ref)


def test_nan_order_is_still_refused_before_any_write():
    ours = params(VALUES)
    before = grads_of(ours)
    with pytest.raises(ValueError, match="norm_type"):
        ot.clip_grad_norm_(ours, 1.0, math.nan)
    for p, b in zip(ours, before):
        assert torch.equal(p.grad, b)


def test_numpy_api_keeps_its_contract():
    # optkern.clip_grad_norm_ (NumPy) still refuses an infinite max_norm and orders below 1
    with pytest.raises(ValueError, match="max_norm: must be finite"):
        optkern.clip_grad_norm_([np.ones(3)], math.inf)
    with pytest.raises(ValueError, match="norm_type: must be >= 1 or inf"):
        optkern.clip_grad_norm_([np.ones(3)], 1.0, 0.5)


@pytest.mark.parametrize("values", [VALUES, [[math.nan, math.inf, -math.inf]]], ids=["finite", "nonfinite"])
def test_clip_value_inf_is_a_no_op_like_torch(values):
    ours, ref = params(values), params(values)
    ot.clip_grad_value_(ours, math.inf)
    torch.nn.utils.clip_grad_value_(ref, math.inf)
    assert_same(ours, ref)


def test_clip_value_inf_still_checks_the_grads():
    p = torch.nn.Parameter(torch.zeros(4, 2))
    p.grad = torch.ones(4, 4)[:, :2]  # gaps between rows: refused whatever clip_value is
    with pytest.raises(ValueError, match=r"parameters\[0\].grad"):
        ot.clip_grad_value_([p], math.inf)
