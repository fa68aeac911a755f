"""CuPy twin of test_hunt49g_instance_running_max / test_hunt49g_eval_rstd_overflow: the shared
Python paths (instance norm's batch averages, eval-mode rstd) take the scaled forms on CuPy too,
elementwise without a host sync, and give the CPU's values; a CuPy module's state loads a masked
array no more than a NumPy one does."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import norm  # noqa: E402

BIG = float(np.finfo(np.float64).max)


def test_instance_running_average_near_the_max_matches_the_cpu():
    x = np.random.default_rng(0).standard_normal((4, 3, 5))
    x[:, 1, :] = BIG * np.array([1.0, 0.75, 0.5, 1.0])[:, None]
    bufs = {}
    for xp in (np, cp):
        rm, rv = xp.zeros(3), xp.ones(3)
        norm.instance_norm(xp.asarray(x), None, None, rm, rv, momentum=0.5)
        bufs[xp.__name__] = (cp.asnumpy(rm) if xp is cp else rm, cp.asnumpy(rv) if xp is cp else rv)
    assert bufs["numpy"][0][1] == bufs["cupy"][0][1] == 0.5 * (BIG * 0.8125)
    assert np.isfinite(bufs["cupy"][0]).all() and np.isfinite(bufs["cupy"][1]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_rstd_past_the_max_matches_the_cpu(dtype):
    big = float(np.finfo(dtype).max) * 0.9
    x = np.linspace(-2, 2, 24).astype(dtype).reshape(4, 3, 2)
    rv = np.array([big, 1.0, big], dtype)
    got = {}
    for xp in (np, cp):
        _, s = norm.batch_norm(xp.asarray(x), None, None, xp.zeros(3, dtype), xp.asarray(rv), training=False, eps=big)
        got[xp.__name__] = cp.asnumpy(s.rstd) if xp is cp else s.rstd
    assert np.array_equal(got["numpy"], got["cupy"]) and (got["cupy"] > 0).all()


def test_cupy_module_refuses_a_masked_state_value():
    m = norm.BatchNorm(3, like=cp.zeros(1, cp.float32))
    sd = m.state_dict()
    sd["running_mean"] = np.ma.array(np.ones(3, np.float32), mask=[False, True, False])
    with pytest.raises(TypeError, match=r"^state_dict\['running_mean'\]: .*masked array"):
        m.load_state_dict(sd)
