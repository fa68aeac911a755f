"""lanczos_orthogonalize_'s update rounds each product on its own, in every build.

GCC contracts `w -= c * q` into one fma in the ISA clones that have FMA (-O2 and up) and not in
the default clone or the -O1 sanitizer build; nvcc contracts it too. The bits of the Lanczos basis
then depended on the CPU's ISA level and the build. Now the update is round(w - round(c q)) row by
row, as NumPy computes it, everywhere (tests/test_cuda_hunt39h_orthonormal.py pins the GPU's
to the CPU's).
"""

import numpy as np
import pytest

from optkern import _cpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 1023, 4099])
def test_update_rounds_each_product(dtype, n):
    rng = np.random.default_rng(n)
    k = 5
    Q = rng.standard_normal((k, n)).astype(dtype)
    w0 = rng.standard_normal(n).astype(dtype)
    w = w0.copy()
    coeffs = np.zeros(k)
    norm = _cpu.lanczos_orthogonalize_(Q, k, w, coeffs, 1)
    ref = w0.copy()
    for i in range(k):
        ref = ref - dtype(coeffs[i]) * Q[i]  # NumPy: the product rounded, then the difference
    ref = ref * dtype(1.0 / norm)
    np.testing.assert_array_equal(w, ref)
