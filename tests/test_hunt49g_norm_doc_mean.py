"""optkern.norm's module docstring on the saved mean and the mean's low part, held to what the kernels do.

It said that batch norm and the layer-norm R-operator of optkern.nn "still normalize around the
rounded mean", after both had moved to the exact one (training-mode batch norm: channel_stats' low
parts; the R-operator: rop::Norm::lo), and that the saved mean is "the exact mean rounded to its
dtype" for every input, which float64 rows whose values cancel do not get (their mean comes from
sums in double: within an ulp of the row's largest |x|, hundreds of ulps of the mean itself)."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np

from optkern import norm
from optkern.nn import normalization as nz


def _doc() -> str:
    return " ".join(norm.__doc__.split())


def _rounded_mean_sentence() -> str:
    # (the sentence since the 55th's eval fold: "Batch and instance norm's eval modes ... keep ... around
    # the rounded mean.")
    m = re.search(r"\. ([A-Z][^.]*) around the rounded mean\.", _doc())
    assert m, "the docstring no longer says which normalizations keep the rounded mean"
    return m.group(1)


def _ulps_off_float64(y, ref):
    """max |y - ref| in ulps of ref's largest magnitude, float32."""
    return float(np.abs(y.astype(np.float64) - ref).max() / np.spacing(np.float32(np.abs(ref).max())))


def test_batch_norm_training_is_not_listed_and_keeps_the_exact_mean():
    listed = _rounded_mean_sentence()
    assert "eval" in listed  # (eval modes normalize with the running statistics as given)
    assert not re.match(r"\s*Batch norm\s*,", listed), listed  # training mode subtracts the low part
    rng = np.random.default_rng(0)
    x = (1e7 + rng.standard_normal((64, 3, 17))).astype(np.float32)
    y, _ = norm.batch_norm(x)
    x6 = x.astype(np.float64)
    ref = (x6 - x6.mean((0, 2), keepdims=True)) / np.sqrt(x6.var((0, 2), keepdims=True) + 1e-5)
    # around the rounded mean (ulp 1 at 1e7) y was up to 0.5 * rstd off: ~2**21 ulps of y's max
    assert _ulps_off_float64(y, ref) < 4


def test_the_layer_norm_r_operator_is_not_listed_and_keeps_the_exact_mean():
    assert "R-operator" not in _rounded_mean_sentence()
    rng = np.random.default_rng(1)
    h = (1e7 + rng.standard_normal((16, 33))).astype(np.float32)
    rh = rng.standard_normal((16, 33)).astype(np.float32)
    one, zero = np.ones(33, np.float32), np.zeros(33, np.float32)
    _, saved = nz.norm_forward(h, one, zero, 1e-5, 1)
    ry, _ = nz.norm_rop_forward(rh, one, zero, zero, saved, 1)
    h6 = h.astype(np.float64)
    _, (xhat, rstd) = nz._generic_forward(h6, 1.0, 0.0, 1e-5, 1)
    ref, _ = nz.norm_rop_forward(rh.astype(np.float64), 1.0, 0.0, 0.0, nz.Saved(h6, None, xhat, rstd, 1), 1)
    assert _ulps_off_float64(ry, ref) < 4


def _exact(row) -> Fraction:
    return sum(map(Fraction, row.astype(np.float64).tolist())) / row.size


def test_saved_mean_as_documented_float32_exact_float64_within_an_ulp_of_the_largest_value():
    doc = _doc()
    assert "The saved ``mean`` is the exact mean rounded to its dtype." not in doc  # (not for float64)
    assert "float64" in doc.split("The saved ``mean``", 1)[1].split(".)", 1)[0]
    rng = np.random.default_rng(2)
    scales = rng.choice([1e-30, 1.0, 1e30], size=(12, 1))
    x32 = (rng.standard_normal((12, 101)) * scales).astype(np.float32)
    _, s = norm.layer_norm(x32, 101)
    for i in range(12):  # float32: the exact mean, rounded once (checked against its two neighbours)
        q = _exact(x32[i])
        m = np.float32(s.mean[i])
        near = [np.nextafter(m, np.float32(-np.inf)), np.nextafter(m, np.float32(np.inf))]
        assert all(abs(Fraction(float(m)) - q) <= abs(Fraction(float(n)) - q) for n in near)
    x64 = rng.standard_normal((12, 1001)) * scales
    _, s = norm.layer_norm(x64, 1001)
    worst_x = worst_mean = 0.0
    for i in range(12):
        q = _exact(x64[i])
        err = float(abs(Fraction(float(s.mean[i])) - q))
        worst_x = max(worst_x, err / float(np.spacing(np.abs(x64[i]).max())))
        worst_mean = max(worst_mean, err / float(np.spacing(abs(float(q)))))
    assert worst_x <= 1.0
    assert worst_mean > 1.0  # (what the docstring now says: not the mean's own rounding)
