"""Bad input to the second-order optimizers (LBFGS, NewtonCG, SAM) and optkern.hessian: TypeError /
ValueError naming the argument, raised before anything is written; closures that raise at a trial
point leave the params where the step started."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optkern import hessian, optim

A = np.diag([1.0, 2.0, 3.0, 4.0])
X0 = np.array([1.0, -2.0, 0.5, 3.0])


def quad(x):
    """A closure on a strictly convex quadratic at the live array ``x``."""
    return lambda: (0.5 * float(x @ A @ x), A @ x)


def same(a, b) -> bool:
    """Equal nested state (dicts, lists, arrays compared by value and dtype)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, type(a)) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return bool(a == b)


def snapshot(opt, x):
    return copy.deepcopy(opt.state_dict()), x.copy()


def assert_unchanged(opt, x, snap):
    assert same(opt.state_dict(), snap[0])
    np.testing.assert_array_equal(x, snap[1])


def make(kind, x, **kw):
    """A stepped optimizer of ``kind`` over ``x`` (so that it has state to lose)."""
    if kind == "LBFGS":
        opt = optim.LBFGS([x], max_iter=3, history_size=5, **kw)
    elif kind == "NewtonCG":
        opt = optim.NewtonCG([x], hessian.as_operator(A), **kw)
    else:
        opt = optim.SAM(optim.Adam([x], lr=0.1), rho=0.05, **kw)
    opt.step(quad(x))
    return opt


# ---- load_state_dict -------------------------------------------------------------------------


DELETE = object()


def _set(path, value):
    """A function editing a copy of a state dict: ``value`` at ``path`` (DELETE: the entry removed)."""

    def edit(sd):
        sd = copy.deepcopy(sd)
        *head, last = path
        d = sd
        for k in head:
            d = d[k]
        if value is DELETE:
            del d[last]
        else:
            d[last] = value
        return sd

    return edit


