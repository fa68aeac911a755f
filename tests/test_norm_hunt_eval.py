"""Eval-mode batch / instance norm only read their running statistics: a read-only buffer (running
statistics loaded with ``np.load(mmap_mode="r")`` or frozen with ``flags.writeable = False``) serves
inference as torch's does. They were refused ("running_mean: array is read-only") as if they were
to be updated. Training still refuses them before anything is written."""

import numpy as np
import pytest

from optkern import norm

torch = pytest.importorskip("torch", reason="torch is not installed")
F = torch.nn.functional


def _ro(a):
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 7), (2, 3, 4, 5)])
def test_eval_batch_norm_takes_read_only_running_statistics(dtype, shape):
    rng = np.random.default_rng(sum(shape))
    x, dy = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)
    rm, rv = _ro(rng.standard_normal(3).astype(dtype)), _ro(rng.uniform(0.5, 2, 3).astype(dtype))
    y, s = norm.batch_norm(x, w, b, rm, rv, training=False)
    dx, dw, db = norm.batch_norm_backward(dy, x, w, s)
    T = lambda a: torch.from_numpy(np.array(a, copy=True))
    tx, tw, tb = (T(a).requires_grad_() for a in (x, w, b))
    ty = F.batch_norm(tx, T(rm), T(rv), tw, tb, training=False)
    ty.backward(T(dy))
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for got, want in ((y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=tol, atol=tol)


def test_eval_instance_norm_takes_read_only_running_statistics():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6))
    rm, rv = _ro(rng.standard_normal(3)), _ro(rng.uniform(0.5, 2, 3))
    y, _ = norm.instance_norm(x, None, None, rm, rv, use_input_stats=False)
    ty = F.instance_norm(
        torch.from_numpy(x), torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy()), use_input_stats=False
    )
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_training_still_refuses_a_read_only_buffer_before_writing(fn):
    x = np.random.default_rng(2).standard_normal((4, 3, 5)).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), _ro(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="^running_var: array is read-only"):
        getattr(norm, fn)(x, running_mean=rm, running_var=rv)
    np.testing.assert_array_equal(rm, 0)
