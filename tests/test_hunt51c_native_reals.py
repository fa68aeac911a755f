"""Native real arguments still off the shared checks (hunt 51c).

* ``lowp_step``'s ``scalars`` were a ``list[float]`` (pybind11's list caster): a str or None in it
  gave the unnamed "incompatible function arguments" TypeError, a bool ran as 1.0, and its values
  were checked against their ranges only, not against float32 (the dtype its rules compute in:
  ``lr=1e10`` and ``eps=1e-50``, refused by ``adam_`` on float32 arrays, ran and wrote NaN).
* ``lr_buffer`` (capturable steps' lr, read where the arrays are): its value replaced the checked
  lr unchecked on the CPU -- NaN, inf or a negative lr stepped every param.
* ``float32_lr=True`` (optkern.torch's float32 tensor lr) with float64 params: the lr is rounded
  to float32 (and, AdamW's decay ``1 - lr wd``, multiplied there by weight_decay rounded to
  float32), but was checked as a float64 value: lr = 1e39 rounded to inf and wrote NaN.
* A capturable CPU step's ``counters``: the step they make (``counters[0] + 1``) and NAdam's
  ``mu_product`` were read unchecked -- ``[NaN]`` wrote NaN into every param, ``[-1]`` (step 0)
  divided by a zero bias correction.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest

from optkern import _cpu
from test_hunt49c_native_args import _lowp_sgd_call
from test_hunt49c_native_hyper import FUNCTIONAL, native_kwargs


def _arrays_of(kw: dict) -> list:
    return [a for v in kw.values() for a in (v if isinstance(v, list) else [v]) if isinstance(a, np.ndarray)]


def _lowp_call(rule: str, scalars: list, flags: list) -> dict:
    kw = _lowp_sgd_call() | dict(rule=rule, scalars=scalars, flags=flags)
    p = kw["params"][0]
    n_states = {"sgd": 0, "adam": 2, "nadam": 2, "adagrad": 1, "adadelta": 2, "rmsprop": 1}[rule]
    kw["states"] = [[np.zeros_like(p)] for _ in range(n_states)]
    return kw


def _refused_unchanged(fn, kw: dict, error, message: str) -> None:
    before = [a.copy() for a in _arrays_of(kw)]
    with pytest.raises(error, match=message):
        fn(**kw)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, _arrays_of(kw)))


ADAM = [1e-3, 0.9, 0.999, 1e-8, 0.0]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ("x", TypeError, r"^scalars\[3\] \(eps\): expected a real number, got str$"),
        (None, TypeError, r"^scalars\[3\] \(eps\): expected a real number, got NoneType$"),
        (True, TypeError, r"^scalars\[3\] \(eps\): expected a real number, got bool$"),
        (np.bool_(True), TypeError, r"^scalars\[3\] \(eps\): expected a real number, got bool$"),
        (10**400, ValueError, r"^scalars\[3\] \(eps\): must be finite, got an integer beyond float range$"),
    ],
)
def test_lowp_step_scalars_are_converted_by_name(bad, error, message):
    kw = _lowp_call("adam", ADAM[:3] + [bad] + ADAM[4:], [False, False, False])
    _refused_unchanged(_cpu.lowp_step, kw, error, message)


def test_lowp_step_scalars_take_what_the_fp32_steps_take():
    """NumPy scalars, ints and -0.0 run as the fp32 step runs them (the same bits)."""
    for scalars in ([np.float32(1e-3), np.float64(0.9), 0.999, np.float16(1e-3), -0.0], [1, 0, 0, 1, 0]):
        kw = _lowp_call("adam", scalars, [False, False, False])
        ref = copy.deepcopy(kw)
        _cpu.lowp_step(**kw)
        hyper = [float(x) for x in scalars]
        _cpu.adam_(ref["params"], ref["grads"], *ref["states"], None, *hyper, False, False, False, 1.0)
        assert np.array_equal(kw["params"][0], ref["params"][0])


@pytest.mark.parametrize(
    ("rule", "scalars", "message"),
    [
        ("adam", [1e10, 0.9, 0.999, 1e-8, 0.0], r"^scalars\[0\] \(lr\): 10000000000\.0 is above 4\.295e\+09 "),
        ("adam", [1e-3, 0.9, 0.999, 1e-50, 0.0], r"^scalars\[3\] \(eps\): 1e-50 rounds to 0 in float32 "),
        ("adagrad", [1e-2, 0.0, 0.0, 1e-50], r"^scalars\[3\] \(eps\): 1e-50 rounds to 0 in float32 "),
        ("sgd", [0.1, 1e39, 0.0, 0.0], r"^scalars\[1\] \(momentum\): 1e\+39 is not finite in float32 "),
        ("rmsprop", [1e-2, 0.99, 1e-8, 1e39, 0.0], r"^scalars\[3\] \(weight_decay\): 1e\+39 is not finite in "),
        ("adadelta", [1.0, 0.9, 1e-50, 0.0], r"^scalars\[2\] \(eps\): 1e-50 rounds to 0 in float32 "),
        ("nadam", [1e-3, 1 - 1e-9, 0.999, 1e-8, 0.0, 4e-3, 1.0], r"^scalars\[1\] \(beta1\): 0\.999999999 rounds to 1 "),
    ],
)
def test_lowp_step_scalars_meet_float32_as_the_fp32_step_does(rule, scalars, message):
    """The rules of lowp_step compute in float32: the fp32 step's refusals on float32 arrays."""
    flags = {"sgd": [False, False, True, False], "rmsprop": [False, False, False]}.get(rule, [False, False, False])
    if rule == "adadelta":
        flags = [False]
    if rule == "adagrad":
        flags = [False, False]
    _refused_unchanged(_cpu.lowp_step, _lowp_call(rule, scalars, flags), ValueError, message)