BAD_LOADS = [
    # (optimizer, edit of its own state dict, exception, message)
    ("NewtonCG", lambda sd: None, TypeError, r"^state_dict: expected a dict"),
    ("NewtonCG", lambda sd: {}, ValueError, r"^state_dict: missing 'state'"),
    ("NewtonCG", lambda sd: {"param_groups": [{}], "state": []}, TypeError, r"^state_dict\['state'\]: expected a dict"),
    (
        "NewtonCG",
        lambda sd: {"param_groups": [{}], "state": {}},
        TypeError,
        r"^state_dict\['param_groups'\]\[0\]\['params'\]",
    ),
    ("NewtonCG", lambda sd: {**sd, "state": []}, TypeError, r"^state_dict\['state'\]: expected a dict"),
    ("NewtonCG", _set(("state", 0, "num_grad_evals"), "x"), TypeError, r"\['num_grad_evals'\]"),
    ("NewtonCG", _set(("param_groups", 0, "lr"), -1.0), ValueError, r"^state_dict\['param_groups'\]\[0\]\['lr'\]"),
    ("NewtonCG", _set(("param_groups", 0, "damping"), DELETE), ValueError, r"missing 'damping'"),
    ("NewtonCG", _set(("state", 0, "prev_step"), np.full(4, np.nan)), ValueError, r"\['prev_step'\]"),
    ("NewtonCG", _set(("state", 0, "prev_step"), np.ones(3)), ValueError, r"\['prev_step'\]"),
    ("NewtonCG", _set(("state", 0, "extra"), 1), ValueError, r"unknown key 'extra'"),
    ("NewtonCG", _set(("extra",), 1), ValueError, r"^state_dict: unknown key 'extra'"),
    ("SAM", lambda sd: None, TypeError, r"^state_dict: expected a dict"),
    ("SAM", lambda sd: {}, ValueError, r"^state_dict: missing 'base'"),
    ("SAM", _set(("rho",), DELETE), ValueError, r"^state_dict: missing 'rho'"),
    ("SAM", _set(("rho",), -1.0), ValueError, r"^state_dict\['rho'\]"),
    ("SAM", _set(("eps",), "x"), TypeError, r"^state_dict\['eps'\]"),
    ("SAM", _set(("base",), None), TypeError, r"^state_dict\['base'\]"),
    ("SAM", _set(("base", "param_groups", 0, "lr"), -1.0), ValueError, r"^state_dict\['base'\]: .*\['lr'\]"),
    ("SAM", _set(("extra",), 1), ValueError, r"^state_dict: unknown key 'extra'"),
    ("LBFGS", lambda sd: None, TypeError, r"^state_dict: expected a dict"),
    ("LBFGS", lambda sd: {**sd, "state": []}, TypeError, r"^state_dict\['state'\]: expected a dict"),
    ("LBFGS", _set(("extra",), 1), ValueError, r"^state_dict: unknown key 'extra'"),
    ("LBFGS", _set(("state", 0, "extra"), 1), ValueError, r"^state_dict\['state'\]\[0\]: unknown key 'extra'"),
    ("LBFGS", _set(("state", 1), {}), ValueError, r"^state_dict\['state'\]\[1\]"),
    ("LBFGS", _set(("param_groups", 0, "lr"), -1.0), ValueError, r"^state_dict\['param_groups'\]\[0\]\['lr'\]"),
    ("LBFGS", _set(("state", 0, "n_iter"), "x"), TypeError, r"^state_dict\['state'\]\[0\]\['n_iter'\]"),
    ("LBFGS", _set(("state", 0, "old_dirs"), DELETE), ValueError, r"missing 'old_dirs'"),
    ("LBFGS", _set(("state", 0, "ro"), 0.5), TypeError, r"\['ro'\]: expected a list"),
    ("LBFGS", _set(("state", 0, "ro", 0), -1.0), ValueError, r"\['ro'\]\[0\]"),
    ("LBFGS", _set(("state", 0, "old_stps", 1), np.ones(3)), ValueError, r"\['old_stps'\]\[1\]"),
    ("LBFGS", _set(("state", 0, "d"), np.full(4, np.inf)), ValueError, r"\['d'\]"),
    ("LBFGS", _set(("state", 0, "H_diag"), "x"), TypeError, r"\['H_diag'\]"),
    ("LBFGS", _set(("state", 0, "gram_sy"), DELETE), ValueError, r"'gram_yy' without 'gram_sy'"),
    ("LBFGS", _set(("state", 0, "gram_yy"), np.zeros((7, 7))), ValueError, r"\['gram_yy'\]"),
]


@pytest.mark.parametrize("kind,edit,exc,match", BAD_LOADS)
def test_bad_state_dict_is_refused_and_changes_nothing(kind, edit, exc, match):
    x = X0.copy()
    opt = make(kind, x)
    if kind == "LBFGS":
        for _ in range(2):  # three pairs in the history
            opt.step(quad(x))
    bad = edit(opt.state_dict())
    other = X0.copy()
    target = make(kind, other, **({"lr": 0.5} if kind != "SAM" else {}))
    snap = snapshot(target, other)
    rho = getattr(target, "rho", None)
    with pytest.raises(exc, match=match):
        target.load_state_dict(bad)
    assert_unchanged(target, other, snap)
    assert getattr(target, "rho", None) == rho


@pytest.mark.parametrize("kind", ["LBFGS", "NewtonCG", "SAM"])
def test_strict_false_ignores_unknown_keys(kind):
    x = X0.copy()
    opt = make(kind, x)
    sd = copy.deepcopy(opt.state_dict())
    sd["extra"] = 1
    y = X0.copy()
    target = make(kind, y)
    target.load_state_dict(sd, strict=False)
    assert same(target.state_dict(), opt.state_dict())


# ---- closures --------------------------------------------------------------------------------


class Stop(BaseException):
    """Not an Exception: an interrupt-like error must restore the params too."""


def failing_at(x, call: int, error):
    """A good closure that raises ``error`` on its ``call``-th call (1-based)."""
    n = [0]

    def closure():
        n[0] += 1
        if n[0] == call:
            raise error
        return quad(x)()

    return closure


