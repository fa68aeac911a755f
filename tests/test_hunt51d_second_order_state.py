"""LBFGS and NewtonCG checkpoints with tampered entries (hunt 51d).

Counters (``n_iter``, ``func_evals``, ``num_grad_evals``, ``num_hvps``) of 2**70 were loaded: a count
no run reaches, refused now as a negative one is (ValueError naming the entry, nothing changed).
"""

import copy

import numpy as np
import pytest

from optkern import hessian, optim


def _quadratic(n: int, seed: int):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    A = M @ M.T + n * np.eye(n)
    b = rng.standard_normal(n)
    return A, b


def _lbfgs(n: int = 7, seed: int = 0, steps: int = 2, **kw):
    A, b = _quadratic(n, seed)
    p = np.zeros(n)

    def closure():
        return float(0.5 * p @ A @ p - b @ p), [A @ p - b]

    opt = optim.LBFGS([p], max_iter=3, history_size=5, **kw)
    for _ in range(steps):
        opt.step(closure)
    return opt, p, closure


def _newton(n: int = 7, seed: int = 0):
    A, b = _quadratic(n, seed)
    p = np.zeros(n)

    def closure():
        return float(0.5 * p @ A @ p - b @ p), [A @ p - b]

    opt = optim.NewtonCG([p], hessian.from_hvp(lambda v: A @ v, n, dtype=np.float64))
    opt.step(closure)
    return opt, p, closure


def _same(a, b) -> None:
    """Two state dicts equal entry by entry (arrays by value)."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b or (a != a and b != b)


def _refused(opt, sd, error, match) -> None:
    before = opt.state_dict()
    with pytest.raises(error, match=match):
        opt.load_state_dict(sd)
    _same(opt.state_dict(), before)


@pytest.mark.parametrize("key", ["n_iter", "func_evals"])
@pytest.mark.parametrize(
    "value, error", [(2**70, ValueError), (2**63, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError)]
)
def test_lbfgs_counters_out_of_range_or_not_integers_are_refused(key, value, error):
    opt, _, _ = _lbfgs()
    sd = opt.state_dict()
    sd["state"][0][key] = value
    _refused(opt, sd, error, rf"^state_dict\['state'\]\[0\]\['{key}'\]: ")


@pytest.mark.parametrize("key", ["n_iter", "func_evals"])
def test_lbfgs_counters_up_to_int64_load(key):
    opt, _, _ = _lbfgs()
    sd = opt.state_dict()
    sd["state"][0][key] = np.int64(2**63 - 1)
    opt.load_state_dict(sd)
    assert opt.state_dict()["state"][0][key] == 2**63 - 1


@pytest.mark.parametrize("key", ["num_grad_evals", "num_hvps"])
@pytest.mark.parametrize(
    "value, error", [(2**70, ValueError), (2**63, ValueError), (-1, ValueError), (2.0, TypeError), (False, TypeError)]
)
def test_newton_cg_counters_out_of_range_or_not_integers_are_refused(key, value, error):
    opt, _, _ = _newton()
    sd = opt.state_dict()
    sd["state"][0][key] = value
    _refused(opt, sd, error, rf"^state_dict\['state'\]\[0\]\['{key}'\]: ")


def test_newton_cg_round_trip_still_loads():
    opt, _, _ = _newton()
    sd = copy.deepcopy(opt.state_dict())
    opt.load_state_dict(sd)
    _same(opt.state_dict(), sd)
