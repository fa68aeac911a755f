"""Issue 17 (56th, h340): the L-BFGS step's last move keeps no copy of the params.

``lbfgs_move_(params, None, d, t, True)`` is ``p = p + t d`` (the same fma as the saving move) with no
copy ``x`` written: optim.LBFGS uses it for the move that ends a step (``n_iter == max_iter`` without a
line search), which no evaluation follows, so nothing can need the iterate back. Checked here: the
bits against the saving move and a float64 reference, the refusals (before anything is written), the
optimizer's iterates against torch.optim.LBFGS in float64, and the restores around such moves.
"""

import numpy as np
import pytest
import torch

from optkern import _backend, optim

CPU = _backend.cpu
SIZES = [[0], [1], [7], [1023], [0, 1, 7, 1023, 3, 70_001]]


def _case(sizes, dtype, seed=5):
    rng = np.random.default_rng(seed)
    ps = [rng.standard_normal(n).astype(dtype) for n in sizes]
    d = rng.standard_normal(sum(sizes)).astype(dtype)
    return ps, d


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", SIZES)
def test_move_without_copy_is_the_saving_moves_bits(sizes, dtype):
    ps, d = _case(sizes, dtype)
    saved = [p.copy() for p in ps]
    x = np.empty(sum(sizes), dtype)
    CPU.lbfgs_move_(saved, x, d, 0.375, True)
    alone = [p.copy() for p in ps]
    CPU.lbfgs_move_(alone, None, d, 0.375, True)
    flat = np.concatenate(alone)
    np.testing.assert_array_equal(flat, np.concatenate(saved))
    # against float64: float32's t d + p is exact there, rounded once to float32 (the fma); float64's
    # within the rounding of the product and the sum (|t d| + |p|) eps
    td, p0 = 0.375 * d.astype(np.float64), np.concatenate(ps).astype(np.float64)
    if dtype == np.float32:
        np.testing.assert_array_equal(flat, (td + p0).astype(np.float32))
    else:
        assert np.all(np.abs(flat - (td + p0)) <= np.finfo(np.float64).eps * (np.abs(td) + np.abs(p0)))


def test_move_without_copy_refuses_save_false_and_overlap_before_writing():
    ps, d = _case([7, 1023], np.float32)
    before = [p.copy() for p in ps]
    with pytest.raises(ValueError, match=r"^x: None needs save=True"):
        CPU.lbfgs_move_(ps, None, d, 0.5, False)
    buf = np.arange(16, dtype=np.float32)
    with pytest.raises(ValueError, match="shares memory with params"):
        CPU.lbfgs_move_([buf[:8]], None, buf[4:12], 0.5, True)  # d overlaps the params
    with pytest.raises(ValueError, match="^d: expected shape"):
        CPU.lbfgs_move_(ps, None, d[:-1], 0.5, True)
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p, b)
    np.testing.assert_array_equal(buf, np.arange(16, dtype=np.float32))


@pytest.mark.parametrize("max_iter", [1, 3])
def test_iterates_equal_torch_float64_and_no_copy_kept_at_max_iter_1(max_iter):
    """The bench's problem (g = a x), float64, history 5 on 1023 params: torch's iterates (1e-10)."""
    rng = np.random.default_rng(17)
    a = rng.uniform(0.5, 2.0, 1023)
    x = rng.standard_normal(1023)
    xt = torch.tensor(x.copy(), requires_grad=True)
    at = torch.tensor(a)
    kw = dict(lr=0.3, max_iter=max_iter, history_size=5, tolerance_grad=0, tolerance_change=0)
    ours, theirs = optim.LBFGS([x], **kw), torch.optim.LBFGS([xt], **kw)

    def closure():
        return float(0.5 * a @ (x * x)), a * x

    def tclosure():
        theirs.zero_grad()
        loss = 0.5 * (at * xt * xt).sum()
        loss.backward()
        return loss

    for _ in range(12):
        ours.step(closure)
        theirs.step(tclosure)
        ref = xt.detach().numpy()
        assert np.max(np.abs(x - ref)) <= 1e-10 * np.max(np.abs(ref))
    assert (ours._x is None) == (max_iter == 1)  # (no n-length copy when no evaluation follows a move)


def test_restores_after_steps_that_kept_no_copy():
    """A failed evaluation puts the params back to the iterate of its own step, never to a copy of an
    earlier one; a failure at a step's start (nothing moved) leaves them as they are."""
    rng = np.random.default_rng(3)
    a, x = rng.uniform(0.5, 2.0, 1023).astype(np.float32), rng.standard_normal(1023).astype(np.float32)
    calls = [0]
    fail_at = [None]

    def closure():
        calls[0] += 1
        if calls[0] == fail_at[0]:
            raise RuntimeError("boom")
        return 0.0, a * x

    opt = optim.LBFGS([x], lr=0.01, max_iter=2, history_size=4, tolerance_grad=0, tolerance_change=0)
    for _ in range(3):
        opt.step(closure)  # (each ends with a move that keeps no copy; the first move of each keeps one)
    start = x.copy()
    fail_at[0] = calls[0] + 1  # the next step's first evaluation
    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    np.testing.assert_array_equal(x, start)
    fail_at[0] = calls[0] + 2  # the evaluation after the next step's first move
    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    np.testing.assert_array_equal(x, start)
    opt.param_groups[0]["max_iter"] = 1
    fail_at[0] = None
    opt.step(closure)
    assert not np.array_equal(x, start)
