"""One wording for one error on both native modules (CPU side; the CUDA module's agreement:
tests/test_cuda_hunt33_wording.py). A hessian.cg vector is named as passed, its shape compared
whole; a buffer of the wrong size reads "expected 1 element, got 2" wherever it is checked
(grad_norm and sam_perturb_ said "expected a 1-element float64 array, got 2 elements", the step
counters and found_inf "expected 1 elements")."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _cpu

# (call over the module `m` and array constructor `a`, error type, message): the same cases run
# on the CUDA module in tests/test_cuda_hunt33_wording.py
CG_CASES = {
    "y None": (lambda m, a: m.cg_curvature(a(3), None, 0.0), TypeError, "y: expected an array, got None"),
    "y 2-D": (
        lambda m, a: m.cg_curvature(a(3), a(3).reshape(3, 1), 0.0),
        ValueError,
        "y: expected shape (3,), got (3, 1)",
    ),
    "y short": (
        lambda m, a: m.cg_update_(a(3), a(3), a(3), a(2), 1.0, 0.0),
        ValueError,
        "y: expected shape (3,), got (2,)",
    ),
    "z dtype": (
        lambda m, a: m.cg_direction_(a(3), a(3).astype(np.float32), 1.0),
        TypeError,
        "z: expected float64, got float32",
    ),
    "p 2-D first": (lambda m, a: m.cg_direction_(a(3).reshape(1, 3), a(3), 1.0), ValueError, "p: expected a 1-D array"),
}

BUFFER_CASES = {
    "grad_norm": (lambda m, a: m.grad_norm([a(3)], 2.0, a(2)), ValueError, "out: expected 1 element, got 2"),
    "grad_sq_norm": (lambda m, a: m.grad_sq_norm([a(3)], a(2)), ValueError, "out: expected 1 element, got 2"),
    "all_finite": (lambda m, a: m.all_finite([a(3)], a(2)), ValueError, "out: expected 1 element, got 2"),
    "sam_perturb_": (
        lambda m, a: m.sam_perturb_([a(3)], [a(3)], [a(3)], 0.05, 1e-12, a(2)),
        ValueError,
        "out: expected 1 element, got 2",
    ),
    "penalty_value": (
        lambda m, a: m.penalty_value([a(3)], 0.1, 0.1, a(2)),
        ValueError,
        "out: expected 1 element, got 2",
    ),
    "penalty_grad_": (
        lambda m, a: m.penalty_grad_([a(3)], [a(3)], 0.1, 0.1, a(2)),
        ValueError,
        "out: expected 1 element, got 2",
    ),
    "list item": (
        lambda m, a: m.penalty_grad_([a(3), a(4)], [a(3), a(3)], 0.1, 0.1),
        ValueError,
        "grads[1]: expected 4 elements, got 3",
    ),
}


def host(n):
    return np.linspace(0.5, 1.5, n)


@pytest.mark.parametrize("case", sorted({**CG_CASES, **BUFFER_CASES}))
def test_cpu_message(case):
    call, exc, message = {**CG_CASES, **BUFFER_CASES}[case]
    with pytest.raises(exc) as e:
        call(_cpu, host)
    assert str(e.value) == message


def test_found_inf_size_reads_as_the_others():
    f = np.zeros(2, np.float32)
    with pytest.raises(ValueError) as e:
        _cpu.amp_unscale_([np.ones(3, np.float32)], np.ones(1, np.float32), f)
    assert str(e.value) == "found_inf: expected 1 element, got 2"
