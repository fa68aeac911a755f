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

    def closure():  # (a quartic: the history fills, n = 1 included)
        return float(0.5 * p @ A @ p + 0.1 * np.sum(p**4) - b @ p), [A @ p + 0.4 * p**3 - b]

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


# ---- LBFGS's derived entries: gram_sy, gram_yy, ro, H_diag ------------------------------------------
# They were loaded as saved: a stale or tampered one changed every later direction (gram_sy * 3: other
# iterates, no error). Now ro and H_diag are derived from the Gram matrices, never read; the saved Gram
# matrices are checked against the vectors (a tampered one refused: tests/test_hunt51j_lbfgs_load.py),
# and rebuilt by the step's own kernel for a checkpoint without them (torch's).


def _continue(sd, n=7, seed=0, dtype=np.float64, steps=2):
    """Params after ``steps`` more steps of a fresh LBFGS loaded from ``sd`` at the saved point."""
    opt, p, closure = _lbfgs(n, seed, steps=0)
    p[...] = sd["_at"]
    opt.load_state_dict({k: v for k, v in sd.items() if k != "_at"})
    for _ in range(steps):
        opt.step(closure)
    return p.copy(), opt


def _saved(n=7, seed=0):
    opt, p, _ = _lbfgs(n, seed, steps=2)
    sd = opt.state_dict()
    assert len(sd["state"][0]["old_stps"]) >= 2  # (a history to tamper with)
    sd["_at"] = p.copy()
    return sd


def _tamper(sd, key):
    st = copy.deepcopy(sd)
    e = st["state"][0]
    if key == "ro":
        e[key] = [r * 5.0 for r in e[key]]
    elif key == "H_diag":
        e[key] = e[key] * 7.0
    else:  # "no_gram": torch's layout
        del e["gram_sy"], e["gram_yy"]
    return st


@pytest.mark.parametrize("key", ["ro", "H_diag", "no_gram"])
@pytest.mark.parametrize("n", [1, 7, 1023])
def test_derived_entries_are_taken_from_the_vectors(key, n):
    sd = _saved(n, seed=n)
    want, ref = _continue(copy.deepcopy(sd), n, seed=n)
    got, opt = _continue(_tamper(sd, key), n, seed=n)
    np.testing.assert_array_equal(got, want)
    # what was loaded is what the step itself keeps (the loaded optimizer's own products, bit for bit)
    k = len(opt._S)
    sy, yy = opt._gram_of(opt._S, opt._Y)
    np.testing.assert_array_equal(opt._sy[:k, :k], sy)
    np.testing.assert_array_equal(opt._yy[:k, :k], yy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 1023, 40000])
def test_recomputed_products_are_the_runs_bits(dtype, n):
    """A run's own Gram matrices, ro and H_diag equal the ones rebuilt from its vectors, bit for bit: so a
    checkpoint loaded continues exactly as the run that saved it (pairs dropped from a full history too)."""
    rng = np.random.default_rng(n)
    dd, b = rng.uniform(1, 5, n), rng.standard_normal(n)
    p = np.zeros(n, dtype)

    def closure():
        x = p.astype(np.float64)
        return float(0.5 * (dd * x * x).sum() + 0.1 * (x**4).sum() - b @ x), [(dd * x + 0.4 * x**3 - b).astype(dtype)]

    opt = optim.LBFGS([p], max_iter=9, history_size=3)
    for _ in range(2):
        opt.step(closure)
    k = len(opt._S)
    assert k == 3
    sy, yy = opt._gram_of(opt._S, opt._Y)
    np.testing.assert_array_equal(sy, opt._sy[:k, :k])
    np.testing.assert_array_equal(yy, opt._yy[:k, :k])
    assert [1.0 / sy[j, j] for j in range(k)] == opt._ro
    assert sy[k - 1, k - 1] / yy[k - 1, k - 1] == opt._h_diag
    # and against float64 NumPy (independent sums), to the dtype's rounding
    S = np.stack([s.astype(np.float64) for s in opt._S])
    Y = np.stack([y.astype(np.float64) for y in opt._Y])
    scale = np.outer(np.linalg.norm(S, axis=1), np.linalg.norm(Y, axis=1))
    tol = 1e-5 if dtype == np.float32 else 1e-13
    assert np.all(np.abs(sy - S @ Y.T) <= tol * scale)


def test_a_pair_without_positive_curvature_is_refused_naming_it():
    sd = _saved()
    st = copy.deepcopy(sd)
    st["state"][0]["old_dirs"][1] = -st["state"][0]["old_dirs"][1]  # s.y < 0: never kept by a step
    del st["state"][0]["gram_sy"], st["state"][0]["gram_yy"]  # (torch's layout: with them, gram_sy is named)
    opt, _, _ = _lbfgs(steps=0)
    with pytest.raises(ValueError, match=r"^state_dict\['state'\]\[0\]\['old_stps'\]\[1\], .*\['old_dirs'\]\[1\]: "):
        opt.load_state_dict({k: v for k, v in st.items() if k != "_at"})
    assert opt.state_dict()["state"] == {0: {"func_evals": 0, "n_iter": 0}}
