"""Hunt 39c: SAM around a ``master_weights`` optimizer (float16 / bfloat16 params). The ascent
step is float32 / float64 only (``sam_perturb_``), yet SAM took such a base and every step
evaluated the closure and then raised ``TypeError: params[0]: expected float32 or float64, got
bfloat16`` -- naming an argument SAM does not have, after the user's closure ran. Now the
constructor refuses the base by name, as it refuses a closure-stepping one."""

import numpy as np
import pytest

from optkern.optim import SAM, SGD, Adam

ml_dtypes = pytest.importorskip("ml_dtypes")


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16])
@pytest.mark.parametrize("opt", [Adam, SGD])
def test_a_half_param_base_is_refused_by_name_at_construction(dtype, opt):
    p = np.ones(5, dtype)
    base = opt([p, np.ones(3, dtype)], lr=0.1, master_weights=True)
    with pytest.raises(TypeError, match=r"^base: SAM's ascent step takes float32 or float64 params, got "):
        SAM(base)


def test_float32_and_float64_bases_are_still_taken():
    for dt in (np.float32, np.float64):
        p = np.ones(5, dt)
        s = SAM(Adam([p], lr=0.1), rho=0.1)
        s.step(lambda dt=dt: (1.0, [np.ones(5, dt)]))
        assert (p < 1).all()
