"""Every native real argument converted by name (hunt 51c).

The optimizer steps, SAM, the penalty and L-BFGS's ``t`` took their reals as ``checks::Real``
(hunt 50); every other native entry point -- norms' ``eps`` and ``momentum``, CG's ``alpha``,
``damping``, ``rz``, ``tol``, L-BFGS's ``g_scale`` and coefficient lists, cross-entropy's scalars,
dropout's ``p``, the clipping and AMP scalars -- still bound plain ``double``s: a str or None gave
pybind11's "incompatible function arguments" TypeError, naming nothing, and True ran as 1.0.
``def_named`` (optkern/named_reals.hpp) binds each as a ``checks::Real``, converted under its own name.

Their range messages printed the value with ``std::to_string``: -1e-9 read "-0.000000". They show
Python's repr now.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from optkern import _cpu

# how a stub spells a real parameter (pybind11's double caster's name, which checks::Real keeps)
REAL_TYPES = ("typing.SupportsFloat | typing.SupportsIndex", "typing.SupportsFloat", "float")


def _signatures(fn, name: str):
    for line in (fn.__doc__ or "").splitlines():
        m = re.match(r"^(?:\d+\. )?" + re.escape(name) + r"\((.*)\) ->", line)
        if m:
            yield [
                (a.split(":")[0], a.split(":", 1)[1].split("=")[0].strip())
                for a in re.split(r", (?=\w+:)", m.group(1))
                if a
            ]


def _dummy(t: str):
    """A value of a parameter's type that pybind11 converts (never an array: nothing is written)."""
    if t in REAL_TYPES:
        return 0.5  # (in every optimizer's ranges: the steps check each real in turn)
    if "SupportsInt" in t or t == "int":
        return 1
    if t == "str":
        return "float32"
    if t == "bool":
        return False
    if t.startswith(("list", "collections.abc.Sequence")):
        return []
    return None


def _real_parameters():
    """(function name, positional arguments, index of a real parameter) for every native function."""
    out = []
    for name in sorted(dir(_cpu)):
        fn = getattr(_cpu, name)
        if name.startswith("_") or not callable(fn):
            continue
        for args in _signatures(fn, name):
            for i, (arg, t) in enumerate(args):
                if t in REAL_TYPES:
                    out.append(pytest.param(name, [_dummy(tt) for _, tt in args], i, arg, id=f"{name}-{arg}"))
    return out


REALS = _real_parameters()


def test_the_probe_sees_the_entry_points():
    names = {p.values[0] for p in REALS}
    assert {"cg_update_", "channel_stats", "row_norm_forward", "softmax_xent_fwd", "lbfgs_direction_"} <= names
    assert len(REALS) > 80


@pytest.mark.parametrize(("name", "args", "i", "arg"), REALS)
@pytest.mark.parametrize(
    ("bad", "got"), [("x", "str"), (None, "NoneType"), (True, "bool"), (np.bool_(False), "bool"), (1j, "complex")]
)
def test_a_wrong_real_is_named(name, args, i, arg, bad, got):
    """Whatever else is wrong with the call, a real of the wrong type is refused by its name
    before anything else is looked at (the other arguments here are placeholders)."""
    args = list(args)
    args[i] = bad
    with pytest.raises(TypeError, match=rf"^{re.escape(arg)}: expected a real number, got {got}$"):
        getattr(_cpu, name)(*args)


@pytest.mark.parametrize(("name", "args", "i", "arg"), REALS)
def test_an_int_beyond_float_range_is_named(name, args, i, arg):
    """pybind11's double took 10**400 with an OverflowError naming nothing (or as inf)."""
    args = list(args)
    args[i] = 10**400
    with pytest.raises(ValueError, match=rf"^{re.escape(arg)}: must be finite, got an integer beyond float range$"):
        getattr(_cpu, name)(*args)


def test_real_lists_are_named_by_item():
    """lbfgs_direction_'s coefficient lists: a wrong item named with its index."""
    for bad, got in (("x", "str"), (None, "NoneType"), (True, "bool")):
        with pytest.raises(TypeError, match=rf"^coef_y\[1\]: expected a real number, got {got}$"):
            _cpu.lbfgs_direction_([], [], [0.5, 0.5], [0.5, bad], None, 1.0, None, None)


def test_numpy_scalars_and_ints_still_run():
    """What pybind11's double took (ints, NumPy scalars, objects with __float__) runs as before."""

    class Half:
        def __float__(self):
            return 0.5

    x = np.arange(7.0)
    for v in (np.float32(0.5), np.float64(0.5), np.int64(0), 0, Half()):
        a = x.copy()
        _cpu.clamp_([a], v)
        assert np.array_equal(a, np.clip(x, -float(v), float(v)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: _cpu.clamp_([np.ones(3)], -1e-9), r"^clip_value: must be >= 0, got -1e-09$"),
        (lambda: _cpu.clip_scale_([np.ones(3)], -1e-9, np.ones(1)), r"^max_norm: must be >= 0 or inf, got -1e-09$"),
        (
            lambda: _cpu.grad_norm([np.ones(3)], 1 - 1e-9, np.zeros(1)),
            r"^norm_type: must be >= 1 or inf, got 0\.999999999$",
        ),
        (lambda: _cpu.dropout_(np.ones(3), np.ones(3), -1e-9, 0, 0), r"^p: must be in \[0, 1\], got -1e-09$"),
        (
            lambda: _cpu.swa_lerp_([np.ones(3)], [np.ones(3)], 1 + 1e-9),
            r"^weight: must be in \[0, 1\], got 1\.000000001$",
        ),
        (
            lambda: _cpu.amp_update_scale_(
                np.ones(1, np.float32), np.zeros(1, np.int64), np.zeros(1, np.float32), 1 - 1e-12, 0.5, 1
            ),
            r"^growth_factor: must be finite and > 1, got 0\.999999999999$",
        ),
        (
            lambda: _cpu.amp_update_scale_(
                np.ones(1, np.float32), np.zeros(1, np.int64), np.zeros(1, np.float32), 2.0, 1 + 1e-12, 1
            ),
            r"^backoff_factor: must be in \(0, 1\), got 1\.000000000001$",
        ),
        (
            lambda: _cpu.softmax_xent_fwd(np.ones((2, 3)), np.zeros(2, np.int64), np.zeros(2), label_smoothing=-1e-9),
            r"^label_smoothing: must be in \[0, 1\], got -1e-09$",
        ),
        (
            lambda: _cpu.softmax_xent_fwd(np.ones((2, 3)), np.zeros(2, np.int64), np.zeros(2), scale=float("inf")),
            r"^scale: must be finite, got inf$",
        ),
        (
            lambda: _cpu.running_stats_(np.zeros(2), np.ones(2), np.zeros(2), np.ones(2), -1e-9),
            r"^momentum: must be in \[0, 1\], got -1e-09$",
        ),
    ],
)
def test_range_messages_show_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_norm_eps_message_shows_the_value():
    x = np.ones((2, 3, 4))
    mean, rstd, var = np.zeros(3), np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match=r"^eps: must be > 0, got -1e-09$"):
        _cpu.channel_stats(x, mean, rstd, var, 2, 3, 4, -1e-9)
    assert not rstd.any()
    out, m, r = np.zeros((2, 12)), np.zeros(2), np.zeros(2)
    with pytest.raises(ValueError, match=r"^eps: must be > 0, got -1e-09$"):
        _cpu.row_norm_forward(np.ones((2, 12)), None, None, out, m, r, 2, 1, 12, 1, -1e-9, False)
    assert not out.any()
