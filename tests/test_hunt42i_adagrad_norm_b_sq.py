"""AdaGrad-Norm's ``b^2`` given by the caller: the functional ``adagrad_norm_``'s ``b_sq`` and a
loaded state's ``b_sq``.

The optimizer refuses a ``b0`` whose rate ``lr / b0`` overflows the step's dtype (float32: the
rate rounds to inf, and a zero gradient's step inf * 0 turns every param into NaN). The same
``b^2`` reached the kernel unchecked through the functional form and through ``load_state_dict``:
params and ``b^2`` were written (NaN params) with no error. Both are now refused by the one bound
(``_hyper._check_rate_bound``), naming ``b_sq`` / the state entry, before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.functional as F
from optkern import optim

# lr = 1e-2: lr / sqrt(1e-84) = 1e40 overflows float32 (max 3.4e38); sqrt(1e-76) gives 1e36
TINY, SMALL = 1e-84, 1e-76


def test_functional_b_sq_whose_rate_overflows_float32_is_refused_before_any_write():
    p, b = np.ones(5, np.float32), np.array([TINY])
    msg = r"^b_sq: 1e-84 makes the step size lr / sqrt\(b\^2\) = 1e\+40 overflow float32"
    with pytest.raises(ValueError, match=msg):
        F.adagrad_norm_([p], [np.zeros(5, np.float32)], b, lr=1e-2)
    assert np.array_equal(p, np.ones(5, np.float32)) and b[0] == TINY


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_functional_b_sq_whose_rate_fits_steps_a_zero_gradient_to_no_change(dt):
    # the bound is the dtype's: float64 keeps lr / sqrt(1e-84) finite, float32 takes 1e-76
    b_sq = TINY if dt == np.float64 else SMALL
    p, b = np.ones(5, dt), np.array([b_sq])
    F.adagrad_norm_([p], [np.zeros(5, dt)], b, lr=1e-2)
    assert np.array_equal(p, np.ones(5, dt)) and b[0] == b_sq
    # a zero b^2 steps nothing (no rate to bound); the native check still names a negative one
    F.adagrad_norm_([p], [np.zeros(5, dt)], np.zeros(1), lr=1e-2)
    assert np.array_equal(p, np.ones(5, dt))
    with pytest.raises(ValueError, match="b_sq: must hold a finite b"):
        F.adagrad_norm_([p], [np.zeros(5, dt)], np.array([-1.0]), lr=1e-2)


@pytest.mark.parametrize("dt", [np.float32, np.float16])
def test_loaded_b_sq_whose_rate_overflows_is_refused_naming_the_entry(dt):
    kw = {"master_weights": True} if dt == np.float16 else {}
    p = np.ones(3, dt)
    src = optim.AdagradNorm([np.ones(3, dt)], lr=1e-2, **kw)
    src.step([np.zeros(3, dt)])
    sd = src.state_dict()
    sd["state"][0]["b_sq"] = TINY
    opt = optim.AdagradNorm([p], lr=1e-2, **kw)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['b_sq'\]: 1e-84 makes the step size"):
        opt.load_state_dict(sd)
    # nothing changed: the optimizer still steps from its own fresh b0^2
    assert opt.state_dict()["state"] == {}
    sd["state"][0]["b_sq"] = SMALL
    opt.load_state_dict(sd)
    opt.step([np.zeros(3, dt)])
    assert np.array_equal(p, np.ones(3, dt))
