"""load_state_dict refuses every malformed or corrupted state dict, naming the entry, and changes nothing.

Each optimizer (in a configuration holding all of its state) takes two steps; its state dict is
then corrupted one way at a time -- non-finite, negative, wrongly shaped, flattened, integer or
list state arrays, overflowing float64 state, bad steps, bad scalars, missing or unknown keys --
and loading it must raise the expected error with the entry's path while every parameter, state
array and group of the optimizer stays exactly as it was.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import optkern.optim as O

CASES = {  # name -> (class, hyper-parameters that create every state array it has)
    "SGD": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1)),
    "Adagrad": ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.1)),
    "AdagradNorm": ("AdagradNorm", dict(lr=0.1)),
    "RMSprop": ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
    "Adadelta": ("Adadelta", dict(weight_decay=0.01)),
    "Adam": ("Adam", dict(lr=0.01, amsgrad=True)),
    "AdamW": ("AdamW", dict(lr=0.01)),
    "NAdam": ("NAdam", dict(lr=0.01)),
}
SHAPES = ((64, 3), (7,), (1,))
NONNEGATIVE = {"exp_avg_sq", "max_exp_avg_sq", "sum", "square_avg", "acc_delta"}


def _make(name, seed=0, steps=2):
    cls, hp = CASES[name]
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    opt = getattr(O, cls)(params, **hp)
    for _ in range(steps):
        opt.step([rng.standard_normal(s).astype(np.float32) for s in SHAPES])
    return opt


def _snapshot(opt):
    """Everything an optimizer holds: params, every state value (with the arrays' identities), groups."""
    sd = opt.state_dict()
    params = [p.copy() for g in opt.param_groups for p in g["params"]]
    ids = {(i, k): id(v) for i, e in sd["state"].items() for k, v in e.items() if isinstance(v, np.ndarray)}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return params, pickle.dumps(sd["state"]), ids, copy.deepcopy(groups)


def _assert_same(opt, snap):
    params, state, ids, groups = snap
    now = _snapshot(opt)
    assert all(np.array_equal(a, b) for a, b in zip(params, now[0]))
    assert now[1] == state  # every array bitwise, every step and scalar
    assert now[2] == ids  # the same live arrays, not replaced
    assert now[3] == groups


# ---- corruptions: (id, function(sd) -> None mutating it, exception, message regex) -----------


def _set(i, key, value):
    def f(sd):
        sd["state"][i][key] = value(sd["state"][i][key]) if callable(value) else value

    return f


def _poke(i, key, index, value):
    def f(sd):
        a = sd["state"][i][key]
        a[index] = value

    return f


def _corruptions(name):
    """Every corruption that applies to this optimizer's state (read from a real state dict)."""
    sd = _make(name).state_dict()
    entry = sd["state"][0]
    out = []
    for key, v in entry.items():
        if not isinstance(v, np.ndarray):
            continue
        at = rf"\['state'\]\[0\]\['{key}'\]"
        out += [
            (f"{key}-nan", _poke(0, key, (5, 1), np.nan), ValueError, at + ": 1 non-finite"),
            (f"{key}-inf", _poke(0, key, (63, 2), np.inf), ValueError, at + ": 1 non-finite"),
            (f"{key}-minus-inf", _poke(0, key, (0, 0), -np.inf), ValueError, at + ": 1 non-finite"),
            (
                f"{key}-transposed-shape",
                _set(0, key, lambda a: np.ascontiguousarray(a.reshape(3, 64))),
                ValueError,
                at + r": expected shape \(64, 3\).*got \(3, 64\)",
            ),
            (f"{key}-flattened", _set(0, key, lambda a: a.ravel()), ValueError, at + r": expected shape \(64, 3\)"),
            (f"{key}-wrong-size", _set(0, key, lambda a: a[:10]), ValueError, at + ": expected 192 elements"),
            (f"{key}-int-dtype", _set(0, key, lambda a: a.astype(np.int64)), TypeError, at + ": .*floating-point"),
            (f"{key}-list", _set(0, key, lambda a: a.tolist()), TypeError, at + ": expected an array, got list"),
            (
                f"{key}-overflows-float32",
                _set(0, key, lambda a: np.full(a.shape, 1e300)),
                ValueError,
                at + ": entries overflow",
            ),
        ]
        if key in NONNEGATIVE:
            out.append((f"{key}-negative", _poke(0, key, (10, 0), -1e-3), ValueError, at + ": negative entries"))
            out.append(
                (
                    f"{key}-negative-in-small-param",
                    _poke(2, key, 0, -5.0),
                    ValueError,
                    rf"\['state'\]\[2\]\['{key}'\]: negative entries",
                )
            )
    if "step" in entry:
        at = r"\['state'\]\[1\]\['step'\]"
        out += [
            ("step-str", _set(1, "step", "3"), TypeError, at + ": expected a non-negative integer, got str"),
            ("step-fraction", _set(1, "step", 3.5), ValueError, at + ": expected a non-negative integer"),
            ("step-negative", _set(1, "step", -1), ValueError, at + ": expected a non-negative integer"),
            ("step-bool", _set(1, "step", True), TypeError, at + ": .*got bool"),
            ("step-nan", _set(1, "step", float("nan")), ValueError, at),
            ("step-array", _set(1, "step", np.array([2, 2])), ValueError, at + ": .*shape"),
            ("step-none", _set(1, "step", None), ValueError, at + ": missing"),
            ("step-missing", lambda sd: sd["state"][1].pop("step"), ValueError, at + ": missing"),
        ]
    if "mu_product" in entry:
        at = r"\['state'\]\[0\]\['mu_product'\]"
        out += [
            ("mu_product-str", _set(0, "mu_product", "0.5"), TypeError, at + ": expected a real number, got str"),
            ("mu_product-object", _set(0, "mu_product", object()), TypeError, at + ": expected a real number"),
            ("mu_product-nan", _set(0, "mu_product", float("nan")), ValueError, at + ": must be finite"),
            ("mu_product-above-1", _set(0, "mu_product", 1.5), ValueError, at + ": must be in"),
            ("mu_product-negative", _set(0, "mu_product", -0.5), ValueError, at + ": must be in"),
            (
                "mu_product-missing",
                lambda sd: sd["state"][0].pop("mu_product"),
                ValueError,
                r"\['state'\]\[0\]: missing 'mu_product'",
            ),
        ]
    if "b_sq" in entry:
        at = r"\['state'\]\[0\]\['b_sq'\]"
        out += [
            ("b_sq-str", _set(0, "b_sq", "x"), TypeError, at + ": expected a real number, got str"),
            ("b_sq-negative", _set(0, "b_sq", -1.0), ValueError, at + ": must be in"),
            ("b_sq-zero", _set(0, "b_sq", 0.0), ValueError, at + ": must be in"),
            ("b_sq-inf", _set(0, "b_sq", float("inf")), ValueError, at + ": must be finite"),
            ("b_sq-missing", lambda sd: sd["state"][0].pop("b_sq"), ValueError, r"\['state'\]\[0\]: missing 'b_sq'"),
            (
                "b_sq-differs-in-group",
                _set(2, "b_sq", lambda b: b * 2),
                ValueError,
                r"\['state'\]\[2\]\['b_sq'\]: .* differs",
            ),
        ]
    for key, v in entry.items():  # every array the hyper-parameters need, deleted
        if isinstance(v, np.ndarray):
            out.append(
                (
                    f"{key}-missing",
                    lambda sd, key=key: sd["state"][1].pop(key),
                    ValueError,
                    rf"\['state'\]\[1\]: missing state '{key}'",
                )
            )
    out += [
        (
            "lr-missing",
            lambda sd: sd["param_groups"][0].pop("lr"),
            ValueError,
            r"state_dict\['param_groups'\]\[0\]: missing 'lr'",
        ),
        ("lr-str", lambda sd: sd["param_groups"][0].update(lr="0.1"), TypeError, r"\['lr'\]"),
        ("unknown-state-key", _set(0, "exp_avg_sqq", 1.0), ValueError, r"\['state'\]\[0\]: unknown key 'exp_avg_sqq'"),
        ("unknown-top-key", lambda sd: sd.update(extra=1), ValueError, r"state_dict: unknown key 'extra'"),
        (
            "unlisted-index",
            lambda sd: sd["state"].update({7: copy.deepcopy(sd["state"][0])}),
            ValueError,
            r"\['state'\]\[7\]: no parameter group lists this index",
        ),
        ("index-twice", lambda sd: sd["state"].update({"1": sd["state"][1]}), ValueError, "appears twice"),
        (
            "entry-not-dict",
            lambda sd: sd["state"].update({1: [1, 2]}),
            TypeError,
            r"\['state'\]\[1\]: expected a dict, got list",
        ),
        (
            "group-index-bool",
            lambda sd: sd["param_groups"][0]["params"].__setitem__(0, False),
            TypeError,
            r"\['params'\]\[0\]: expected an integer index",
        ),
        ("state-not-dict", lambda sd: sd.update(state=[]), TypeError, r"state_dict\['state'\]: expected a dict"),
        (
            "empty-entry",
            lambda sd: sd["state"].update({1: {}}),
            ValueError,
            r"\['state'\]\[1\]"
            + (": missing state 'momentum_buffer'" if "step" not in entry else r"\['step'\]: missing"),
        ),
    ]
    return out


ALL = [(name, *c) for name in CASES for c in _corruptions(name)]


@pytest.mark.parametrize("name,cid,corrupt,exc,match", ALL, ids=[f"{a[0]}-{a[1]}" for a in ALL])
def test_corrupted_state_dict_is_refused_and_changes_nothing(name, cid, corrupt, exc, match):
    opt = _make(name)
    sd = pickle.loads(pickle.dumps(opt.state_dict()))  # a copy: corrupting it must not touch opt
    corrupt(sd)
    target = _make(name, seed=1, steps=3)  # loads into an optimizer with other state
    snap = _snapshot(target)
    with pytest.raises(exc, match=match):
        target.load_state_dict(sd)
    _assert_same(target, snap)


@pytest.mark.parametrize("name", list(CASES))
def test_clean_state_dict_loads_and_continues_like_the_original(name):
    a = _make(name)
    b = _make(name, seed=1, steps=1)
    for pa, pb in zip(a.param_groups[0]["params"], b.param_groups[0]["params"]):
        pb[...] = pa
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    g = [np.random.default_rng(9).standard_normal(s).astype(np.float32) for s in SHAPES]
    a.step(g)
    b.step(g)
    assert pickle.dumps(a.state_dict()["state"]) == pickle.dumps(b.state_dict()["state"])


def test_steps_in_accepted_forms():
    """Integral floats, NumPy integers and one-element arrays (PyTorch's tensor step) are steps."""
    opt = _make("Adam")
    for step in (2, 2.0, np.int32(2), np.float32(2.0), np.array(2.0), np.array([2])):
        sd = pickle.loads(pickle.dumps(opt.state_dict()))
        for e in sd["state"].values():
            e["step"] = step
        other = _make("Adam", seed=3)
        other.load_state_dict(sd)
        assert other.state_dict()["state"][0]["step"] == 2


def test_unknown_group_entries_are_kept():
    """A scheduler's initial_lr or PyTorch's flags in a group are not hyper-parameters: carried along."""
    opt = _make("Adam")
    sd = opt.state_dict()
    sd["param_groups"][0].update(initial_lr=0.5, foreach=None, name="encoder")
    other = _make("Adam", seed=3)
    other.load_state_dict(sd)
    assert other.param_groups[0]["initial_lr"] == 0.5 and other.param_groups[0]["name"] == "encoder"


def test_optkern_only_options_keep_their_value_when_absent():
    """A checkpoint without an option PyTorch lacks (momentum_form) keeps the optimizer's value."""
    opt = _make("SGD")
    sd = opt.state_dict()
    del sd["param_groups"][0]["momentum_form"]
    other = O.SGD([p.copy() for p in opt.param_groups[0]["params"]], momentum_form="textbook")
    other.load_state_dict(sd)
    assert other.param_groups[0]["momentum_form"] == "textbook"


def test_not_strict_relaxes_structure_only():
    opt = _make("Adam")
    sd = opt.state_dict()
    sd["extra"] = 1
    sd["state"][0]["unknown"] = 1.0
    sd["state"][9] = {"step": 1}
    del sd["param_groups"][0]["lr"]
    sd["state"][2] = {}  # not stepped yet
    other = O.Adam([p.copy() for p in opt.param_groups[0]["params"]], lr=0.123, amsgrad=True)
    other.load_state_dict(sd, strict=False)
    assert other.param_groups[0]["lr"] == 0.123
    assert set(other.state_dict()["state"]) == {0, 1}
    bad = opt.state_dict()
    bad["state"][0] = {**bad["state"][0], "exp_avg_sq": -bad["state"][0]["exp_avg_sq"] - 1}
    snap = _snapshot(other)
    with pytest.raises(ValueError, match="negative entries"):
        other.load_state_dict(bad, strict=False)  # values are checked either way
    _assert_same(other, snap)


def test_sgd_without_momentum_needs_no_buffer():
    """PyTorch's SGD without momentum stores no buffer (or None in old versions): nothing is missing."""
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(4).astype(np.float32)]
    opt = O.SGD(params, lr=0.1)
    sd = opt.state_dict()
    sd["state"][0] = {"momentum_buffer": None}
    opt.load_state_dict(sd)
    assert opt.state_dict()["state"] == {}


