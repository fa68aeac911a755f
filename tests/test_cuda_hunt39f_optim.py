"""functional.adagrad_norm_ on CuPy with a b_sq that holds no b^2 (NaN, inf, negative): the CPU's
ValueError naming b_sq, nothing written (the device step took it: a NaN b^2 stayed NaN with the
params left, a negative one plus ||g||^2 stepped with lr / sqrt(b^2 - 1), silently)."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import functional as F  # noqa: E402


def _arrays(xp):
    rng = np.random.default_rng(39)
    ps = [xp.asarray(rng.standard_normal(n)) for n in (1, 7, 1023)]
    gs = [xp.asarray(2 * rng.standard_normal(n)) for n in (1, 7, 1023)]
    return ps, gs


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, -1e-300])
def test_a_bad_b_sq_raises_the_cpus_error_and_writes_nothing(bad):
    errors = []
    for xp in (np, cp):
        ps, gs = _arrays(xp)
        b = xp.asarray(np.full(1, bad))
        before = [cp.asnumpy(p) if xp is cp else p.copy() for p in ps]
        with pytest.raises(ValueError, match=r"^b_sq: must hold a finite b\^2 >= 0") as e:
            F.adagrad_norm_(ps, gs, b, lr=0.1)
        errors.append(str(e.value))
        for p, q in zip(ps, before):
            np.testing.assert_array_equal(cp.asnumpy(p) if xp is cp else p, q)
        got = cp.asnumpy(b) if xp is cp else b
        assert got.tobytes() == np.full(1, bad).tobytes()
    assert errors[0] == errors[1]


@pytest.mark.parametrize("start", [0.0, 1e-4, 4.0])
def test_a_good_b_sq_steps_as_on_the_cpu(start):
    out = []
    for xp in (np, cp):
        ps, gs = _arrays(xp)
        b = xp.asarray(np.full(1, start))
        F.adagrad_norm_(ps, gs, b, lr=0.1)
        out.append(([cp.asnumpy(p) if xp is cp else p for p in ps], float(b[0])))
    (pa, ba), (pb, bb) = out
    assert ba == pytest.approx(bb, rel=1e-14)
    for x, y in zip(pa, pb):
        np.testing.assert_allclose(x, y, rtol=1e-13)
