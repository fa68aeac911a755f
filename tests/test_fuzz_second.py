"""Fuzzing the second-order optimizers (LBFGS, NewtonCG, SAM) against the contract in
fuzz_contract.py, on a separable quadratic over several arrays: after a few valid steps, one
spoiled thing -- the closure's result at the start of a step, or one entry of a state dict loaded
into a fresh optimizer -- raises TypeError / ValueError naming it (``closure``, ``state_dict``),
with no param and no state written; a valid step keeps the params finite, and a state dict round
trip continues bit for bit as the optimizer it came from."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from fuzz_contract import check_call
from optkern import hessian, optim

pytestmark = pytest.mark.fuzz

SHAPES = [(1,), (7,), (3, 5), (40,)]
CLOSURE_SPOILS = [
    "nan_loss",
    "inf_grad",
    "short_grad",
    "other_dtype",
    "int_grad",
    "grads_count",
    "not_tuple",
    "str_loss",
]
SD_SPOILS = ["drop", "none", "string", "nan", "negative", "short", "other_dtype", "extra_key", "list_of_one"]


class Quadratic:
    """f(x) = sum_i 0.5 a_i x_i^2 - b_i x_i over the params (a > 0): SPD, minimum at b / a."""

    def __init__(self, rng, params):
        self.a = [rng.uniform(0.5, 4.0, p.shape) for p in params]
        self.b = [rng.standard_normal(p.shape) for p in params]
        self.params = params

    def loss_grads(self):
        loss = sum(float(np.sum(0.5 * a * p * p - b * p)) for a, b, p in zip(self.a, self.b, self.params))
        return loss, [(a * p - b).astype(p.dtype) for a, b, p in zip(self.a, self.b, self.params)]

    def spoiled(self, kind, i):
        loss, g = self.loss_grads()
        p = self.params[i]
        if kind == "nan_loss":
            return float("nan"), g
        if kind == "inf_grad":
            g[i] = g[i].copy()
            g[i].reshape(-1)[0] = np.inf
        elif kind == "short_grad":
            g[i] = g[i].reshape(-1)[:-1]
        elif kind == "other_dtype":
            g[i] = g[i].astype(np.float32 if p.dtype == np.float64 else np.float64)
        elif kind == "int_grad":
            g[i] = g[i].astype(np.int64)
        elif kind == "grads_count":
            g = g + [g[i]]
        elif kind == "not_tuple":
            return loss
        elif kind == "str_loss":
            return "abc", g
        return loss, g


def _operator(q):
    diag = np.concatenate([a.reshape(-1) for a in q.a])
    return hessian.CurvatureOperator(lambda v: diag.astype(v.dtype) * v, diag.size, q.params[0].dtype)


def _make(name, hp, params, q):
    if name == "LBFGS":
        return optim.LBFGS(params, **hp)
    if name == "NewtonCG":
        return optim.NewtonCG(params, _operator(q), **hp)
    return optim.SAM(optim.SGD(params, lr=0.1, momentum=0.9), **hp)


@st.composite
def cases(draw):
    name = draw(st.sampled_from(["LBFGS", "NewtonCG", "SAM"]))
    hp = {
        "LBFGS": lambda: dict(
            lr=draw(st.sampled_from([1.0, 0.5])),
            history_size=draw(st.integers(1, 4)),
            max_iter=draw(st.integers(1, 4)),
            line_search_fn=draw(st.sampled_from([None, "strong_wolfe"])),
        ),
        "NewtonCG": lambda: dict(damping=draw(st.sampled_from([1.0, 1e-3])), max_cg_iter=draw(st.integers(1, 6))),
        "SAM": lambda: dict(rho=draw(st.sampled_from([0.05, 0.5]))),
    }[name]()
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
    warm = draw(st.integers(0, 3))
    what = draw(st.sampled_from(["closure", "state_dict", "round_trip"] if name != "SAM" else ["closure"]))
    spoil = draw(st.sampled_from(CLOSURE_SPOILS if what == "closure" else SD_SPOILS))
    i = draw(st.integers(0, len(shapes) - 1))
    return name, hp, dtype, shapes, warm, what, spoil, i, draw(st.integers(0, 2**32 - 1))


def _spoil_entry(sd, kind, rng):
    """One entry of the saved state (or a group value when nothing is saved yet), spoiled."""
    entry = sd["state"].get(0)
    target, keys = (entry, sorted(entry)) if entry else (sd["param_groups"][0], ["lr"])
    key = keys[int(rng.integers(len(keys)))]
    v = target[key]
    note(f"spoiled {key!r} ({type(v).__name__}) by {kind}")
    if kind == "drop":
        del target[key]
    elif kind == "none":
        target[key] = None
    elif kind == "string":
        target[key] = "abc"
    elif kind == "extra_key":
        target["not_a_key"] = 1.0
    elif kind == "list_of_one":
        target[key] = [v]
    elif isinstance(v, np.ndarray) and v.size:
        v = v.copy()
        if kind == "nan":
            v.reshape(-1)[0] = np.nan
        elif kind == "negative":
            v = -np.abs(v) - 1
        elif kind == "short":
            v = v.reshape(-1)[:-1]
        elif kind == "other_dtype":
            v = v.astype(np.int32)
        target[key] = v
    elif isinstance(v, list) and v:
        # (None items: torch's empty slots, e.g. LBFGS's al past the history, stay None)
        spoilt = [x if x is None else np.nan if kind == "nan" else -abs(np.asarray(x)) - 1 for x in v]
        target[key] = v[:-1] if kind == "short" else spoilt
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        target[key] = {"nan": float("nan"), "negative": -abs(v) - 1, "short": v, "other_dtype": complex(v, 1)}[kind]
    return key


@given(case=cases())
def test_second_order_optimizer_contract(case):
    name, hp, dtype, shapes, warm, what, spoil, i, seed = case
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    q = Quadratic(rng, params)
    opt = _make(name, hp, params, q)
    for _ in range(warm):
        opt.step(q.loss_grads)
    assert all(np.isfinite(p).all() for p in params)
    event(f"{name}: {what} {spoil}")
    note(f"{name} {hp} {dtype.__name__} {shapes} warm {warm} {what} {spoil} at {i}")
    if what == "closure":
        state = opt.state_dict()
        # (SAM takes NaN / Inf gradients as values, as the first-order optimizers it wraps do)
        valid = name == "SAM" and spoil == "inf_grad"
        # (Newton-CG after a step has the start's evaluation cached: the closure's first call is the
        # trial point's, and a NaN loss there is a rejected step, params back, not an error; 55th)
        rejected = name == "NewtonCG" and spoil == "nan_loss" and warm > 0
        before = [p.copy() for p in params]
        ok, _ = check_call(
            lambda: opt.step(lambda: q.spoiled(spoil, i)), ["closure"], state=[params], ok=valid or rejected
        )
        if not ok:
            _assert_same_state(state, opt.state_dict())
        elif rejected:
            assert opt.last["accepted"] is False
            for a, b in zip(params, before):
                np.testing.assert_array_equal(a, b)
        return
    sd = copy.deepcopy(opt.state_dict())
    twin_params = [p.copy() for p in params]
    tq = _rebind(q, twin_params)
    twin = _make(name, hp, twin_params, tq)
    if what == "round_trip":
        twin.load_state_dict(sd)
        for _ in range(2):
            opt.step(q.loss_grads)
            twin.step(tq.loss_grads)
        for a, b in zip(params, twin_params):
            np.testing.assert_array_equal(a, b)
        return
    _spoil_entry(sd, spoil, rng)
    before = copy.deepcopy(twin.state_dict())
    ok, _ = check_call(lambda: twin.load_state_dict(sd), ["state_dict"], state=[twin_params])
    if not ok:
        _assert_same_state(before, twin.state_dict())
    else:  # accepted: it must still step to finite params
        twin.step(tq.loss_grads)
        assert all(np.isfinite(p).all() for p in twin_params) or spoil == "nan"


def _rebind(q, params):
    r = Quadratic.__new__(Quadratic)
    r.a, r.b, r.params = q.a, q.b, params
    return r


def _assert_same_state(a, b, path="state_dict"):
    """Two state dicts hold the same values (arrays bit for bit, NaN equal to NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _assert_same_state(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{path}[{k}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.tobytes() == b.tobytes(), path
    else:
        assert a == b or (a != a and b != b), (path, a, b)
