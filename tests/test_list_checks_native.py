"""GradScaler.unscale_ and AveragedParams.update on NumPy arrays, whose lists now go to the native
call first (its checks name every array) and through the Python checks only when it refuses
them: a bad array, after a None entry too, raises the error naming its place in the caller's
list, and nothing is written. (CuPy: tests/test_cuda_list_checks.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from optkern.amp import GradScaler
from optkern.swa import AveragedParams


def _read_only(n):
    a = np.full(n, 8.0, np.float32)
    a.flags.writeable = False
    return a


def _misaligned(n):
    return np.frombuffer(np.zeros(4 * n + 1, np.uint8).data, dtype=np.float32, count=n, offset=1)


@pytest.mark.parametrize("none", [False, True], ids=["", "after-None"])
@pytest.mark.parametrize(
    "bad, exc, msg",
    [
        (lambda g: _read_only(5), ValueError, r"grads\[{i}\]: array is read-only"),
        (lambda g: _misaligned(5), ValueError, r"grads\[{i}\]: array data is misaligned"),
        (lambda g: np.full((5, 2), 8.0, np.float32)[:, 0], ValueError, r"grads\[{i}\]: array must be C-contiguous"),
        (lambda g: g[0][1:3], ValueError, r"grads\[{i}\] shares memory with grads\[0\]"),
        (lambda g: np.full(5, 8.0), TypeError, r"grads\[{i}\]: expected float32, float16 or bfloat16 gradients"),
        (lambda g: np.full(5, 8.0, np.float16), TypeError, r"grads\[{i}\]: float16 gradients are unscaled inside"),
        (lambda g: "x", TypeError, r"grads\[{i}\]: expected an array, got str"),
    ],
)
def test_grad_scaler_names_the_bad_grad_and_writes_nothing(bad, exc, msg, none):
    scaler = GradScaler(init_scale=4.0)
    grads = [np.full(7, 8.0, np.float32), np.full(3, -8.0, np.float32)] + ([None] if none else [])
    grads.append(bad(grads))
    before = [np.array(g, copy=True) if isinstance(g, np.ndarray) else g for g in grads]
    with pytest.raises(exc, match="^" + msg.format(i=len(grads) - 1)):
        scaler.unscale_(grads)
    for g, b in zip(grads[:2], before[:2]):
        np.testing.assert_array_equal(g, b)
    assert scaler.get_scale() == 4.0


def test_grad_scaler_skips_none_entries():
    scaler = GradScaler(init_scale=4.0)
    grads = [np.full(3, 8.0, np.float32), None, np.full(2, np.inf, np.float32)]
    assert scaler.unscale_(grads) is True
    np.testing.assert_array_equal(grads[0], 2.0)


@pytest.mark.parametrize(
    "bad, exc, msg",
    [
        (lambda avgs: np.ones((5, 1), np.float32), ValueError, r"^params\[2\]: expected shape \(5,\), got \(5, 1\)"),
        (lambda avgs: np.ones(5), TypeError, r"^params\[2\]: expected float32, got float64"),
        (lambda avgs: _misaligned(5), ValueError, r"^params\[2\]: array data is misaligned"),
        (lambda avgs: avgs[2], ValueError, r"^params\[2\] shares memory with averages\[2\]"),
        (lambda avgs: None, TypeError, r"^params\[2\]: expected a numpy.ndarray, got NoneType"),
    ],
)
def test_averaged_params_update_names_the_bad_param_and_writes_nothing(bad, exc, msg):
    params = [np.full(n, float(n), np.float32) for n in (7, 3, 5)]
    avg = AveragedParams(params, mode="ema", decay=0.5)
    avg.update(params)
    before = [a.copy() for a in avg.averages]
    with pytest.raises(exc, match=msg):
        avg.update([params[0] + 1, params[1] + 1, bad(avg.averages)])
    for a, b in zip(avg.averages, before):
        np.testing.assert_array_equal(a, b)
    assert avg.n_averaged == 1