def _capturable(base: str, dtype, lr, **changed) -> tuple:
    kw = native_kwargs(base, **changed)
    kw = {k: [a.astype(dtype) for a in v] if isinstance(v, list) else v for k, v in kw.items()}
    counters = np.zeros(2 if base == "nadam" else 1)
    return getattr(_cpu, base + "_capturable"), kw | dict(counters=counters, lr_buffer=np.array([lr]))


@pytest.mark.parametrize("base", ["sgd", "adagrad", "rmsprop", "adadelta", "adam", "nadam"])
@pytest.mark.parametrize(
    ("lr", "message"),
    [
        (float("nan"), r"^lr_buffer\[0\]: must be finite, got nan$"),
        (float("inf"), r"^lr_buffer\[0\]: must be finite, got inf$"),
        (-1e-3, r"^lr_buffer\[0\]: must be in \[0\.0, inf\), got -0\.001$"),
        (1e39, r"^lr_buffer\[0\]: 1e\+39 is not finite in float32 \(the arrays' dtype\)$"),
    ],
)
def test_lr_buffer_values_are_checked(base, lr, message):
    """A capturable step's lr from its buffer, checked as the lr it replaces (its range, and finite
    in the arrays' dtype), before anything is written -- counters included."""
    fn, kw = _capturable(base, np.float32, lr)
    _refused_unchanged(fn, kw, ValueError, message)


def test_lr_buffer_accepts_a_derived_rate_above_the_scale_bound():
    """ZeRO AdaGrad-Norm hands sgd its rate lr / b as the buffer: above float32's max ** (1/4)
    (b0 small) but finite, it runs (the bound is a user lr's, not a derived rate's)."""
    fn, kw = _capturable("sgd", np.float32, 1e12)
    kw["grads"] = [np.zeros_like(g) for g in kw["grads"]]
    before = [p.copy() for p in kw["params"]]
    fn(**kw)
    assert all(np.array_equal(a, b) for a, b in zip(before, kw["params"]))
    assert kw["counters"][0] == 1.0


