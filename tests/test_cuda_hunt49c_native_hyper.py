"""optkern._cuda's twin of test_hunt49c_native_hyper / _native_args: the optimizer steps refuse
out-of-range hyper-parameters, bad step counters and non-bool flags with the CPU module's errors
(one range table per optimizer description, signatures_optim.hpp; checks::Flag), before anything
is written; and the other bool parameters the modules share refuse None and ints alike.

Skipped without CuPy or without a visible GPU."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpu import raised, require_gpu
from optkern import _backend

cp, _cuda = require_gpu()
_cpu = _backend.cpu

ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False)
ADAM |= dict(maximize=False, float32_lr=False, step=1.0)


def _adam(xp, mod, **changed):
    p = [xp.asarray(np.linspace(-1.0, 1.0, 5, dtype=np.float32))]
    g = [xp.asarray(np.full(5, 0.25, np.float32))]
    m, v = [xp.zeros(5, dtype=xp.float32)], [xp.zeros(5, dtype=xp.float32)]
    kw = ADAM | changed
    return p, lambda: mod.adam_(p, g, m, v, None, **kw)


@pytest.mark.parametrize(
    "changed",
    [
        dict(lr=math.nan),
        dict(lr=-1.0),
        dict(beta2=1.0),
        dict(eps=0.0),
        dict(weight_decay=math.inf),
        dict(step=0.0),
        dict(step=1.5),
        dict(maximize=None),
        dict(decoupled_weight_decay=2),
        dict(float32_lr="yes"),
        # what float32 arrays cannot run, and wrong types for reals (hunt 50a: check_in_dtype, checks::Real)
        dict(eps=1e-50),
        dict(lr=1e300),
        dict(lr=1e10),
        dict(lr="0.1"),
        dict(beta2=None),
        dict(step="1"),
    ],
)
def test_adam_refuses_as_the_cpu_before_writing(changed):
    dp, dcall = _adam(cp, _cuda, **changed)
    hp, hcall = _adam(np, _cpu, **changed)
    got = raised(dcall)
    assert got == raised(hcall)
    assert got[1].startswith(f"{next(iter(changed))}: ")
    np.testing.assert_array_equal(cp.asnumpy(dp[0]), hp[0])
    np.testing.assert_array_equal(hp[0], np.linspace(-1.0, 1.0, 5, dtype=np.float32))


def test_nadam_product_and_capturable_flags_as_the_cpu():
    def call(xp, mod, mu, maximize=False):
        p = [xp.asarray(np.ones(3, np.float32))]
        g = [xp.asarray(np.ones(3, np.float32))]
        s = [[xp.zeros(3, dtype=xp.float32)] for _ in range(2)]
        return lambda: mod.nadam_(p, g, *s, 2e-3, 0.9, 0.999, 1e-8, 0.0, 4e-3, False, maximize, False, False, 1.0, mu)

    for mu in (1.5, math.nan):
        assert raised(call(cp, _cuda, mu)) == raised(call(np, _cpu, mu))
        assert raised(call(cp, _cuda, mu))[1].startswith("mu_product: ")
    assert raised(call(cp, _cuda, 1.0, None)) == raised(call(np, _cpu, 1.0, None))


@pytest.mark.parametrize("bad", [None, 2])
def test_shared_bool_parameters_as_the_cpu(bad):
    def call(xp, mod):
        x = xp.asarray(np.linspace(0.1, 1.0, 4, dtype=np.float32))
        out = xp.zeros(4, dtype=xp.float32)
        return out, lambda: mod.lowp_quantize_fixed_point(x, out, 8, 4, bad, 0, 0, 0)

    dout, dcall = call(cp, _cuda)
    _, hcall = call(np, _cpu)
    got = raised(dcall)
    assert got == raised(hcall)
    assert got[1].startswith("stochastic: expected a bool")
    assert not cp.asnumpy(dout).any()
