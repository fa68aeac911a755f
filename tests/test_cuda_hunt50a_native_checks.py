"""optkern._cuda's twin of test_hunt50a_native_checks: the optimizer steps refuse hyper-parameters
the arrays' dtype cannot run (checks::check_in_dtype) and a wrong type for a real argument
(checks::Real) with the CPU module's errors, before anything is written; SAM's, the penalty's and
L-BFGS's scalars take the same shared checks. (Adam's cases are in test_cuda_hunt49c_native_hyper's
table: eps=1e-50, lr=1e300 ... on float32.)

Skipped without CuPy or without a visible GPU."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpu import raised, require_gpu
from optkern import _backend

cp, _cuda = require_gpu()
_cpu = _backend.cpu


def test_nadam_beta1_rounding_to_one_and_adagrad_norm_lr_as_the_cpu():
    def nadam(xp, mod):
        p, g = [xp.asarray(np.ones(3, np.float32))], [xp.asarray(np.ones(3, np.float32))]
        s = [[xp.zeros(3, dtype=xp.float32)] for _ in range(2)]
        b1 = 1.0 - 1e-9
        return lambda: mod.nadam_(p, g, *s, 2e-3, b1, 0.999, 1e-8, 0.0, 4e-3, False, False, False, False, 1.0, 1.0)

    assert raised(nadam(cp, _cuda)) == raised(nadam(np, _cpu))

    def adagrad_norm(xp, mod, lr):
        p, g = [xp.asarray(np.ones(3, np.float32))], [xp.asarray(np.ones(3, np.float32))]
        return lambda: mod.adagrad_norm_(p, g, xp.ones(1, dtype=xp.float64), lr, 0.0, False)

    for lr in (1e39, 1e10, "0.1"):
        assert raised(adagrad_norm(cp, _cuda, lr)) == raised(adagrad_norm(np, _cpu, lr))


@pytest.mark.parametrize("v", [-1.0, math.nan, "0.1"])
def test_sam_penalty_and_lbfgs_scalars_as_the_cpu(v):
    def calls(xp, mod):
        p = [xp.asarray(np.linspace(-1.0, 1.0, 5))]
        ones, zeros = xp.ones(5), xp.zeros(5)
        return (
            [
                lambda: mod.sam_perturb_(p, [ones], [xp.zeros(5)], v, 0.0, xp.zeros(1)),
                lambda: mod.penalty_grad_(p, [xp.ones(5)], v, 0.0, xp.zeros(1)),
                lambda: mod.lbfgs_move_(p, xp.zeros(5), ones, math.nan if v == -1.0 else v, True),
            ],
            p,
            zeros,
        )

    dcalls, dp, _ = calls(cp, _cuda)
    hcalls, hp, _ = calls(np, _cpu)
    for d, h in zip(dcalls, hcalls):
        assert raised(d) == raised(h)
    np.testing.assert_array_equal(cp.asnumpy(dp[0]), hp[0])
