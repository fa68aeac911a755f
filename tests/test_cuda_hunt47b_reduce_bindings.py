"""CUDA twin of test_hunt47b_reduce_bindings.py (47th hunt, b): the GPU module's grad_norm* /
clip_scale_ / precheck_step_ / penalty_value, bound by the same declarations
(signatures_reduce.hpp), refuse what the CPU's refuse, with the same messages, before writing.
Skipped without CuPy / a device; runs on the CPU under tools/cuda_emu."""

import math

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()


@pytest.mark.parametrize("param", [None, [1.0, 2.0, 3.0], np.zeros(3, np.float32)], ids=["none", "list", "numpy"])
def test_precheck_step_param_not_a_cupy_array_is_a_type_error(param):
    # (the shape was read from the param: a missing attribute was an AttributeError, a NumPy param
    # passed; now the CPU's TypeError in the device's words)
    g = cp.ones(3, dtype=cp.float32)
    with pytest.raises(TypeError, match=r"^grads\[0\]: its param is not a cupy.ndarray \(got [\w.]+\)$"):
        K.precheck_step_([(np.dtype(np.float32), [], [], [g], [param], ["grads[0]"])])


@pytest.mark.parametrize("max_norm", [-1.0, math.nan, -math.inf])
def test_clip_scale_refuses_a_negative_or_nan_max_norm_before_writing(max_norm):
    a = cp.asarray(np.array([3.0, -4.0, 0.5], np.float32))
    with pytest.raises(ValueError, match=r"^max_norm: must be >= 0 or inf, got "):
        K.clip_scale_([a], max_norm, cp.full(1, 2.0))
    assert np.array_equal(cp.asnumpy(a), [3.0, -4.0, 0.5])


def test_clip_scale_inf_max_norm_is_a_no_op():
    a = cp.asarray(np.array([3.0, -4.0, 0.5], np.float32))
    K.clip_scale_([a], math.inf, cp.full(1, 2.0))
    assert np.array_equal(cp.asnumpy(a), [3.0, -4.0, 0.5])


def test_grad_norm_refuses_p_past_its_sum_range():
    x, out = cp.asarray([1.99, 1.99, 1.0]), cp.full(1, 7.0)
    for f in (lambda: K.grad_norm([x], 1100.0, out), lambda: K.grad_norm_parts([x], 1100.0, out)):
        with pytest.raises(ValueError, match=r"^norm_type: must be at most 960 or inf here"):
            f()
    with pytest.raises(ValueError, match=r"^norm_type: must be at most 960 or inf here"):
        K.grad_norm_finish(cp.ones(1), 1100.0, out)
    assert float(out[0]) == 7.0
    K.grad_norm([x], 960.0, out)  # (the bound itself: the norm, finite)
    want = np.zeros(1)
    from optkern import _cpu

    _cpu.grad_norm([cp.asnumpy(x)], 960.0, want)
    assert math.isfinite(float(out[0])) and float(out[0]) == pytest.approx(want[0], rel=1e-14)


def test_penalty_value_without_out_is_refused_naming_it():
    # (out now defaults to None in the one declaration, as on the CPU; the GPU keeps the value on
    # the device, so it needs one)
    with pytest.raises(ValueError, match=r"^out: "):
        K.penalty_value([cp.ones(3)], 0.5, 0.5)
