"""One step of each kind of optimizer that steps torch tensors through NumPy views (optkern.optim's
SGD, LBFGS, NewtonCG), for the tests of how they follow a tensor re-viewed in place
(tests/test_hunt48b_given_dtype_view.py, tests/test_hunt49d_given_narrowed.py)."""

from __future__ import annotations

import numpy as np

import optkern.optim as O
from optkern import hessian


def _closure(ps):
    def closure():
        return float(sum((p.double() ** 2).sum() for p in ps)), [2.0 * p.numpy() for p in ps]

    return closure


def stepper(kind, ps):
    """A no-argument step of a new ``kind`` ("sgd", "lbfgs", "newton") optimizer over torch tensors ``ps``
    (read at each step: a tensor the test puts in ``ps`` gets its grad), the optimizer as its ``opt``."""
    if kind == "sgd":
        opt = O.SGD(ps, lr=0.1, momentum=0.9)
        step = lambda: opt.step([np.ones(p.shape, np.float32) for p in ps])
    elif kind == "lbfgs":
        opt = O.LBFGS(ps, max_iter=2)
        step = lambda: opt.step(_closure(ps))
    else:
        opt = O.NewtonCG(ps, hessian.from_hvp(lambda v: 2.0 * v, 10, np.float32))
        step = lambda: opt.step(_closure(ps))
    step.opt = opt  # type: ignore[attr-defined]
    return step
