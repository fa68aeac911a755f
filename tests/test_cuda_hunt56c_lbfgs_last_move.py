"""The CUDA twin of lbfgs_move_'s no-copy form (x None: p = p + t d, the step's last move; h340): the
CPU's bits over params of odd sizes, and the same refusal of x None without save, nothing written."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _backend  # noqa: E402

CPU = _backend.cpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_move_without_copy_is_the_cpus_bits(dtype):
    rng = np.random.default_rng(56)
    sizes = [0, 1, 7, 1023, 3, 70_001] + [5] * 300
    hp = [rng.standard_normal(n).astype(dtype) for n in sizes]
    hd = rng.standard_normal(sum(sizes)).astype(dtype)
    ps = [cp.array(a) for a in hp]
    K.lbfgs_move_(ps, None, cp.array(hd), 0.375, True)
    cpu = [a.copy() for a in hp]
    CPU.lbfgs_move_(cpu, None, hd, 0.375, True)
    np.testing.assert_array_equal(np.concatenate([cp.asnumpy(a) for a in ps]), np.concatenate(cpu))


def test_move_without_copy_refuses_save_false_before_writing():
    p = cp.arange(7, dtype=cp.float32)
    with pytest.raises(ValueError, match=r"^x: None needs save=True"):
        K.lbfgs_move_([p], None, cp.ones(7, cp.float32), 0.5, False)
    np.testing.assert_array_equal(cp.asnumpy(p), np.arange(7, dtype=np.float32))
