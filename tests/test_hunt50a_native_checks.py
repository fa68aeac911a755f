"""Native argument checks: the same refusals, by name, as the Python layer.

* Hyper-parameters against the arrays' dtype. The native steps checked ranges only: ``eps=1e-50``
  rounds to 0 in float32 (a zero gradient's step is then 0 / 0 = NaN, as torch's is: it accepts
  such an eps and writes NaN), ``lr=1e300`` to inf, and a NAdam ``beta1`` of ``1 - 1e-9`` to 1.
  Each optimizer description now says how each hyper-parameter meets the dtype (``in_dtype``,
  ``checks::check_in_dtype``), checked with the Python layer's messages (``optim/_hyper.py``)
  before anything is written; ``test_dtype_checks_agree_with_the_python_layer`` pins that the two
  accept and refuse the same values, value by value, in float32 and float64.
* A str (or None, a bool, a complex) for a real argument: pybind11's generic "incompatible function
  arguments" TypeError, naming nothing. ``checks::Real`` takes any object and converts it by name.
* SAM's rho / eps and the penalty's l1 / l2 (their own messages before), L-BFGS's ``t``
  (``std::to_string``): the shared ``checks::check_real`` now, with the Python layer's messages.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

import optkern.regularize as R
from optkern import _cpu, _scalars
from test_hunt49c_native_hyper import FUNCTIONAL, STATES, _outcome, _real_names, native_kwargs, native_params

F32_TINY = float(np.finfo(np.float32).smallest_subnormal)
# values in every range that a dtype may not run: subnormal and below in float32, near 1, near
# max ** (1/4) (4.295e9 for float32, 1.158e77 for float64) and near each dtype's max
DTYPE_PROBES = (
    1e-50,
    F32_TINY / 2,
    F32_TINY,
    1e-30,
    0.5,
    1.0 - 1e-9,
    1.0 - 2.0**-25,
    4e9,
    4.3e9,
    1e38,
    3.5e38,
    1e39,
    1e77,
    1.2e77,
    1e300,
)


def _as(kw: dict, dtype) -> dict:
    """``kw`` with its params and state arrays in ``dtype`` (b_sq stays float64)."""
    out = dict(kw)
    for k, v in kw.items():
        if isinstance(v, list):
            out[k] = [a.astype(dtype) for a in v]
    return out


def _arrays_of(kw: dict) -> list:
    return [a for v in kw.values() for a in (v if isinstance(v, list) else [v]) if isinstance(a, np.ndarray)]


def _python_kwargs(base: str, kw: dict) -> dict:
    names = inspect.signature(FUNCTIONAL[base]).parameters
    fkw = {k: v for k, v in kw.items() if k in names}
    if "step" in fkw:
        fkw["step"] = 1  # (an int in Python)
    return fkw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("base", sorted(FUNCTIONAL))
def test_dtype_checks_agree_with_the_python_layer(base, dtype):
    """At every probe of every real hyper-parameter the functional form takes too: the native call
    and the functional one accept and refuse alike, with the same message; a refused native call
    writes nothing, an accepted one leaves every array finite."""
    names = inspect.signature(FUNCTIONAL[base]).parameters
    refused = accepted = 0
    for name in _real_names(base):
        if name not in names or name in ("step", "mu_product"):
            continue
        for v in DTYPE_PROBES:
            kw = _as(native_kwargs(base, **{name: v}), dtype)
            native = _outcome(getattr(_cpu, base + "_"), **kw)
            python = _outcome(FUNCTIONAL[base], **_python_kwargs(base, _as(native_kwargs(base, **{name: v}), dtype)))
            assert native == python, (base, name, v, native, python)
            if native is None:
                accepted += 1
                assert all(np.isfinite(a).all() for a in _arrays_of(kw)), (base, name, v)
            else:
                refused += 1
                fresh = _arrays_of(_as(native_kwargs(base, **{name: v}), dtype))
                assert all(np.array_equal(a, b) for a, b in zip(fresh, _arrays_of(kw))), (base, name, v)
    assert accepted > 0 and refused > 0
    if dtype == np.float32:  # lr is above float32's max ** (1/4) from 4.3e9 on, and inf from 3.5e38 on
        assert refused >= len([v for v in DTYPE_PROBES if v >= 4.3e9])


@pytest.mark.parametrize(
    ("base", "name", "value", "message"),
    [
        (
            "adam",
            "eps",
            1e-50,
            r"eps: 1e-50 rounds to 0 in float32 \(the arrays' dtype\); the smallest usable value "
            r"is 1\.401298464324817e-45",
        ),
        ("adam", "lr", 1e300, r"lr: 1e\+300 is not finite in float32 \(the arrays' dtype\)"),
        (
            "sgd",
            "lr",
            1e10,
            r"lr: 10000000000\.0 is above 4\.295e\+09 \(float32's max \*\* \(1/4\)\), the largest "
            r"value a float32 step keeps finite",
        ),
        ("nadam", "beta1", 1.0 - 1e-9, r"beta1: 0\.999999999 rounds to 1 in float32 \(the arrays' dtype\), where "),
        ("adam_given", "eps", 1e-50, r"eps: 1e-50 rounds to 0 in float32"),
        ("adam_given", "bc2_sqrt", 1e-50, r"bc2_sqrt: 1e-50 rounds to 0 in float32"),
        ("adam_given", "step_size", 1e39, r"step_size: 1e\+39 is not finite in float32"),
        ("nadam_given", "bc2", 1e-50, r"bc2: 1e-50 rounds to 0 in float32"),
        ("nadam_given", "c_grad", -1e39, r"c_grad: -1e\+39 is not finite in float32"),
    ],
)
def test_float32_refusals_are_named_and_write_nothing(base, name, value, message):
    """Including the given-scalar steps (optkern.torch's: no functional form of their own)."""
    for capturable in (False, True):
        kw = _as(native_kwargs(base, **{name: value}), np.float32)
        fn = getattr(_cpu, base + "_")
        if capturable:
            counters = np.zeros(2 if base == "nadam" else 1)
            fn, kw = getattr(_cpu, base + "_capturable"), kw | dict(counters=counters, lr_buffer=None)
        before = [a.copy() for a in _arrays_of(kw)]
        with pytest.raises(ValueError, match="^" + message):
            fn(**kw)
        assert all(np.array_equal(a, b) for a, b in zip(before, _arrays_of(kw)))
    if abs(value) > 1e77:
        return  # (float64's own bound for a scale: test_dtype_checks_agree_with_the_python_layer)
    # float64 runs the same value (it is not lost there), and the result is finite
    kw = native_kwargs(base, **{name: value})
    if name in ("step_size", "c_grad"):
        kw["params"] = [np.zeros(3)]  # (a huge step from 0: finite, where p -1..1 gives one of 1e39)
    getattr(_cpu, base + "_")(**kw)
    assert all(np.isfinite(a).all() for a in _arrays_of(kw))


def test_torch_writes_nan_where_we_refuse_an_eps_that_rounds_to_zero():
    """The decision's reference: torch.optim.Adam takes eps=1e-50 with float32 params, rounds it to
    0 and writes NaN where a gradient is 0 (each of its implementations); we refuse it by name."""
    for impl in (dict(foreach=False), dict(foreach=True), dict(fused=True)):
        p = torch.ones(5, dtype=torch.float32, requires_grad=True)
        p.grad = torch.zeros(5)
        torch.optim.Adam([p], lr=1e-3, eps=1e-50, **impl).step()
        assert torch.isnan(p.detach()).all(), impl
    kw = _as(native_kwargs("adam", eps=1e-50), np.float32)
    kw["grads"] = [np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match="^eps: 1e-50 rounds to 0 in float32"):
        _cpu.adam_(**kw)
    kw = native_kwargs("adam", eps=1e-50)  # float64: eps is 1e-50 there, and a zero gradient steps 0
    kw["grads"] = [np.zeros(3)]
    _cpu.adam_(**kw)
    np.testing.assert_array_equal(kw["params"][0], np.linspace(-1.0, 1.0, 3))


BAD_TYPES = ("0.1", None, True, np.bool_(False), complex(0.1, 0.0), [0.1], b"1")
GOOD_TYPES = (np.float32(0.5), np.float64(0.5), np.int64(0), 0, 0.5)


@pytest.mark.parametrize("base", sorted(STATES) + ["adagrad_norm"])
def test_a_wrong_type_for_a_real_argument_is_a_type_error_naming_it(base):
    """Every real argument of every native step, plain and capturable (step and mu_product too)."""
    variants = [(getattr(_cpu, base + "_"), {})]
    if hasattr(_cpu, base + "_capturable"):
        variants.append((getattr(_cpu, base + "_capturable"), dict(counters=None, lr_buffer=None)))
    checked = 0
    for fn, extra in variants:
        for name in _real_names(base):
            for bad in BAD_TYPES:
                kw = native_kwargs(base, **{name: bad}) | extra
                before = [a.copy() for a in _arrays_of(kw)]
                want = "bool" if isinstance(bad, np.bool_) else type(bad).__name__
                with pytest.raises(TypeError, match=f"^{name}: expected a real number, got {want}$"):
                    fn(**kw)
                assert all(np.array_equal(a, b) for a, b in zip(before, _arrays_of(kw)))
                checked += 1
    assert checked >= len(BAD_TYPES) * 2


@pytest.mark.parametrize("base", sorted(FUNCTIONAL))
def test_argument_types_agree_with_the_python_layer(base):
    """The same TypeError (or acceptance) from the native call and the public functional form; an int
    beyond float range is a ValueError in both."""
    names = inspect.signature(FUNCTIONAL[base]).parameters
    checked = 0
    for name in _real_names(base):
        if name not in names or name in ("step", "mu_product"):
            continue
        for v in BAD_TYPES + GOOD_TYPES + (10**400,):
            native = _outcome(getattr(_cpu, base + "_"), **native_kwargs(base, **{name: v}))
            python = _outcome(FUNCTIONAL[base], **_python_kwargs(base, native_kwargs(base, **{name: v})))
            if native is None or python is None or native[0] is not TypeError:
                assert native == python, (base, name, v, native, python)
            else:  # (a NumPy type's name: "numpy.X" natively, "X" in Python; the argument is named in both)
                assert python[0] is TypeError and native[1].split(", got")[0] == python[1].split(", got")[0]
            checked += 1
    assert checked >= len(BAD_TYPES) + len(GOOD_TYPES)


def test_sam_and_penalty_scalars_take_the_shared_checks():
    """rho, eps, l1, l2: the Python layer's nonnegative() refusal, word for word, and a TypeError
    naming a str."""
    p = [np.linspace(-1.0, 1.0, 7)]
    calls = {
        "rho": lambda v: _cpu.sam_perturb_(p, [np.ones(7)], [np.zeros(7)], v, 0.0, np.zeros(1)),
        "eps": lambda v: _cpu.sam_perturb_(p, [np.ones(7)], [np.zeros(7)], 0.05, v, np.zeros(1)),
        "l1": lambda v: _cpu.penalty_grad_(p, [np.ones(7)], v, 0.0),
        "l2": lambda v: _cpu.penalty_value(p, 0.0, v),
    }
    for name, call in calls.items():
        for v in (-1.0, -5e-324, math.nan, math.inf, -math.inf):
            before = p[0].copy()
            with pytest.raises(ValueError) as native:
                call(v)
            with pytest.raises(ValueError) as python:
                _scalars.nonnegative(name, v)
            assert str(native.value) == str(python.value), (name, v)
            np.testing.assert_array_equal(p[0], before)
        with pytest.raises(TypeError, match=f"^{name}: expected a real number, got str$"):
            call("0.1")
        call(0.0)


def test_penalty_native_and_public_refusals_agree():
    ps, gs = [np.linspace(-1.0, 1.0, 7, dtype=np.float32)], [np.ones(7, np.float32)]
    for v in (-1.0, math.nan, 1e39, "0.1"):
        native = _outcome(_cpu.penalty_grad_, params=ps, grads=gs, l1=v, l2=0.0)
        python = _outcome(R.add_penalty_grad_, params=ps, grads=gs, l1=v, l2=0.0)
        assert native is not None and native == python, (v, native, python)
    np.testing.assert_array_equal(gs[0], np.ones(7, np.float32))


@pytest.mark.parametrize("t", [math.nan, math.inf, -math.inf, "0.5", None])
def test_lbfgs_t_is_checked_by_the_shared_check(t):
    """lbfgs_move_ and lbfgs_push_: the Python layer's message (check_real's repr, not
    std::to_string's; checks::Real's TypeError, not pybind11's)."""
    with pytest.raises((TypeError, ValueError)) as python:
        _scalars.real("t", t)
    n = 5
    p, x, d = [np.ones(n)], np.zeros(n), np.ones(n)
    with pytest.raises(python.type, match=f"^{python.value}$"):
        _cpu.lbfgs_move_(p, x, d, t, True)
    np.testing.assert_array_equal(p[0], np.ones(n))
    np.testing.assert_array_equal(x, np.zeros(n))
    S, Y = [np.ones(n)], [np.full(n, 2.0)]
    sn, yn, g, pg = np.zeros(n), np.zeros(n), np.ones(n), np.zeros(n)
    out = np.zeros(5 * 1 + 4)
    with pytest.raises(python.type, match=f"^{python.value}$"):
        _cpu.lbfgs_push_(S, Y, sn, yn, g, pg, d, t, out)
    assert not sn.any() and not yn.any() and not pg.any() and not out.any()


def test_signatures_show_real_arguments_as_floats():
    """checks::Real shows as pybind11's double (the stubs, _cpu.pyi, are unchanged)."""
    assert native_params(_cpu.adam_)["lr"] == native_params(_cpu.lbfgs_move_)["t"]
    assert native_params(_cpu.sgd_)["step"] == native_params(_cpu.lbfgs_move_)["t"]
