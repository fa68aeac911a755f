"""optim.LBFGS's strong-Wolfe line search along a direction on which the loss is linear.

There the two slopes of the cubic interpolation are equal and its minimizer's denominator is 0.
torch computes it on 0-d tensors (inf / nan, then clamped to the step bounds) and goes on; a
float64 run kept its scalars as Python floats and raised ZeroDivisionError out of the line search,
with the params left at its trial point. L1 terms (|x|, hinge losses, ReLU nets) are piecewise
linear: the first trial point of a step usually lies on the same linear piece.
"""

import warnings

import numpy as np
import pytest

from optkern import optim

torch = pytest.importorskip("torch")


def l1(c):
    """f(x) = sum |x - c|: linear along any direction until a coordinate crosses c."""
    return lambda x: (float(np.abs(x - c).sum()), np.sign(x - c))


def points(fg, x0, steps, opt_cls, **hp):
    """The points at which the closure was called, and the losses each step returned."""
    if opt_cls is torch.optim.LBFGS:
        xt = torch.tensor(x0.copy(), requires_grad=True)
        opt = opt_cls([xt], **hp)
        seen = []

        def closure():
            p = xt.detach().numpy().copy()
            seen.append(p)
            loss, g = fg(p)
            xt.grad = torch.tensor(g)
            return torch.tensor(loss, dtype=torch.float64)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            losses = [float(opt.step(closure)) for _ in range(steps)]
        return seen, losses
    x = x0.copy()
    opt = opt_cls([x], **hp)
    seen = []

    def oclosure():
        seen.append(x.copy())
        return fg(x)

    return seen, [opt.step(oclosure) for _ in range(steps)]


@pytest.mark.parametrize(
    "x0,c",
    [
        (np.array([3.0]), np.array([0.0])),  # |x| from 3: the first trial point x = 2 has the same slope
        (np.array([3.0, -2.0, 5.0]), np.array([0.5, 0.25, -1.0])),
    ],
)
def test_strong_wolfe_on_a_linear_piece_follows_torch(x0, c):
    hp = {"line_search_fn": "strong_wolfe", "max_iter": 10}
    st, lt = points(l1(c), x0, 2, torch.optim.LBFGS, **hp)
    so, lo = points(l1(c), x0, 2, optim.LBFGS, **hp)  # raised ZeroDivisionError
    assert len(st) == len(so)
    for a, b in zip(st, so):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    assert lo == pytest.approx(lt, rel=1e-12)


def test_strong_wolfe_unbounded_linear_loss_extrapolates_like_torch():
    """sum(x): linear everywhere, so every extrapolation hits the 0 denominator; torch grows the step
    tenfold per trial (the inf minimizer clamped to max_step) until max_eval, and so does this.
    (Further on, torch's ``scalar / tensor``, a reciprocal then a product, rounds the cubic's d1 one
    ulp apart from a division, and the cancellation in d1^2 - g1 g2 amplifies it: max_eval stops
    before that.)"""
    fg = lambda x: (float(x.sum()), np.ones_like(x))
    hp = {"line_search_fn": "strong_wolfe", "max_iter": 5, "max_eval": 11}
    st, _ = points(fg, np.zeros(3), 1, torch.optim.LBFGS, **hp)
    so, _ = points(fg, np.zeros(3), 1, optim.LBFGS, **hp)
    assert len(st) == len(so) == 12
    for a, b in zip(st, so):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    assert so[-1][0] < -1e8  # it kept extrapolating


def test_float32_linear_piece_still_runs():
    """float32 (numpy.float32 scalars) was already quiet; the same problem in float32 as a check."""
    x = np.array([3.0, -2.0], dtype=np.float32)
    opt = optim.LBFGS([x], line_search_fn="strong_wolfe", max_iter=10)
    c = np.array([0.5, 0.25], dtype=np.float32)
    opt.step(lambda: (float(np.abs(x - c).sum()), np.sign(x - c).astype(np.float32)))
    assert np.abs(x - c).sum() < 5.0 - 0.5  # (it went down from |3 - 0.5| + |-2 - 0.25| = 4.75)
