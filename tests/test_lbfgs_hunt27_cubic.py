"""optim.LBFGS's cubic interpolation rounds as torch.optim.LBFGS's (hunt 27).

torch's ``3 * (f1 - f2) / (x1 - x2)`` in ``_cubic_interpolate`` is a Python float over a 0-d
tensor whenever a step is a tensor (a t computed from gtd), which torch evaluates as
``reciprocal() * other``: two roundings, not one division (26% of random float64 inputs differ).
optkern's port divided. Checked here operation for operation against torch's own function, with
torch's CPU ``Tensor.sqrt`` (not correctly rounded: tests/torch_ieee_sqrt.py) replaced by IEEE's
as optkern's is.

Whole runs are not torch's bit for bit (tests/test_lbfgs.py: to rounding): torch's ``dot`` is the
BLAS's (MKL's 8 / 16 running sums on x86-64 wheels, split over threads from 32 KiB) and its two
loops a sequence of dots and axpys, where optkern's fused native passes sum in another order.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.optim.lbfgs as torch_lbfgs  # noqa: E402

from optkern.optim import _line_search  # noqa: E402


@pytest.fixture
def ieee_sqrt(monkeypatch):
    """torch's Tensor.sqrt correctly rounded (NumPy's, which is IEEE's) for the duration of a test."""

    def sqrt(t):
        a = t.detach().cpu().numpy()
        return torch.from_numpy(np.asarray(np.sqrt(a), dtype=a.dtype).copy()).reshape(t.shape)

    monkeypatch.setattr(torch.Tensor, "sqrt", sqrt)


def _as(v, dtype, tensor: bool):
    if tensor:
        return torch.tensor(v, dtype=torch.float64 if dtype == np.float64 else torch.float32), dtype(v)
    return v, v


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bounded", [False, True])
def test_cubic_interpolate_rounds_as_torch(ieee_sqrt, dtype, bounded):
    """optkern's cubic_interpolate against torch's _cubic_interpolate, to the bit, with each step
    either a 0-d tensor (a step computed from gtd) or a Python float (``lr``; ``t_prev = 0``), the
    slopes tensors and the losses floats, as torch's line search calls it. Before the fix 3 (f1 -
    f2) / (x1 - x2) was one division where torch takes 1 / (x1 - x2) first."""
    rng = np.random.default_rng(1 if dtype == np.float64 else 2)
    diffs = 0
    for i in range(2000):
        x1, x2 = (float(v) for v in rng.uniform(0, 2, 2))  # Python floats, as torch's lr and 0
        if i % 7 == 0:
            x1 = 0.0
        f1 = float(rng.standard_normal())
        g1 = -abs(float(rng.standard_normal()))
        # nearly linear: f2 close to f1 + g1 (x2 - x1), g2 close to g1
        lin = i % 2 == 0
        f2 = float(f1 + g1 * (x2 - x1) * (1 + 1e-6 * rng.standard_normal()) if lin else rng.standard_normal())
        g2 = float(g1 * (1 + 1e-6 * rng.standard_normal()) if lin else rng.standard_normal())
        t1, o1 = _as(x1, dtype, tensor=(i % 3 == 1))
        t2, o2 = _as(x2, dtype, tensor=(i % 3 != 2))
        tg1, og1 = _as(g1, dtype, tensor=True)
        tg2, og2 = _as(g2, dtype, tensor=True)
        tb = ob = None
        if bounded:  # the bracketing phase's (min_step, max_step): tensors when its t is one
            (tlo, olo), (thi, ohi) = (_as(v, dtype, i % 3 != 2) for v in (x2 + 0.01 * (x2 - x1), x2 * 10))
            tb, ob = (tlo, thi), (olo, ohi)
        with np.errstate(all="ignore"):
            got = _line_search.cubic_interpolate(o1, f1, og1, o2, f2, og2, bounds=ob)
        want = torch_lbfgs._cubic_interpolate(t1, f1, tg1, t2, f2, tg2, bounds=tb)
        # a tensor there is a NumPy scalar of the params' dtype here (and a float a float)
        assert isinstance(want, torch.Tensor) == isinstance(got, np.floating)
        w, g = float(want), float(got)
        diffs += not (w == g or (w != w and g != g))
    assert diffs == 0