@pytest.mark.parametrize("lr", [4e38, 1e39, 1e50])
@pytest.mark.parametrize("base", ["adam", "nadam", "adagrad"])
def test_float32_lr_is_checked_in_float32(base, lr):
    """float32_lr rounds lr to float32 whatever the params' dtype: float64 params' bound (1.2e77)
    let 1e39 through, which rounded to inf."""
    kw = native_kwargs(base, lr=lr, float32_lr=True)
    kw = {k: [a.astype(np.float64) for a in v] if isinstance(v, list) else v for k, v in kw.items()}
    message = rf"^lr: {lr!r} (is not finite in float32|is above 4\.295e\+09 \(float32's max \*\* \(1/4\)\))".replace(
        "+", r"\+"
    )
    _refused_unchanged(getattr(_cpu, base + "_"), kw, ValueError, message)
    names = inspect.signature(FUNCTIONAL[base]).parameters
    fkw = {k: v for k, v in kw.items() if k in names} | {"step": 1}
    with pytest.raises(ValueError, match=message):  # (the functional form: the Python layer's check)
        FUNCTIONAL[base](**fkw)


def test_float32_lr_decoupled_weight_decay_is_checked_in_float32():
    """AdamW's 1 - lr wd is two float32 ops under float32_lr: a weight_decay that float32 cannot
    multiply (1e50: inf there) is refused by name; without float32_lr float64 runs it."""
    kw = native_kwargs("adam", lr=1e-3, weight_decay=1e50, decoupled_weight_decay=True, float32_lr=True)
    kw = {k: [a.astype(np.float64) for a in v] if isinstance(v, list) else v for k, v in kw.items()}
    _refused_unchanged(_cpu.adam_, kw, ValueError, r"^weight_decay: 1e\+50 is not finite in float32")
    _cpu.adam_(**(kw | dict(float32_lr=False, weight_decay=1e-2)))


def test_float32_lr_leaves_float64_bounds_alone_without_it():
    kw = native_kwargs("adam", lr=1e10, float32_lr=False)
    kw = {k: [a.astype(np.float64) for a in v] if isinstance(v, list) else v for k, v in kw.items()}
    _cpu.adam_(**kw)
    assert all(np.isfinite(a).all() for a in _arrays_of(kw))


@pytest.mark.parametrize("base", ["sgd", "adagrad", "adam", "nadam"])
@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (float("nan"), r"^counters\[0\] \+ 1 \(this step\): must be an integer in \[1, 2\*\*53\], got nan$"),
        (-1.0, r"^counters\[0\] \+ 1 \(this step\): must be an integer in \[1, 2\*\*53\], got 0\.0$"),
        (0.5, r"^counters\[0\] \+ 1 \(this step\): must be an integer in \[1, 2\*\*53\], got 1\.5$"),
        (float("inf"), r"^counters\[0\] \+ 1 \(this step\): must be an integer in \[1, 2\*\*53\], got inf$"),
    ],
)
def test_capturable_counters_are_checked(base, steps, message):
    """The CPU reads a capturable step's counters: the step they make is checked as a host step
    (NaN wrote NaN into every param; -1, step 0, divided by a zero bias correction)."""
    fn, kw = _capturable(base, np.float64, 1e-3)
    kw["counters"][0] = steps
    _refused_unchanged(fn, kw | dict(lr_buffer=None), ValueError, message)


@pytest.mark.parametrize("mu", [float("nan"), 2.0, -1.0])
def test_capturable_nadam_mu_product_is_checked(mu):
    fn, kw = _capturable("nadam", np.float64, 1e-3)
    kw["counters"][1] = mu
    _refused_unchanged(fn, kw | dict(lr_buffer=None), ValueError, r"^counters\[1\] \(mu_product\): must be ")


def test_capturable_counters_in_range_still_run():
    fn, kw = _capturable("nadam", np.float64, 1e-3)
    kw["counters"][:] = [4.0, 0.5]
    fn(**(kw | dict(lr_buffer=None)))
    assert kw["counters"][0] == 5.0 and 0.0 < kw["counters"][1] < 0.5