def test_float64_state_into_float32_params_is_cast():
    """Finite float64 state (a float64 run resumed in float32) is accepted and rounded once."""
    opt = _make("Adam")
    sd = opt.state_dict()
    for e in sd["state"].values():
        e["exp_avg"] = e["exp_avg"].astype(np.float64) + 1e-12
    other = _make("Adam", seed=4)
    other.load_state_dict(sd)
    got = other.state_dict()["state"][0]["exp_avg"]
    assert got.dtype == np.float32 and np.array_equal(got, sd["state"][0]["exp_avg"].astype(np.float32))


TORCH_CASES = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("Adadelta", {}),
    ("AdamW", {"amsgrad": True}),
    ("NAdam", {"decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("Adagrad", {}),
    ("RMSprop", {"centered": True, "momentum": 0.5}),
    ("Adam", {"fused": True}),
]


@pytest.mark.parametrize("name,hp", TORCH_CASES, ids=[f"{n}-{'-'.join(h)}" for n, h in TORCH_CASES])
def test_real_torch_checkpoints_pass_the_strict_checks(name, hp):
    """PyTorch's own state dicts (float tensor steps, foreach/fused flags, a scheduler's initial_lr) load."""
    torch = pytest.importorskip("torch")
    tp = [
        torch.randn(4, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(5, dtype=torch.float64, requires_grad=True),
    ]
    topt = getattr(torch.optim, name)(tp, lr=0.01, **hp)
    sched = torch.optim.lr_scheduler.StepLR(topt, 1, gamma=0.5)
    for _ in range(2):
        for t in tp:
            t.grad = torch.randn_like(t)
        topt.step()
        sched.step()
    ours = getattr(O, name)([t.detach().numpy().copy() for t in tp])
    ours.load_state_dict(topt.state_dict())
    assert ours.param_groups[0]["lr"] == topt.param_groups[0]["lr"] and "initial_lr" in ours.param_groups[0]
