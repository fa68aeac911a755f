"""GradScaler's scale where unscaling would destroy the params. The unscale multiplies by
``float32(1 / scale)`` and (as torch's) checks the gradients it reads, not the products: a scale
below 2.938737e-39 (float32 subnormals from 2**-128 down) made that reciprocal inf, so finite
gradients unscaled to inf (0 to NaN), found_inf stayed clear and the step wrote them into the
params. Refused by name where the user sets it (``init_scale``, ``update(new_scale)``); 0,
negative and non-finite scales were refused already. Normal tiny scales stay accepted (torch's)."""

import math

import numpy as np
import pytest

from optkern import amp, optim

# the smallest float32 scale whose float32 reciprocal is finite, and the one below it
SMALLEST = np.float32(2.0**-128 * (1 + 2.0**-21))  # 2.938737e-39, a subnormal
BELOW = np.nextafter(SMALLEST, np.float32(0))


def test_thresholds_are_where_the_reciprocal_overflows():
    with np.errstate(over="ignore"):
        assert math.isfinite(np.float32(1.0 / float(SMALLEST)))
        assert not math.isfinite(np.float32(1.0 / float(BELOW)))


@pytest.mark.parametrize("scale", [1e-40, 1e-45, 2.5e-39, float(BELOW)])
def test_init_scale_whose_reciprocal_overflows_is_refused_by_name(scale):
    with pytest.raises(ValueError, match=r"^init_scale: .*1 / init_scale .*overflows float32"):
        amp.GradScaler(init_scale=scale)


@pytest.mark.parametrize("scale", [1e-40, 2.0**-128])
def test_new_scale_whose_reciprocal_overflows_is_refused_and_nothing_changes(scale):
    sc = amp.GradScaler(init_scale=4.0)
    with pytest.raises(ValueError, match=r"^new_scale: .*1 / new_scale .*overflows float32"):
        sc.update(new_scale=scale)
    with pytest.raises(ValueError, match=r"^new_scale: .*overflows float32"):
        sc.update(new_scale=np.array([scale], np.float32))
    assert sc.get_scale() == 4.0


@pytest.mark.parametrize("scale", [float(SMALLEST), 2.0**-127, 1e-30, 2.0**-126])
def test_tiny_normal_scales_still_taken_and_step_is_finite(scale):
    p = [np.ones(4, np.float32)]
    opt = optim.SGD(p, lr=0.1)
    sc = amp.GradScaler(init_scale=scale)
    g = [np.full(4, 0.5, np.float32) * np.float32(sc.get_scale())]
    sc.step(opt, g)
    sc.update()
    assert np.all(np.isfinite(p[0]))
    sc.update(new_scale=scale)
    assert sc.get_scale() == np.float32(scale)


def test_zero_negative_and_nonfinite_still_refused():
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"^init_scale"):
            amp.GradScaler(init_scale=bad)
        with pytest.raises(ValueError, match=r"^new_scale"):
            amp.GradScaler().update(new_scale=bad)


def test_a_saved_backed_off_scale_still_loads():
    """torch's state_dict() writes whatever its backoff reached (0 after ~166 overflowing steps): it
    loads, as the smallest scale (tests/test_hunt38b_amp_floor.py: taken as it was, the next step
    wrote inf / NaN into the params)."""
    sc = amp.GradScaler()
    st = sc.state_dict()
    for s in (0.0, 1e-40):
        sc.load_state_dict({**st, "scale": s})
        assert sc.get_scale() == SMALLEST