@pytest.mark.parametrize("error", [KeyError("user"), Stop()])
@pytest.mark.parametrize("kind", ["LBFGS", "LBFGS-wolfe", "NewtonCG", "SAM"])
def test_closure_raising_at_a_trial_point_restores_the_params(kind, error):
    x = X0.copy()
    if kind.startswith("LBFGS"):
        opt = optim.LBFGS([x], max_iter=3, line_search_fn="strong_wolfe" if kind.endswith("wolfe") else None)
    elif kind == "NewtonCG":
        opt = optim.NewtonCG([x], hessian.as_operator(A))
    else:
        opt = optim.SAM(optim.SGD([x], lr=0.1), rho=0.05)
    snap = snapshot(opt, x)
    with pytest.raises(type(error)) as info:
        opt.step(failing_at(x, 2, error))  # call 2: the first trial point (SAM: the ascent point)
    assert info.value is error  # the closure's own exception, not wrapped
    np.testing.assert_array_equal(x, X0)
    if kind in ("NewtonCG", "SAM"):  # the whole step undone
        assert_unchanged(opt, x, snap)
    # the state is usable: the next steps run from the restored params and descend
    f0 = quad(x)()[0]
    for _ in range(3):
        opt.step(quad(x))
    assert quad(x)()[0] < f0
    if kind.startswith("LBFGS"):  # its state after the failure loads like any other
        optim.LBFGS([X0.copy()], max_iter=3).load_state_dict(opt.state_dict())


def test_lbfgs_closure_raising_mid_run_restores_the_iterate():
    x = X0.copy()
    opt = optim.LBFGS([x], max_iter=3)
    opt.step(quad(x))
    at = x.copy()
    with pytest.raises(KeyError):
        opt.step(failing_at(x, 3, KeyError("user")))  # a trial of the second iteration
    np.testing.assert_array_equal(x, opt._x)  # the iterate the failing trial started from
    assert not np.array_equal(x, at)
    opt.step(quad(x))  # and it carries on
    assert np.isfinite(x).all()


BAD_LOSSES = [("abc", TypeError), ("1.5", TypeError), (None, TypeError), (np.ones(2), TypeError), (1 + 2j, TypeError)]
BAD_LOSSES += [(np.complex128(1.0), TypeError), (float("nan"), ValueError), (10**400, ValueError)]


@pytest.mark.parametrize("loss,exc", BAD_LOSSES, ids=repr)
@pytest.mark.parametrize("call", [1, 2])
@pytest.mark.parametrize("kind", ["LBFGS", "NewtonCG", "SAM"])
def test_bad_closure_loss_names_closure_and_writes_nothing(kind, call, loss, exc):
    x = X0.copy()
    opt = make(kind, x)
    if kind == "NewtonCG":
        opt._cache = None  # the step evaluates at w first (call 1), then at the trial point
    snap = snapshot(opt, x)
    n = [0]

    def closure():
        n[0] += 1
        return (loss, A @ x) if n[0] == call else quad(x)()

    if kind == "NewtonCG" and call == 2 and exc is ValueError:
        # a non-finite loss at the trial point is a rejected step, not bad input (test_hunt55j_newton_cg_recovery)
        opt.step(closure)
        np.testing.assert_array_equal(x, snap[1])
        assert not opt.last["accepted"] and opt.last["rho"] == -np.inf
        return
    with pytest.raises(exc, match="^closure: "):
        opt.step(closure)
    np.testing.assert_array_equal(x, snap[1])
    if kind != "LBFGS" or call == 1:  # LBFGS keeps the iterations done before the failed trial
        assert_unchanged(opt, x, snap)


def test_sam_first_evaluation_names_the_closure():
    x = X0.copy()
    opt = optim.SAM(optim.SGD([x], lr=0.1))
    with pytest.raises(ValueError, match=r"^closure: grads\[0\]: expected shape"):
        opt.step(lambda: (1.0, np.ones(3)))
    np.testing.assert_array_equal(x, X0)


# ---- L-BFGS memory ---------------------------------------------------------------------------


