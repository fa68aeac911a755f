"""optkern._cpu's list arguments and penalty coefficients, called natively (no Python wrapper):

- lowp_step's ``bases`` read each item through a handle that the item lookup's temporary owned:
  an item made on lookup (an int64 array's scalar, a custom sequence's int) was freed, then read
  (a crash under a debug allocator, which fills freed memory);
- a bare 2-D array where a list of arrays is expected was walked as the list of its rows (the CUDA
  module refused it): every list argument now refuses it, naming the argument;
- penalty_grad_ rounded l1 / l2 past float32's range to inf and wrote inf / NaN into every float32
  grad: only the Python wrapper refused them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from optkern import _backend

_cpu = _backend.cpu


def _adam_lowp(params, grads, states, scales=None, state_dtype="float32", bases=None):
    return _cpu.lowp_step(
        "adam", [1e-3, 0.9, 0.999, 1e-8, 0.0], [False, False, False], params, grads, None, states, scales,
        "float32", state_dtype, False, 0, 1, 64, None, bases,
    )  # fmt: skip


class _FreshInts:
    """A sequence whose every lookup makes a new int (past the small-int cache)."""

    def __init__(self, values):
        self.values = values

    def __len__(self):
        return len(self.values)

    def __getitem__(self, i):
        if i >= len(self.values):
            raise IndexError(i)
        return int(str(self.values[i]))


_FRESH_BASES = """
import numpy as np
from optkern import _cpu

class FreshInts:
    def __init__(self, values): self.values = values
    def __len__(self): return len(self.values)
    def __getitem__(self, i):
        if i >= len(self.values): raise IndexError(i)
        return int(str(self.values[i]))

def step(bases):
    p = [np.zeros(8, np.float32), np.zeros(8, np.float32)]
    g = [np.ones(8, np.float32), np.ones(8, np.float32)]
    s = [[np.zeros(8, np.float32) for _ in range(2)] for _ in range(2)]
    _cpu.lowp_step("adam", [1e-3, 0.9, 0.999, 1e-8, 0.0], [False, False, False], p, g, None, s, None,
                   "float32", "float32", False, 0, 1, 64, None, bases)

step(FreshInts([10**12, 10**12 + 8]))
try:
    step(np.array([0, 8], dtype=np.int64))
except TypeError as e:
    assert str(e) == "bases[0]: expected an int", e
else:
    raise AssertionError("an int64 array was taken as bases")
