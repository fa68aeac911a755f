"""Hunt 40d: float32 L-BFGS whose iterates diverge far enough that the newest pair's y.y overflows
float32 (lr 2**32 on a 12-dimensional quadratic: |y| ~ 1.6e19, y.y = inf with s.y and the loss
still finite) refuses the step with why, as it refuses a non-finite loss or gradient.

It raised the native direction kernel's ``ValueError: coef_s, coef_y: must be finite (entry 0)``,
two internal arguments no caller passes, from a history that already held the overflowing pair:
every later step raised it again, whatever lr it was given. (torch's LBFGS turns the params to
NaN there.)"""

import numpy as np
import pytest

from optkern import optim

RNG = np.random.default_rng(0)
Q = RNG.standard_normal((12, 12))
A = (Q @ Q.T / 12 + np.eye(12)).astype(np.float32)
B = RNG.standard_normal(12).astype(np.float32)
P0 = RNG.standard_normal(12).astype(np.float32)


def closure_for(p, seen):
    def closure():
        loss = float(0.5 * p @ A @ p - B @ p)
        seen.append(loss)
        return loss, [(A @ p - B).astype(np.float32)]

    return closure


@pytest.mark.parametrize("lr", [2.0**32, 2.0**64])
def test_an_overflowing_pair_is_refused_with_why(lr):
    p = P0.copy()
    opt = optim.LBFGS([p], lr=lr, max_iter=5, history_size=3)
    seen: list = []
    with pytest.raises(ValueError, match=r"diverge.*overflows float32") as e:
        opt.step(closure_for(p, seen))
    assert "coef_s" not in str(e.value)
    assert np.isfinite(p).all() and np.isfinite(seen).all()  # (the params: the last point evaluated)
    state = opt.state_dict()["state"][0]
    assert all(np.isfinite(np.dot(y.astype(np.float64), y.astype(np.float64))) for y in state["old_dirs"])
    assert all(np.isfinite(np.float32(y) @ np.float32(y)) for y in state["old_dirs"])


def test_the_history_kept_lets_a_smaller_lr_go_on():
    p = P0.copy()
    opt = optim.LBFGS([p], lr=2.0**32, max_iter=5, history_size=3)
    with pytest.raises(ValueError, match="diverge"):
        opt.step(closure_for(p, []))
    for group in opt.param_groups:
        group["lr"] = 1e-3
    seen: list = []
    opt.step(closure_for(p, seen))  # (no overflowing pair left to trip over)
    assert np.isfinite(p).all() and seen[-1] <= seen[0]


def test_float64_takes_the_same_steps():
    """(float64's y.y stays finite: its torch-equal path is untouched)"""
    p = P0.astype(np.float64)
    opt = optim.LBFGS([p], lr=2.0**32, max_iter=3, history_size=3)
    opt.step(lambda: (float(0.5 * p @ A @ p - B @ p), [(A.astype(np.float64) @ p - B)]))
