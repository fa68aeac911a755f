"""CUDA twin of tests/test_hunt39c_amp_scale.py: ``GradScaler.update(new_scale=<CuPy array>)`` on
a device scaler was copied unchecked: NaN, a negative, 0, a float64 1e39 (inf in float32) or a
subnormal whose unscale factor overflows became the scale (a negative one silently flips every
later step's direction), where the same value as a float or NumPy array raises ValueError
naming ``new_scale``. Now it is read back (4 bytes: update(new_scale) is a rare call) and checked
by the host's rule, and the device scale is kept on refusal."""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import amp
from optkern.optim import SGD

cp, _ = require_gpu()


def _device_scaler():
    s = amp.GradScaler(init_scale=8.0)
    p = cp.zeros(3, cp.float32)
    s.step(SGD([p], lr=1.0), [cp.ones(3, cp.float32)])
    s.update()
    assert isinstance(s._scale, cp.ndarray)
    return s


@pytest.mark.parametrize(
    "bad",
    [
        cp.array([np.nan], cp.float32),
        cp.array([-1.0], cp.float32),
        cp.zeros(1, cp.float32),
        cp.array([np.inf], cp.float16),
        cp.array([1e39]),
        cp.array([1e-40], cp.float32),
    ],
    ids=["nan", "negative", "zero", "inf16", "float64_1e39", "subnormal"],
)
def test_bad_device_values_are_refused_as_on_the_host(bad):
    s = _device_scaler()
    with pytest.raises(ValueError, match="^new_scale:"):
        s.update(new_scale=bad)
    with pytest.raises(ValueError, match="^new_scale:"):  # the host's error for the same value
        amp.GradScaler(init_scale=8.0).update(new_scale=cp.asnumpy(bad))
    assert s.get_scale() == 8.0 and isinstance(s._scale, cp.ndarray)


@pytest.mark.parametrize("bad", [cp.ones(2, cp.float32), cp.array([2]), cp.array([True])])
def test_wrong_shape_or_kind_is_a_type_error(bad):
    s = _device_scaler()
    with pytest.raises(TypeError, match="^new_scale:"):
        s.update(new_scale=bad)
    assert s.get_scale() == 8.0


@pytest.mark.parametrize(
    "good", [cp.array(0.5, cp.float32), cp.array([0.5], cp.float16), cp.array([[0.5]]), np.array([0.5])]
)
def test_good_values_set_the_device_scale(good):
    s = _device_scaler()
    s.update(new_scale=good)
    assert s.get_scale() == 0.5 and isinstance(s._scale, cp.ndarray) and s._scale.dtype == cp.float32
    assert s._scale.shape == (1,)


def test_a_device_value_for_a_host_scaler_is_refused_by_name():
    s = amp.GradScaler(init_scale=8.0)  # (its scale on the host: no device step yet)
    with pytest.raises(ValueError, match="^new_scale: a CUDA array for a scaler whose scale is on the CPU"):
        s.update(new_scale=cp.array([2.0], cp.float32))
    assert s.get_scale() == 8.0
