"""Native real arguments still off the shared checks (hunt 51c).

* ``lowp_step``'s ``scalars`` were a ``list[float]`` (pybind11's list caster): a str or None in it
  gave the unnamed "incompatible function arguments" TypeError, a bool ran as 1.0, and its values
  were checked against their ranges only, not against float32 (the dtype its rules compute in:
  ``lr=1e10`` and ``eps=1e-50``, refused by ``adam_`` on float32 arrays, ran and wrote NaN).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optkern import _cpu
from test_hunt49c_native_args import _lowp_sgd_call


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