print("ok")
"""


@pytest.mark.spawns
def test_bases_made_on_lookup_are_read_alive():
    # PYTHONMALLOC=debug overwrites freed memory: the freed item's type pointer was then followed
    # (a segfault, before the fix)
    # (the environment as given: CI imports the installed package, src/ has no built module there)
    env = dict(os.environ, PYTHONMALLOC="debug", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _FRESH_BASES], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout, r.stderr[-2000:])


def test_bases_from_a_sequence_making_its_ints_number_the_params():
    # stochastic bf16 states draw their rounding words at each element's base: a sequence whose
    # items are made on lookup gives the bits of the same bases as a list
    rng = np.random.default_rng(47)
    sizes = [5, 70]

    def run(bases):
        p = [rng_p.copy() for rng_p in ps]
        g = [x.copy() for x in gs]
        s = [[np.zeros(n, np.uint16) for n in sizes] for _ in range(2)]
        _adam_lowp(p, g, s, state_dtype="bfloat16", bases=bases)
        return p, s

    ps = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    gs = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    want = run([10**12, 10**12 + 999])
    got = run(_FreshInts([10**12, 10**12 + 999]))
    other = run([0, 5])
    for a, b in zip(want[1][0] + want[1][1], got[1][0] + got[1][1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(want[1][1], other[1][1]))


def _bare_calls():
    """(name of the bare argument, call with a bare 2-D array there) over the CPU's list entry points."""
    f32 = np.float32

    def lists(n=2, k=3):
        return [np.ones(k, f32) for _ in range(n)]

    def bare():
        return np.ones((2, 3), f32)

    out = np.zeros(1)
    return [
        ("params", lambda: _cpu.penalty_grad_(bare(), lists(), 0.0, 1.0, None)),
        ("grads", lambda: _cpu.penalty_grad_(lists(), bare(), 0.0, 1.0, None)),
        ("params", lambda: _cpu.penalty_value(bare(), 0.0, 1.0, None)),
        ("arrays", lambda: _cpu.grad_sq_norm(bare(), out)),
        ("arrays", lambda: _cpu.grad_norm(bare(), 2.0, out)),
        ("arrays", lambda: _cpu.all_finite(bare(), out)),
        ("arrays", lambda: _cpu.clamp_(bare(), 1.0)),
        ("averages", lambda: _cpu.swa_lerp_(bare(), lists(), 0.5)),
        ("params", lambda: _cpu.swa_lerp_(lists(), bare(), 0.5)),
        ("params", lambda: _cpu.sgd_(bare(), lists(), None, 0.1, 0.0, 0.0, 0.0, False, False, False, 1.0)),
        ("grads", lambda: _cpu.sgd_(lists(), bare(), None, 0.1, 0.0, 0.0, 0.0, False, False, False, 1.0)),
        ("momentum_buffers", lambda: _cpu.sgd_(lists(), lists(), bare(), 0.1, 0.9, 0.0, 0.0, False, False, False, 1.0)),
        ("params", lambda: _adam_lowp(bare(), lists(), [lists(), lists()])),
        ("states", lambda: _adam_lowp(lists(), lists(), np.zeros((2, 2, 3), f32))),
        ("states[0]", lambda: _adam_lowp(lists(), lists(), [bare(), lists()])),
    ]


@pytest.mark.parametrize("case", range(len(_bare_calls())))
def test_a_bare_array_is_not_a_list_of_its_rows(case):
    name, call = _bare_calls()[case]
    with pytest.raises(TypeError, match=rf"^{name.replace('[', '.').replace(']', '.')}: expected a list of "):
        call()


def test_bare_array_refusal_writes_nothing():
    p = np.ones((2, 3), np.float32)
    g = [np.zeros(3, np.float32), np.zeros(3, np.float32)]
    with pytest.raises(TypeError, match="^params: expected a list of arrays, got numpy.ndarray$"):
        _cpu.penalty_grad_(p, g, 0.0, 1.0, None)
    assert all(not x.any() for x in g)


def test_sequences_of_arrays_still_pass():
    # a tuple, a custom sequence and a list subclass are lists of arrays; the values are stepped
    class Seq:
        def __init__(self, items):
            self.items = items

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    class Sub(list):
        pass

    for wrap in (tuple, Seq, Sub, list):
        p = [np.array([1.0, -2.0], np.float32)]
        g = [np.zeros(2, np.float32)]
        _cpu.penalty_grad_(wrap(p), wrap(g), 0.0, 1.0, None)
        np.testing.assert_array_equal(g[0], [1.0, -2.0])


@pytest.mark.parametrize("bad", [None, 3, "abc", b"ab", {"a": 1}, memoryview(b"ab")])
def test_other_non_lists_are_named(bad):
    with pytest.raises(TypeError, match="^params: expected a list of arrays, got "):
        _cpu.penalty_value(bad, 0.0, 1.0, None)


@pytest.mark.parametrize("bad", [None, 3, np.zeros((1, 2, 8), np.float32)])
def test_lowp_states_not_a_list_of_lists_are_named(bad):
    p = [np.zeros(8, np.float32)]
    g = [np.ones(8, np.float32)]
    with pytest.raises(TypeError, match="^states: expected a list of state lists, got "):
        _adam_lowp(p, g, bad)
    assert not p[0].any()


