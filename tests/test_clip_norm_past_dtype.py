"""clip_grad_norm_ with float32 gradients whose total norm is finite in float64 but past float32's
largest value: the factor is taken in float64 and rounded once (rules::clip_coef), so the gradients
come out clipped to max_norm. torch rounds the norm to float32 first (inf) and zeroes them."""

import numpy as np
import pytest

import optkern

F32_MAX = float(np.finfo(np.float32).max)


def _reference(grads, max_norm):
    """float64 clipping: every array times min(1, max_norm / (norm + 1e-6)), norm in float64."""
    norm = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads)))
    coef = min(1.0, max_norm / (norm + 1e-6))
    return norm, [g.astype(np.float64) * coef for g in grads]


@pytest.mark.parametrize("values", [[3e38] * 4, [F32_MAX, -F32_MAX], [2e38, 1.0, -3e38, 0.0, 5e37]])
@pytest.mark.parametrize("max_norm", [1.0, 0.25, 1e30])
def test_float32_norm_past_float32_max_is_clipped_not_zeroed(values, max_norm):
    grads = [np.array(values, np.float32), np.array(values[::-1], np.float32)]
    norm_ref, want = _reference(grads, max_norm)
    assert norm_ref > F32_MAX  # the case: finite in float64, inf once rounded to float32
    norm = optkern.clip_grad_norm_(grads, max_norm)
    assert norm == pytest.approx(norm_ref, rel=1e-15)
    for g, w in zip(grads, want):
        assert g.dtype == np.float32
        # the factor is subnormal-or-tiny in float32 for max_norm ~ 1: a few ulp of the factor's
        # own rounding, relative to the largest entry
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-6 * max(np.abs(w).max(), 1e-30))
    total = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads)))
    assert total == pytest.approx(min(max_norm, norm_ref), rel=1e-5)


def test_float32_norm_inf_still_nan_and_zero_as_torch():
    """A norm that is inf in float64 too keeps torch's result: finite grads zeroed, inf ones NaN."""
    g = [np.array([np.inf, 1.0, -2.0], np.float32)]
    assert optkern.clip_grad_norm_(g, 1.0) == np.inf
    assert np.isnan(g[0][0]) and g[0][1] == 0 and g[0][2] == 0


def test_float64_unchanged_near_its_max():
    g = [np.array([1e308, 1e308], np.float64)]
    assert optkern.clip_grad_norm_(g, 1.0) == np.inf  # the float64 norm overflows itself
