"""Hunt 47b: the reductions and gradient transforms whose bindings now live once, in
cpp/include/optkern/signatures_reduce.hpp (grad_norm*, clip_scale_, precheck_step_), fed bad input.

- precheck_step_ read a grad's param as a NumPy array header without asking whether it was one: a
  param that was None, a list or a string crashed the interpreter (a segfault).
- clip_scale_ took any max_norm: a negative one flipped every array's sign (an ascent step), a NaN
  one made NaN arrays, silently.
- the CPU module's list_dtype held the list's first item as a bare handle: where the lookup makes
  the item (a 2-D array passed as the list, whose rows are new views; any sequence that builds its
  items), it was freed before being read -- grad_norm, clamp_, all_finite, penalty_value, ... crashed.
  (regularize.cpp had its own copy of list_dtype, with the same fault: now the one in multi_tensor.hpp.)
- grad_norm / grad_norm_parts took any finite p >= 1, but their terms |x 2^-e|^p (each below 2^p)
  overflow for p past ~1000: grad_norm([1.99] * 3, p=1100) was inf, not ~1.992. The public
  clip_grad_norm_ / get_total_norm take such p themselves (scaled by max |g|) and still do.
"""

import decimal
import math

import numpy as np
import pytest

from optkern import _cpu, clip

X32 = np.array([3.0, -4.0, 0.5, 0.0, 1e-3], np.float32)


@pytest.mark.parametrize("param", [None, [1.0, 2.0, 3.0], "abc", 5], ids=["none", "list", "str", "int"])
def test_precheck_step_param_not_an_array_is_a_type_error(param):
    g = np.ones(3, np.float32)
    with pytest.raises(TypeError, match=r"^grads\[0\]: its param is not a numpy.ndarray \(got [\w.]+\)$"):
        _cpu.precheck_step_([(np.dtype(np.float32), [], [], [g], [param], ["grads[0]"])])


class _MadeItems:
    """A sequence whose items are made by each lookup (as a 2-D array's rows are)."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        if not 0 <= i < len(self.rows):
            raise IndexError(i)
        return self.rows[i][:]  # a new view each time, owned by the caller alone


# (a bare 2-D array, the other list making its items, is refused now, as the CUDA module refused it:
# test_hunt47m_native_lists.py)
@pytest.mark.parametrize("as_list", [_MadeItems], ids=["made-items"])
def test_list_whose_items_are_made_on_lookup(as_list):
    a = np.arange(-6.0, 6.0).reshape(3, 4)
    out = np.zeros(1)
    assert _cpu.grad_norm(as_list(a), 2.0, out) == np.sqrt(np.sum(a * a))
    assert _cpu.grad_sq_norm(as_list(a), out) == np.sum(a * a)
    assert _cpu.penalty_value(as_list(a), 1.0, 0.0) == np.sum(np.abs(a))
    _cpu.all_finite(as_list(a), out)
    assert out[0] == 1.0
    _cpu.clamp_(as_list(a), 2.0)
    assert np.array_equal(a, np.clip(np.arange(-6.0, 6.0), -2.0, 2.0).reshape(3, 4))


def test_precheck_step_still_checks_the_grad_against_an_array_param():
    g, p = np.ones(3, np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"^grads\[0\]: expected shape \(4,\), got \(3,\)$"):
        _cpu.precheck_step_([(np.dtype(np.float32), [], [], [g], [p], ["grads[0]"])])
    _cpu.precheck_step_([(np.dtype(np.float32), [], [], [g], [p[:3]], ["grads[0]"])])  # (a fit passes)


@pytest.mark.parametrize("max_norm", [-1.0, -0.5e-300, math.nan, -math.inf])
def test_clip_scale_refuses_a_negative_or_nan_max_norm_before_writing(max_norm):
    a = X32.copy()
    with pytest.raises(ValueError, match=r"^max_norm: must be >= 0 or inf, got "):
        _cpu.clip_scale_([a], max_norm, np.array([2.0]))
    assert np.array_equal(a, X32)


@pytest.mark.parametrize(("max_norm", "factor"), [(math.inf, 1.0), (1e30, 1.0), (0.0, 0.0)])
def test_clip_scale_takes_max_norm_zero_to_inf(max_norm, factor):
    a = X32.copy()
    _cpu.clip_scale_([a], max_norm, np.array([2.0]))
    assert np.array_equal(a, X32 * np.float32(factor))


def _norm_ref(x: np.ndarray, p: float) -> float:
    """(sum |x|^p)^(1/p) in 60 digits."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        dp = decimal.Decimal(p)
        s = sum((abs(decimal.Decimal(float(v))) ** dp for v in x), decimal.Decimal(0))
        return float(s ** (decimal.Decimal(1) / dp))


@pytest.mark.parametrize("p", [1100.0, 1e5, 1e308])
def test_grad_norm_refuses_p_past_its_sum_range(p):
    out = np.full(1, 7.0)
    x = np.array([1.99, 1.99, 1.0])
    with pytest.raises(ValueError, match=r"^norm_type: must be at most 960 or inf here"):
        _cpu.grad_norm([x], p, out)
    with pytest.raises(ValueError, match=r"^norm_type: must be at most 960 or inf here"):
        _cpu.grad_norm_parts([x], p, out)
    with pytest.raises(ValueError, match=r"^norm_type: must be at most 960 or inf here"):
        _cpu.grad_norm_finish(np.ones(1), p, out)
    assert out[0] == 7.0
    # the public norm takes such p itself (scaled by max |g|): the norm, not inf
    want = 1.99 if p > 1e6 else _norm_ref(x, p)  # (2^(1/p) is 1 to the last bit at p = 1e308)
    assert clip.get_total_norm([x], p) == pytest.approx(want, rel=1e-13)


@pytest.mark.parametrize("p", [7.0, 100.0, 960.0])
def test_grad_norm_up_to_the_bound_is_the_norm(p):
    x = np.array([1.99, -1.99, 1.0, 2.0**-600])
    got = _cpu.grad_norm([x], p, np.zeros(1))
    assert math.isfinite(got) and got == pytest.approx(_norm_ref(x, p), rel=1e-13)
