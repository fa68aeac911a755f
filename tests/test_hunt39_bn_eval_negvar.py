"""Eval-mode batch norm with a negative running_var: NaN in that channel, as torch gives, and no
NumPy warning (the suite runs under -W error, where the warning was an exception)."""

import warnings

import numpy as np
import pytest

import optkern.norm as N


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [-1.0, -1e-3])
def test_negative_running_var_gives_nan_without_warning(dtype, bad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(dtype)
    rm = rng.standard_normal(3).astype(dtype)
    rv = np.array([1.5, bad, 0.25], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = N.batch_norm(x, running_mean=rm, running_var=rv, training=False)[0]
    assert np.isnan(y[:, 1]).all()
    good = [0, 2]
    ref = (x[:, good].astype(np.float64) - rm[good]) / np.sqrt(rv[good].astype(np.float64) + 1e-5)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y[:, good], ref, rtol=tol, atol=tol)
