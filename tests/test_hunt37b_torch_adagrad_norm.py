"""optkern.torch.AdagradNorm's b0 taken as its other hyper-parameters are (hunt 37b).

``AdagradNorm(params, b0=np.float32(0.25))`` (or ``np.int64(1)``, or a 0-d tensor) was refused with
"b0: must be a finite number in (0, 1e150), got np.float32(0.25)": the adapter's own check took only
Python ints and floats, while ``lr`` (and optkern.optim.AdagradNorm's ``b0``) take any real number.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")


def _trajectory(b0, steps: int = 6) -> list:
    gen = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(4, 3, generator=gen, dtype=torch.float64)) for _ in range(2)]
    opt = ot.AdagradNorm(ps, lr=0.1, b0=b0)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        opt.step()
    return [p.detach().clone() for p in ps] + [opt.state[ps[0]]["b_sq"].clone()]


@pytest.mark.parametrize(
    "b0, as_float",
    [
        (np.float32(0.25), 0.25),
        (np.int64(1), 1.0),
        (torch.tensor(0.25, dtype=torch.float64), 0.25),
        (torch.tensor(0.25), 0.25),  # (0.25 exact in float32)
    ],
    ids=["np.float32", "np.int64", "tensor64", "tensor32"],
)
def test_b0_numpy_scalar_or_tensor_steps_as_the_float(b0, as_float):
    got, want = _trajectory(b0), _trajectory(as_float)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


@pytest.mark.parametrize(
    "b0, exc, match",
    [
        ("0.1", TypeError, r"\['b0'\]"),
        (True, TypeError, r"\['b0'\]"),
        (0.0, ValueError, r"\['b0'\]"),
        (float("nan"), ValueError, r"\['b0'\]"),
        (1e200, ValueError, r"\['b0'\]"),
        (np.float64(1e200), ValueError, r"\['b0'\]"),
    ],
)
def test_bad_b0_still_refused_naming_it(b0, exc, match):
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(exc, match=match):
        ot.AdagradNorm([p], b0=b0)


def test_b0_added_group_numpy_scalar():
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = ot.AdagradNorm([p], b0=0.5)
    opt.add_param_group({"params": [q], "b0": np.float32(2.0)})
    q.grad = torch.ones(2)
    opt.step()
    assert opt.state[q]["b_sq"].item() == 4.0 + 2.0
