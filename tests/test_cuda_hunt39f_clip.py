"""clip_grads_with_norm_ with a CuPy total_norm holding a negative value (no norm is): the CPU
refuses a NumPy one (ValueError); the device, which reads it without a host synchronization, used
the negative factor max_norm / (total_norm + 1e-6) and flipped the sign of every gradient (an
ascent step), silently. It now makes NaN gradients, as a NaN total_norm does (torch's rule)."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import clip  # noqa: E402


def _grads(xp, dt=np.float32):
    rng = np.random.default_rng(39)
    return [xp.asarray(rng.standard_normal(n).astype(dt)) for n in (1, 7, 1023)]


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("bad", [-5.0, -1e-300, -np.inf])
def test_a_negative_device_norm_never_flips_the_gradients(dt, bad):
    with pytest.raises(ValueError, match=r"^total_norm: must be >= 0"):
        clip.clip_grads_with_norm_(_grads(np, dt), 0.5, np.full(1, bad))  # the CPU's answer
    gs = _grads(cp, dt)
    tn = cp.full(1, bad)
    clip.clip_grads_with_norm_(gs, 0.5, tn)
    for g in gs:
        assert bool(cp.isnan(g).all())  # as for a NaN norm: no sign flip, no finite value
    assert cp.asnumpy(tn).tobytes() == np.full(1, bad).tobytes()  # the caller's norm left alone


@pytest.mark.parametrize("norm", [0.0, 3.0, 1e6, np.inf, np.nan])
def test_a_nonnegative_device_norm_clips_as_on_the_cpu(norm):
    h, d = _grads(np), _grads(cp)
    clip.clip_grads_with_norm_(h, 0.5, np.full(1, norm))
    clip.clip_grads_with_norm_(d, 0.5, cp.full(1, norm))
    for x, y in zip(h, d):
        assert x.tobytes() == cp.asnumpy(y).tobytes()
