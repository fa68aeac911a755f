"""Every bool parameter of the native module is converted by name (hunt 53c).

The 49th session bound each native bool as a ``checks::Flag`` (optkern/scalar_checks.hpp), converted
by ``checks::flag`` under its name: True, False and ``numpy.bool_`` run, anything else is a TypeError
naming the argument -- the Python layer's rule (``_backend.flag``), which refuses ints too. Its tests
name their calls one by one; this sweep reads every ``bool`` parameter off the signatures, so a
flag bound later as a plain C++ ``bool`` (pybind11's caster: an unnamed "incompatible function
arguments" for a str, and 1.0, None or an array read as a truth value) fails here. Found: all 49
named already; nothing in the module changed for this file.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from optkern import _cpu
from test_hunt52e_native_ints import parameters_of_type

BOOLS = parameters_of_type(("bool",))


def test_the_sweep_sees_every_flag():
    names = {(p.values[0], p.values[3]) for p in BOOLS}
    assert {("adam_", "maximize"), ("nadam_", "float64_product"), ("sgd_capturable", "nesterov")} <= names
    assert {
        ("cg_iteration_", "stop_on_negative_curvature"),
        ("lowp_step", "stochastic"),
        ("row_norm_forward", "rms"),
    } <= names
    assert len(BOOLS) >= 49  # (the count of this session's module)


@pytest.mark.parametrize(("name", "args", "i", "arg"), BOOLS)
@pytest.mark.parametrize(
    ("bad", "got"),
    [
        ("yes", "str"),
        (None, "NoneType"),
        (1.0, "float"),
        (np.float64(0.0), "numpy.float64"),
        (1, "int"),
        (0, "int"),
        (np.int64(1), "numpy.int64"),
        (np.array(True), "numpy.ndarray"),
        ([True], "list"),
    ],
)
def test_a_wrong_bool_is_named(name, args, i, arg, bad, got):
    """Whatever else is wrong with the call (the others are placeholders), the flag is refused by name."""
    args = list(args)
    args[i] = bad
    with pytest.raises(TypeError, match=rf"^{re.escape(arg)}: expected a bool, got {re.escape(got)}$"):
        getattr(_cpu, name)(*args)


@pytest.mark.parametrize(("name", "args", "i", "arg"), BOOLS)
@pytest.mark.parametrize("good", [True, np.True_, np.bool_(False)])
def test_a_bool_is_not_refused(name, args, i, arg, good):
    """Python's and NumPy's bools pass the flag's check (the placeholders fail something else, or run)."""
    args = list(args)
    args[i] = good
    try:
        getattr(_cpu, name)(*args)
    except (TypeError, ValueError) as e:
        assert not str(e).startswith(f"{arg}:"), str(e)