def test_lbfgs_huge_history_size_allocates_only_what_it_stores():
    runs = []
    for history in (10**6, 2**40, 8):
        x = X0.copy()
        opt = optim.LBFGS([x], max_iter=4, history_size=history, tolerance_grad=0, tolerance_change=0)
        for _ in range(2):
            opt.step(quad(x))
        assert opt._sy.shape[0] <= 8
        runs.append(x)
    for x in runs[1:]:
        np.testing.assert_array_equal(x, runs[0])  # fewer than 8 pairs: the same iterates


# ---- hessian.cg ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        ({"b": np.ones(4) + 1j}, TypeError, r"^b: expected real"),
        ({"b": np.array(list("abcd"))}, TypeError, r"^b: expected real"),
        ({"x0": np.ones(4) * 1j}, TypeError, r"^x0: expected real"),
        ({"x0": np.full(4, np.nan)}, ValueError, r"^x0: has NaN"),
        ({"x0": np.ones(3)}, ValueError, r"^x0: expected shape"),
        ({"M": np.eye(3)}, ValueError, r"^M: expected an operator of shape \(4, 4\)"),
        ({"M": "x"}, TypeError, r"^M: expected"),
        ({"M": lambda r: r[:2]}, ValueError, r"^M: returned shape"),
        ({"precond_diag": np.array(list("abcd"))}, TypeError, r"^precond_diag: expected real"),
    ],
)
def test_cg_bad_input_names_the_argument(kw, exc, match):
    args = {"b": np.ones(4), **kw}
    kept = {k: np.array(v, copy=True) for k, v in args.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc, match=match):
        hessian.cg(A, **args)
    for k, v in kept.items():
        np.testing.assert_array_equal(args[k], v)


# ---- estimators and operators ----------------------------------------------------------------


@pytest.mark.parametrize("v0", [np.zeros(4), np.full(4, np.nan)])
def test_power_iteration_refuses_a_zero_or_nan_start(v0):
    with pytest.raises(ValueError, match=r"^v0: must be a finite nonzero vector"):
        hessian.power_iteration(A, v0=v0)


class _Op:
    def __init__(self, shape, dtype=np.float64):
        self.shape, self.dtype = shape, dtype

    def matvec(self, v):
        return v


@pytest.mark.parametrize(
    "make_op,exc,match",
    [
        (lambda: hessian.as_operator(_Op((4, 4, 4))), ValueError, r"^A: expected a square operator"),
        (lambda: hessian.as_operator(_Op((4, 4), "foo")), TypeError, r"^A: dtype: expected float32 or float64"),
        (lambda: hessian.from_hvp(lambda v: v, 4, dtype="foo"), TypeError, r"^dtype: expected"),
        (lambda: hessian.from_hvp(lambda v: v, 4, xp="np"), TypeError, r"^xp: expected the numpy or cupy"),
        (lambda: hessian.CurvatureOperator(lambda v: v, 4, xp=None), TypeError, r"^xp: "),
        (lambda: hessian.from_grad(lambda p: p, np.arange(3)), TypeError, r"^params: expected float32"),
        (lambda: hessian.from_grad(lambda p: p, [1.0, 2.0]), TypeError, r"^params: expected a numpy or cupy"),
        (lambda: hessian.from_grad(lambda p: p, np.array([1.0, np.nan])), ValueError, r"^params: has NaN"),
    ],
)
def test_operator_construction_names_the_argument(make_op, exc, match):
    with pytest.raises(exc, match=match):
        make_op()


@pytest.mark.parametrize(
    "grad_fn,exc,match",
    [
        (lambda p: None, TypeError, r"^grad_fn: expected it to return an array, got NoneType"),
        (lambda p: np.ones(5), ValueError, r"^grad_fn: returned shape \(5,\)"),
    ],
)
def test_from_grad_checks_what_grad_fn_returns(grad_fn, exc, match):
    op = hessian.from_grad(grad_fn, np.ones(3))
    with pytest.raises(exc, match=match):
        op.matvec(np.ones(3))


def test_operator_products_refuse_complex_vectors():
    op = hessian.as_operator(A)
    with pytest.raises(TypeError, match=r"^v: expected real numbers"):
        op.matvec(np.ones(4) * 1j)