@pytest.mark.parametrize("name", ["l1", "l2"])
@pytest.mark.parametrize("v", [1e39, 3.5e38, float(np.finfo(np.float64).max)])
def test_penalty_grad_refuses_coefficients_past_float32(name, v):
    p = [np.array([1.0, 0.0, -2.0], np.float32)]
    g = [np.zeros(3, np.float32)]
    kw = {"l1": 0.0, "l2": 0.0, name: v}
    want = rf"^{name}: {re.escape(repr(v))} is not finite in float32 \(the arrays' dtype\)$"
    with pytest.raises(ValueError, match=want):
        _cpu.penalty_grad_(p, g, kw["l1"], kw["l2"], None)
    assert not g[0].any()


def test_penalty_grad_coefficients_at_float32s_edge_and_in_float64():
    big = float(np.finfo(np.float32).max)
    p = [np.array([1.0, 0.0, -1.0], np.float32)]
    g = [np.zeros(3, np.float32)]
    _cpu.penalty_grad_(p, g, big, 0.0, None)
    np.testing.assert_array_equal(g[0], np.float32([big, 0.0, -big]))
    # float64 arrays round nothing: 1e39 is an ordinary coefficient there, as the wrapper takes it
    p64 = [np.array([1.0, 0.0, -1.0])]
    g64 = [np.zeros(3)]
    _cpu.penalty_grad_(p64, g64, 1e39, 0.0, None)
    np.testing.assert_array_equal(g64[0], [1e39, 0.0, -1e39])
    # no float32 array written: nothing to refuse (the wrapper's check looks at params[0] too)
    _cpu.penalty_grad_([], [], 1e39, 0.0, None)
    # the value alone is summed in float64
    assert _cpu.penalty_value(p, 1e39, 0.0, None) == 2e39


def test_bases_refuse_bools():
    # (True is an int to Python: the optimizers' own checks refuse it, the native call took it as 1)
    with pytest.raises(TypeError, match=r"^bases\[0\]: expected an int$"):
        states = [[np.zeros(8, np.float32)] for _ in range(2)]
        _adam_lowp([np.zeros(8, np.float32)], [np.ones(8, np.float32)], states, bases=[True])


def _run(w=None, wn=None, g=None, p=None, gn=None):
    a = np.zeros(4, np.float32)
    return (
        np.dtype(np.float32),
        [a] if w is None else w,
        ["w0"] if wn is None else wn,
        [np.zeros(4, np.float32)] if g is None else g,
        [a] if p is None else p,
        ["g0"] if gn is None else gn,
    )


@pytest.mark.parametrize(
    ("runs", "error", "match"),
    [
        # a bare 2-D array was walked as its rows: its rows were checked as the written arrays
        ([_run(w=np.zeros((2, 4), np.float32), wn=["w0", "w1"])], TypeError,
         r"^runs\[0\] written: expected a list, got numpy.ndarray$"),
        ([_run(g=np.zeros((1, 4), np.float32))], TypeError, r"^runs\[0\] grads: expected a list, got numpy.ndarray$"),
        ([np.zeros(6)], TypeError, r"^runs\[0\]: expected a \(dtype, written, .* tuple, got numpy.ndarray$"),
        # short runs and lists raised IndexError (no argument named)
        ([_run()[:2]], ValueError, r"^runs\[0\]: expected 6 items"),
        ([_run(), _run(wn=[])], ValueError, r"^runs\[1\]: expected one name per written array"),
        ([_run(p=[])], ValueError, r"^runs\[0\]: expected one name per written array and a param"),
    ],
)  # fmt: skip
def test_precheck_step_names_malformed_runs(runs, error, match):
    with pytest.raises(error, match=match):
        _cpu.precheck_step_(runs)


def test_precheck_step_still_checks_well_formed_runs():
    _cpu.precheck_step_([_run(), list(_run())])
    a = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"^w1 shares memory with w0"):
        _cpu.precheck_step_([_run(w=[a, a], wn=["w0", "w1"], p=[a])])
