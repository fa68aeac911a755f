"""Every native integer argument converted by name (hunt 52e).

Seeds, offsets, streams, block sizes, bit counts, row / group / channel counts, ``k``, ``passes``,
``axis``, thread counts... were bound as plain ``int64_t`` / ``uint64_t`` / ``int``: a float, a NumPy
float, a str, None or a value past the C type gave pybind11's "incompatible function arguments"
TypeError, naming nothing, and True (or ``numpy.True_``) ran as 1. ``def_named``
(optkern/named_reals.hpp) binds each as a ``checks::Int``, converted by ``checks::integer`` under its
own name, with the Python layer's rule (optkern/_scalars.py: ``integer``): ints and NumPy integers
(anything with ``__index__``) run, bools are refused as the Python layer refuses them, a value outside
the C type is a ValueError naming the argument.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from optkern import _cpu
from test_hunt51c_named_reals import _dummy as _real_dummy
from test_hunt51c_named_reals import _signatures

INT_TYPES = ("typing.SupportsInt | typing.SupportsIndex", "typing.SupportsInt", "int")
# (philox4x32_10's fixed-size word lists are named by item too: test_hunt53c_philox_names.py)


def _dummy(t: str):
    """A value of a parameter's type that pybind11 converts (a list of ints: an empty list)."""
    return [] if t.startswith(("list", "collections.abc.Sequence")) else _real_dummy(t)


def parameters_of_type(types):
    """(function name, positional arguments, index of a parameter whose type is in ``types``, its
    name) for every native function (the other arguments placeholders: ``_dummy``)."""
    out = []
    for name in sorted(dir(_cpu)):
        fn = getattr(_cpu, name)
        if name.startswith("__") or not callable(fn):
            continue
        for args in _signatures(fn, name):
            for i, (arg, t) in enumerate(args):
                if t in types:
                    out.append(pytest.param(name, [_dummy(tt) for _, tt in args], i, arg, id=f"{name}-{arg}"))
    return out


def _int_parameters():
    """(function name, positional arguments, index of an integer parameter) for every native function."""
    return parameters_of_type(INT_TYPES)


INTS = _int_parameters()


def test_the_probe_sees_the_entry_points():
    names = {p.values[0] for p in INTS}
    assert {"random_uniform_", "dropout_", "lowp_step", "row_norm_backward", "lanczos_orthogonalize_"} <= names
    assert {"weight_norm_forward", "channel_norm_backward", "lbfgs_two_loop", "set_num_threads"} <= names
    assert len(INTS) > 50


@pytest.mark.parametrize(("name", "args", "i", "arg"), INTS)
@pytest.mark.parametrize(
    ("bad", "got"),
    [
        (1.5, "float"),
        (2.0, "float"),
        (np.float64(3.0), "numpy.float64"),
        (np.array(5.0), "numpy.ndarray"),  # (has __index__, which refuses: named too)
        ("1", "str"),
        (None, "NoneType"),
        (True, "bool"),
        (np.bool_(False), "bool"),
    ],
)
def test_a_wrong_integer_is_named(name, args, i, arg, bad, got):
    """Whatever else is wrong with the call (the other arguments are placeholders), an integer of
    the wrong type is refused by its name before anything else is looked at."""
    args = list(args)
    args[i] = bad
    with pytest.raises(TypeError, match=rf"^{re.escape(arg)}: expected an integer, got {re.escape(got)}$"):
        getattr(_cpu, name)(*args)


@pytest.mark.parametrize(("name", "args", "i", "arg"), INTS)
@pytest.mark.parametrize("bad", [2**64, -(2**63) - 1, 10**30])
def test_an_integer_past_every_c_type_is_named(name, args, i, arg, bad):
    args = list(args)
    args[i] = bad
    with pytest.raises(ValueError, match=rf"^{re.escape(arg)}: must be [<>]= -?\d+, got {bad}$"):
        getattr(_cpu, name)(*args)


def _uniform(seed, offset):
    out = np.zeros(7)
    _cpu.random_uniform_(out, seed, offset)
    return out


def test_unsigned_bounds_are_the_c_types():
    """A seed is a uint64: 2**64 - 1 runs, 2**64 and -1 are refused by name (ValueError)."""
    assert np.isfinite(_uniform(2**64 - 1, 0)).all()
    with pytest.raises(ValueError, match=r"^seed: must be <= 18446744073709551615, got 18446744073709551616$"):
        _uniform(2**64, 0)
    with pytest.raises(ValueError, match=r"^offset: must be >= 0, got -1$"):
        _uniform(1, -1)
    with pytest.raises(ValueError, match=r"^passes: must be <= 2147483647, got 2147483648$"):
        _cpu.lanczos_orthogonalize_(None, 0, None, None, 2**31)


def test_numpy_integers_run_as_ints():
    """What the Python layer takes (NumPy integers, objects with __index__) runs with the same bits."""

    class Five:
        def __index__(self):
            return 5

    want = _uniform(5, 3)
    for seed, offset in ((np.int64(5), np.uint8(3)), (np.uint64(5), np.int32(3)), (Five(), 3)):
        assert np.array_equal(_uniform(seed, offset), want)


def test_a_refused_integer_writes_nothing():
    x, out = np.arange(1.0, 8.0), np.full(7, -1.0)
    for bad in (1.5, True, 2**64):
        with pytest.raises((TypeError, ValueError), match=r"^seed: "):
            _cpu.dropout_(x, out, 0.5, bad, 0)
        assert (out == -1.0).all()
    q, codes, scales = np.ones(64, np.float32), np.zeros(64, np.uint8), np.full(1, 7.0, np.float32)
    with pytest.raises(TypeError, match=r"^block: expected an integer, got float$"):
        _cpu.lowp_quantize_blockwise(q, codes, scales, 64.0)
    assert (scales == 7.0).all() and not codes.any()


def test_integer_lists_are_named_by_item():
    """chunk_threads' sizes: a wrong item named with its index."""
    assert len(_cpu.chunk_threads([3, np.int64(4)], 1)) >= 1
    with pytest.raises(TypeError, match=r"^sizes\[1\]: expected an integer, got float$"):
        _cpu.chunk_threads([3, 4.0], 1)
    with pytest.raises(ValueError, match=r"^sizes\[0\]: must be <= 9223372036854775807, got 9223372036854775808$"):
        _cpu.chunk_threads([2**63], 1)
