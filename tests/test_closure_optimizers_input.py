"""What the closure-driven optimizers (optim.LBFGS, optim.NewtonCG, optim.SAM) take and refuse: a
one-element loss array of any shape, and params sharing memory refused at construction."""

import numpy as np
import pytest

from optkern import hessian, optim

C = np.array([1.0, -2.0, 3.0])


def make(kind, x):
    if kind == "LBFGS":
        return optim.LBFGS([x], max_iter=3)
    if kind == "NewtonCG":
        return optim.NewtonCG([x], hessian.from_hvp(lambda v: 2.0 * v, 3), damping=1e-3)
    return optim.SAM(optim.SGD([x], lr=0.1), rho=0.05)


@pytest.mark.parametrize("kind", ["LBFGS", "NewtonCG", "SAM"])
@pytest.mark.parametrize("shape", [(1,), (1, 1)])
def test_one_element_loss_array_of_any_shape_reads_as_its_number(kind, shape):
    """A NumPy loss of shape (1,) (a batch of one) is a one-element array as the docs say, taken
    like the torch tensor of that shape; float() refuses it under NumPy 2 (a TypeError before)."""
    runs = []
    for wrap in (float, lambda v: np.full(shape, v)):
        x = np.zeros(3)
        opt = make(kind, x)

        def closure(x=x, wrap=wrap):
            d = x - C
            return wrap(float(d @ d)), 2 * d

        runs.append((opt.step(closure), opt.step(closure), x))
    (a1, a2, xa), (b1, b2, xb) = runs
    assert (b1, b2) == (a1, a2) and a1 == 14.0  # the loss at the start, as a float
    assert xa.any()  # (the steps moved)
    np.testing.assert_array_equal(xb, xa)


@pytest.mark.parametrize("kind", ["LBFGS", "NewtonCG", "SAM"])
def test_loss_of_other_sizes_or_not_finite_still_refused(kind):
    """Other sizes are refused as before; a non-finite one-element array now reaches the finiteness
    check (it was refused as an array before, a TypeError)."""
    x = np.zeros(3)
    opt = make(kind, x)
    for loss, exc, match in (
        (np.ones(2), TypeError, r"closure: loss must be a real scalar, got an array of shape \(2,\)"),
        (np.ones((0,)), TypeError, r"closure: loss must be a real scalar, got an array of shape \(0,\)"),
        (np.array([np.nan]), ValueError, r"closure: returned a non-finite loss \(nan\)"),
        (np.array([[np.inf]]), ValueError, r"closure: returned a non-finite loss \(inf\)"),
        (np.array([1.0 + 0j]), TypeError, "closure: loss must be a real scalar"),
    ):
        with pytest.raises(exc, match=match):
            opt.step(lambda loss=loss: (loss, x - C))
        np.testing.assert_array_equal(x, 0.0)


@pytest.mark.parametrize("kind", ["LBFGS", "NewtonCG"])
@pytest.mark.parametrize("overlap", ["same array", "overlapping views"])
def test_params_sharing_memory_refused_at_construction(kind, overlap):
    """Each param is written from its slice of one flat vector: two that share memory would
    overwrite each other's update. Refused by the constructor, as the first-order optimizers refuse
    a param given twice (LBFGS found it only in its first step, after the closure had run and its
    state had changed; NewtonCG never: it stepped the aliased array twice)."""
    buf = np.zeros(4)
    params = [buf[:3], buf[:3]] if overlap == "same array" else [buf[:3], buf[1:]]
    if overlap == "same array":
        params[1] = params[0]
    args = () if kind == "LBFGS" else (hessian.from_hvp(lambda v: v, 6),)
    with pytest.raises(ValueError, match=r"params\[1\] shares memory with params\[0\] \(aliasing arrays"):
        getattr(optim, kind)(params, *args)
    # disjoint views of one buffer are fine, and step as one flat vector
    left, right = buf[:2], buf[2:]
    kw = {} if kind == "LBFGS" else {"curvature": hessian.from_hvp(lambda v: 2.0 * v, 4), "damping": 1e-6}
    opt = getattr(optim, kind)([left, right], **kw)
    c = np.array([1.0, 2.0, 3.0, 4.0])
    for _ in range(3):
        opt.step(lambda: (float((buf - c) @ (buf - c)), [2 * (left - c[:2]), 2 * (right - c[2:])]))
    np.testing.assert_allclose(buf, c, rtol=1e-6)
