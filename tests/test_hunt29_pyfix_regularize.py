"""optkern.regularize: EarlyStopping's loaded counters and mix's arguments (defect hunt 29).

Defects fixed:
- ``EarlyStopping.load_state_dict`` checked each counter against its range only: a state whose
  ``num_bad`` disagreed with ``steps`` and ``best_step`` (every check after the best one is bad:
  ``num_bad = steps - 1 - best_step``), or whose ``best`` said a check improved while
  ``best_step = -1`` (or the reverse), loaded silently, and early stopping then fired checks late
  or early (``num_bad = 0`` five checks after the best: ``patience`` more checks than the
  uninterrupted run). Now ValueError naming the key, nothing changed.
- ``soft_targets(dtype=...)`` took any dtype NumPy knows (int32, bool, object, complex one-hot
  targets; None as float64) and junk failed with NumPy's message; its ``n`` was unchecked (a float
  n failed in NumPy, a negative or string one was blamed on ``y``); ``mixup`` / ``cutmix`` took
  targets on the other array module than the batch (NumPy x with CuPy y: inputs and targets on
  two devices). Now TypeError / ValueError naming ``dtype``, ``n``, ``y``.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import optkern
from optkern import regularize as reg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# ---- EarlyStopping.load_state_dict: the counters against each other ----------------------------


def _stopper_after(metrics, **kw):
    es = reg.EarlyStopping(**kw)
    for m in metrics:
        es.step(m)
    return es


@pytest.mark.parametrize(
    "change, key",
    [
        (dict(num_bad=0), "num_bad"),  # the best at check 2 of 6: three bad checks since
        (dict(num_bad=2), "num_bad"),
        (dict(best_step=4), "num_bad"),  # (in range: steps - 1 = 5)
        (dict(best_step=-1, num_bad=6), "best_step"),  # no improvement, but a finite best
        (dict(best_step=-1, num_bad=3), "num_bad"),  # no improvement: all six checks bad
    ],
)
def test_inconsistent_counters_are_refused_whole(change, key):
    good = dict(best=0.5, best_step=2, num_bad=3, steps=6, should_stop=False)
    es = _stopper_after([1.0, 2.0], patience=4)
    before = es.state_dict()
    with pytest.raises(ValueError, match=rf"^state\['{key}'\]: "):
        es.load_state_dict({**good, **change})
    assert es.state_dict() == before
    es.load_state_dict(good)
    assert es.state_dict() == {**good, "mode": "min", "kept": False}  # (nothing kept in memory)


@pytest.mark.parametrize("mode, best", [("min", float("inf")), ("max", float("-inf"))])
def test_a_best_of_the_start_value_needs_no_improvement(mode, best):
    """``best`` still the start value (no check improved) with a ``best_step`` of a check: refused."""
    es = reg.EarlyStopping(mode=mode)
    with pytest.raises(ValueError, match=r"^state\['best_step'\]: 1 "):
        es.load_state_dict(dict(best=best, best_step=1, num_bad=0, steps=2, should_stop=False))
    assert es.state_dict()["steps"] == 0
    # every state a real run passes through still loads back as it was (no improvement yet too),
    # and the resumed stopper stops where the uninterrupted run stops
    metrics = [3.0, 2.0, 2.5, 1.0, 4.0, 5.0, 6.0] if mode == "min" else [float("nan"), 0.1, 0.05, 0.3, 0.2, 0.1]
    whole = reg.EarlyStopping(mode=mode, patience=1)
    stops = [whole.step(m) for m in metrics]
    for k in range(len(metrics) + 1):
        es = reg.EarlyStopping(mode=mode, patience=1)
        es.load_state_dict(_stopper_after(metrics[:k], mode=mode, patience=1).state_dict())
        assert [es.step(m) for m in metrics[k:]] == stops[k:]


# ---- soft_targets / mixup / cutmix: dtype, n, y's module -------------------------------------------

Y = np.array([0, 2, 1])


@pytest.mark.parametrize(
    "dtype", [np.int32, np.int64, bool, np.uint8, object, np.complex64, "junk", None, "datetime64[s]", str, [1, 2]]
)
def test_soft_targets_refuses_non_float_dtypes(dtype):
    with pytest.raises(TypeError, match=r"^dtype: expected a floating dtype"):
        reg.soft_targets(Y, 3, 3, dtype=dtype)
    for good in (np.float16, np.float32, np.float64, "float64", np.dtype("f4")):  # (still taken)
        out = reg.soft_targets(Y, 3, 3, dtype=good)
        assert out.dtype == np.dtype(good)
        np.testing.assert_array_equal(out, np.eye(3)[Y])


@pytest.mark.parametrize(
    "n, exc", [(3.0, TypeError), ("3", TypeError), (True, TypeError), (None, TypeError), (-1, ValueError)]
)
def test_soft_targets_checks_n(n, exc):
    with pytest.raises(exc, match=r"^n: "):
        reg.soft_targets(Y, n, 3)


_MIXED_MODULES = r"""
import numpy as np, cupy
from optkern import regularize as reg
out = []
for fn, shape in ((reg.mixup, (3, 2)), (reg.cutmix, (3, 1, 4, 4))):
    x = np.ones(shape, np.float32)
    for xs, ys in ((x, cupy.asarray(np.array([0, 1, 2]))), (cupy.asarray(x), np.array([0, 1, 2]))):
        try:
            fn(xs, ys, num_classes=3, rng=0)
            out.append("accepted")
        except TypeError as e:
            out.append(str(e).split(":")[0])
print(",".join(out))
"""


def test_mixup_and_cutmix_refuse_targets_on_the_other_module():
    """Run with the CPU stand-in for CuPy (tools/cuda_emu/py): y on the other array module than x."""
    shim = os.path.join(os.path.dirname(ROOT), "tools", "cuda_emu", "py")
    if not os.path.isdir(os.path.join(shim, "cupy")):
        pytest.skip("tools/cuda_emu/py (the CuPy stand-in) is not in this tree")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, shim])}
    r = subprocess.run([sys.executable, "-c", _MIXED_MODULES], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "y,y,y,y"
