"""AdaGrad-Norm's rate ``lr / b`` and an lr raised after ``b^2`` was bounded.

A loaded ``b_sq`` is bounded against the group's lr at the load (``_hyper._check_rate_bound``), a
fresh one (``b0^2``) at every group check. An lr raised later (``param_groups[i]["lr"] = big``, a
schedule) over a loaded tiny ``b^2`` was never bounded again: the rate rounded to inf in float32
and a zero gradient's step wrote NaN into every param. The step now rechecks the current ``b^2``
against the current lr, naming the lr, before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim

SMALL = 1e-76  # (lr = 1e-2: lr / sqrt(1e-76) = 1e36 fits float32; lr = 1e3 gives 1e41)


def _loaded(dt, **kw):
    src = optim.AdagradNorm([np.ones(3, dt)], lr=1e-2, **kw)
    src.step([np.zeros(3, dt)])
    sd = src.state_dict()
    sd["state"][0]["b_sq"] = SMALL
    p = np.ones(3, dt)
    opt = optim.AdagradNorm([p], lr=1e-2, **kw)
    opt.load_state_dict(sd)
    return p, opt


@pytest.mark.parametrize("dt", [np.float32, np.float16])
def test_lr_raised_over_a_loaded_tiny_b_sq_is_refused_at_the_step_naming_the_lr(dt):
    kw = {"master_weights": True} if dt == np.float16 else {}
    p, opt = _loaded(dt, **kw)
    opt.step([np.zeros(3, dt)])  # (the loaded lr's rate fits)
    opt.param_groups[0]["lr"] = 1e3
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['lr'\]: 1000.0 with the state's b\^2 = 1e-76 makes"):
        opt.step([np.zeros(3, dt)])
    assert np.array_equal(p, np.ones(3, dt))
    assert opt.state_dict()["state"] == before["state"]
    # the lr put back, the step runs (and the check holds for any lower lr without a new read)
    opt.param_groups[0]["lr"] = 1e-2
    opt.step([np.zeros(3, dt)])
    assert np.array_equal(p, np.ones(3, dt))


def test_lr_raised_where_b_sq_has_grown_enough_steps():
    # the bound is on the current b^2, not the loaded one: a gradient summed in since lifts it
    p, opt = _loaded(np.float32)
    opt.step([np.ones(3, np.float32)])  # b^2 = 1e-76 + 3
    opt.param_groups[0]["lr"] = 1e3
    opt.step([np.zeros(3, np.float32)])
    assert np.isfinite(p).all()


def test_float64_params_keep_the_wider_bound():
    p, opt = _loaded(np.float64)
    opt.param_groups[0]["lr"] = 1e3  # (1e41 fits float64)
    opt.step([np.zeros(3, np.float64)])
    assert np.array_equal(p, np.ones(3))


# ---- b^2 = 0 and a subnormal first gradient (the functional form) -----------------------------


@pytest.mark.parametrize("wd", [0.0, 1e-3])
def test_zero_b_sq_and_a_subnormal_gradient_is_refused_before_any_write(wd):
    # b^2 = 0 + ||g||^2 = 5.9e-90: lr / b = 4.1e42 overflows float32, and every param became -inf
    import optkern.functional as F

    p, b = np.full(3, 1e-40, np.float32), np.zeros(1)
    before = p.copy()
    with pytest.raises(ValueError, match=r"^b_sq: 0 plus this step's \|\|g'\|\|\^2 = .* overflow float32"):
        F.adagrad_norm_([p], [np.full(3, 1e-45, np.float32)], b, lr=1e-2, weight_decay=wd)
    assert np.array_equal(p, before) and b[0] == 0.0


def test_zero_b_sq_with_a_gradient_whose_rate_fits_steps_by_lr():
    import optkern.functional as F

    # ||g|| = 1e-30: the rate 1e28 fits float32; the step moves p by lr g / ||g|| = lr (float64 check)
    p, b = np.zeros(1, np.float32), np.zeros(1)
    F.adagrad_norm_([p], [np.full(1, 1e-30, np.float32)], b, lr=1e-2)
    assert np.isfinite(p).all() and abs(float(p[0]) + 1e-2) < 1e-8
    # a zero gradient at b^2 = 0 still steps nothing
    p, b = np.ones(2, np.float32), np.zeros(1)
    F.adagrad_norm_([p], [np.zeros(2, np.float32)], b, lr=1e-2)
    assert np.array_equal(p, np.ones(2, np.float32)) and b[0] == 0.0
