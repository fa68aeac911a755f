"""Review fixes of the native checks: lowp_step's step bound, cg's scalar messages, NumPy bools
by type, and NAdam's mu_product above 1 only where the step's product stays below 1."""

import math

import numpy as np
import pytest

from optkern import _cpu

ADAM = [1e-3, 0.9, 0.999, 1e-8, 0.0]
NADAM = ADAM + [4e-3]


def _lowp(rule: str, scalars: list, step: int) -> dict:
    p, g = np.linspace(-1.0, 1.0, 5).astype(np.float32), np.full(5, 0.5, np.float32)
    n_states = 1 if rule == "adagrad" else 2
    return dict(
        rule=rule, scalars=scalars, flags=[False, False, False], params=[p], grads=[g], masters=None,
        states=[[np.zeros_like(p)] for _ in range(n_states)], scales=None, param_dtype="float32",
        state_dtype="float32", stochastic=False, seed=0, step=step, block=256,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "scalars"), [("adam", ADAM), ("adagrad", [1e-2, 0.0, 0.0, 1e-10]), ("nadam", NADAM + [1.0])]
)
def test_lowp_step_bounds_the_step_as_the_fp32_steps_do(rule, scalars):
    """lowp_step checked only step >= 1: step = 2**60 ran (adam_ refuses past 2**53)."""
    for step in (0, 2**53 + 2, 2**60):
        kw = _lowp(rule, scalars, step)
        p0 = kw["params"][0].copy()
        with pytest.raises(ValueError, match=r"^step: must be an integer in \[1, 2\*\*53\], got "):
            _cpu.lowp_step(**kw)
        assert np.array_equal(kw["params"][0], p0)
    _cpu.lowp_step(**_lowp(rule, scalars, 2**53))


def test_cg_scalar_messages_are_the_python_layers():
    """cg's finite() formatted with std::to_string: a negative NaN read "-nan" (Python: "nan")."""
    v = [np.ones(3) for _ in range(4)]
    with pytest.raises(ValueError, match=r"^alpha: must be finite, got nan$"):
        _cpu.cg_update_(*v, -math.nan, 0.0)
    with pytest.raises(ValueError, match=r"^damping: must be finite, got -inf$"):
        _cpu.cg_update_(*v, 0.5, -math.inf)


def _raises(self):
    raise RuntimeError("no truth value")


# classes that only call themselves NumPy's bool
FAKE_BOOLS = [
    type("numpy.bool", (), {"__bool__": lambda self: True}),
    type("numpy.bool_", (), {"__bool__": _raises}),
]


@pytest.mark.parametrize("fake", FAKE_BOOLS, ids=["true", "raising"])
def test_a_flag_is_numpys_bool_by_type_not_by_name(fake):
    """flag() took any class named "numpy.bool": its __bool__ decided, and when it raised the step
    ran as False with the exception left set."""
    kw = dict(params=[np.ones(3)], grads=[np.ones(3)], momentum_buffers=[np.zeros(3)], lr=0.1, momentum=0.9)
    kw |= dict(dampening=0.0, weight_decay=0.0, nesterov=False, textbook=False, step=1.0)
    p0 = kw["params"][0].copy()
    with pytest.raises(TypeError, match=r"^maximize: expected a bool, got "):
        _cpu.sgd_(**kw, maximize=fake())
    assert np.array_equal(kw["params"][0], p0)
    for given in (np.bool_(True), np.bool_(False)):  # NumPy's own still read as their value
        a, b = [np.ones(3)], [np.ones(3)]
        _cpu.sgd_(**kw | dict(params=a, momentum_buffers=[np.zeros(3)]), maximize=given)
        _cpu.sgd_(**kw | dict(params=b, momentum_buffers=[np.zeros(3)]), maximize=bool(given))
        np.testing.assert_array_equal(a[0], b[0])


def _nadam_kwargs(**changed) -> dict:
    kw = dict(params=[np.linspace(-1.0, 1.0, 3)], grads=[np.full(3, 0.25)], exp_avgs=[np.zeros(3)])
    kw |= dict(exp_avg_sqs=[np.zeros(3)], lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
    kw |= dict(momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False, float64_product=False)
    return kw | dict(float32_lr=False, step=1.0, mu_product=1.0) | changed


def _mu(beta1, psi, t):
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))


def test_mu_product_above_one_only_where_the_steps_product_stays_below_one():
    """mu_product = 1 + 2**-23 with beta1 = 1 - 2**-24 made a product above 1: 1 - prod_t < 0 and
    float64 params went 1.0 -> -11183."""
    bad = dict(mu_product=1.0 + 2.0**-23, beta1=1.0 - 2.0**-24, momentum_decay=1e9, params=[np.ones(3)])
    kw = _nadam_kwargs(**bad)
    with pytest.raises(ValueError, match=r"^mu_product: above 1 only where the product of this step"):
        _cpu.nadam_(**kw)
    assert np.array_equal(kw["params"][0], np.ones(3))
    lw = _lowp("nadam", [1e-3, 1.0 - 2.0**-24, 0.999, 1e-8, 0.0, 1e9, 1.0 + 2.0**-23], 1)
    p0 = lw["params"][0].copy()
    with pytest.raises(ValueError, match=r"^scalars\[6\] \(mu_product\): above 1 only where"):
        _cpu.lowp_step(**lw)
    assert np.array_equal(lw["params"][0], p0)
    # what optkern.torch passes (torch/adam.py's _rule_mu_product): torch's float32 product (here of
    # its first step, from 1) over mu_t, a float32 rounding above 1
    for t, beta1 in ((1.0, 0.9), (1000.0, 0.9), (5.0, 0.99)):
        mu = _mu(beta1, 4e-3, t)
        torch_product = float(np.float32(mu))
        pre = torch_product / mu
        assert pre > 1.0
        out = _cpu.nadam_(**_nadam_kwargs(beta1=beta1, step=t, mu_product=pre))
        assert out == pytest.approx(torch_product, rel=2**-52)
