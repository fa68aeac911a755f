"""SAM around an optimizer whose groups held no params when SAM was made.

``SAM(SGD([{"params": []}]))`` is a valid construction (torch.optim takes an empty group, and so does
optkern's Optimizer); the params come later through ``base.add_param_group``. SAM read its dtype from
the params it saw at construction, none: every later step raised a bare IndexError (``param_groups[0]
['params'][0]``) from its parameter check, and a step over no params at all did too.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O


def _quadratic(a, p):
    """closure of f(w) = sum(a w^2) / 2 at the current ``p``: (loss, [a w])."""
    return lambda: (float(0.5 * np.sum(a * p * p)), [a * p])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 1023])
def test_sam_steps_params_added_to_an_empty_base(dtype, n):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(dtype)
    a = rng.uniform(0.5, 2.0, n).astype(dtype)
    base = O.SGD([{"params": []}], lr=0.1)
    sam = O.SAM(base, rho=0.3)
    p = w.copy()
    base.add_param_group({"params": [p]})
    loss = sam.step(_quadratic(a, p))
    # float64 reference of the two-step update (SAM's eps = 1e-12)
    w64, a64 = w.astype(np.float64), a.astype(np.float64)
    g = a64 * w64
    asc = w64 + 0.3 * g / (np.linalg.norm(g) + 1e-12)
    want = w64 - 0.1 * (a64 * asc)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(p, want, **tol)
    assert loss == pytest.approx(0.5 * np.sum(a64 * w64 * w64), rel=1e-5)
    assert sam.grad_norm == pytest.approx(np.linalg.norm(g), rel=1e-5)


def test_sam_over_no_params_steps_nothing():
    sam = O.SAM(O.SGD([{"params": []}], lr=0.1), rho=0.5)
    calls = []

    def closure():
        calls.append(1)
        return 2.5, []

    assert sam.step(closure) == 2.5
    assert sam.grad_norm == 0.0
    sam.first_step([])
    sam.second_step([])  # (back at w: nothing moved; the base's step over no params)
    assert sam.state_dict()["rho"] == 0.5


def test_sam_refuses_a_half_param_added_later_naming_it_before_the_closure():
    base = O.SGD([{"params": []}], lr=0.1, master_weights=True)  # (its half params' float32 master)
    sam = O.SAM(base)
    base.add_param_group({"params": [np.ones(3, np.float16)]})
    calls = []

    def closure():
        calls.append(1)
        return 1.0, [np.ones(3, np.float16)]

    with pytest.raises(TypeError, match=r"^param_groups\[1\]\['params'\]\[0\]: .*float32 or float64"):
        sam.step(closure)
    assert calls == []


def test_sam_takes_the_dtype_of_the_first_param_added():
    base = O.SGD([{"params": []}], lr=0.1)
    sam = O.SAM(base)
    p32, p64 = np.ones(3, np.float32), np.ones(2)
    base.add_param_group({"params": [p32]})
    base.add_param_group({"params": [p64]})  # (SGD checks per group; SAM needs one dtype)
    with pytest.raises(TypeError, match=r"^param_groups\[2\]\['params'\]\[0\]: expected float32, got float64"):
        sam.step(lambda: (1.0, [np.ones(3, np.float32), np.ones(2)]))
    assert np.array_equal(p32, np.ones(3, np.float32)) and np.array_equal(p64, np.ones(2))
