"""Fuzzing the optimizer classes with low-precision storage (master weights, bf16 / 8-bit states,
stochastic rounding) against the contract in fuzz_contract.py: a bad grad, grads list or state
dict raises TypeError / ValueError naming it, with no param, master, state or scale written;
valid steps (NaN grads and None grads included) keep the master bit for bit the float32
optimizer's where the states are float32."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from fuzz_contract import check_call
from optkern import optim

ml_dtypes = pytest.importorskip("ml_dtypes")
pytestmark = pytest.mark.fuzz

BF16 = np.dtype(ml_dtypes.bfloat16)
VALID = [
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.1)),
    ("AdagradNorm", dict(lr=0.5, b0=0.1)),
    ("RMSprop", dict(lr=1e-2, centered=True)),
    ("Adadelta", dict(lr=1.0)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("NAdam", dict(lr=1e-2)),
]
LOWP = [
    dict(master_weights=True),
    dict(master_weights=True, stochastic_rounding=True, state_dtype="int8", block_size=64),
    dict(master_weights=True, state_dtype="bfloat16"),
    dict(state_dtype="int8"),
    dict(state_dtype="bfloat16", seed=3),
]
SHAPES = [(0,), (1,), (7,), (3, 5), (300,)]
GRAD_SPOILS = ["other_half", "float64", "size+1", "strided", "same_as_param", "twice", "list", "nan", "none"]
SD_SPOILS = ["drop_scale", "short_scale", "codes_dtype", "bad_block", "bad_format", "moment_size", "master_size"]


def _state_arrays(opt):
    return [(r.state, r.extra) for runs in opt._runs for r in runs]


@st.composite
def cases(draw):
    name, hp = draw(st.sampled_from(VALID))
    lp = draw(st.sampled_from([x for x in LOWP if name != "AdagradNorm" or x.get("state_dtype") is None]))
    dtype = draw(st.sampled_from([np.dtype(np.float16), BF16])) if lp.get("master_weights") else np.dtype(np.float32)
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
    what = draw(st.sampled_from(["none", "grad", "grads_list", "state_dict"]))
    i = draw(st.integers(0, len(shapes) - 1))
    spoil = {
        "grad": lambda: (i, draw(st.sampled_from(GRAD_SPOILS))),
        "grads_list": lambda: draw(st.sampled_from(["shorter", "longer", "dict"])),
        "state_dict": lambda: (i, draw(st.sampled_from(SD_SPOILS))),
        "none": lambda: None,
    }[what]()
    return name, hp, lp, dtype, shapes, what, spoil, draw(st.integers(0, 2**32 - 1))


def _values(rng, shape, dtype):
    return (rng.standard_normal(shape).astype(np.float32) + np.float32(0.01)).astype(dtype)


@given(cases())
def test_low_precision_optimizer_contract(case):
    name, hp, lp, dtype, shapes, what, spoil, seed = case
    note(f"{name} {hp} {lp} {dtype} {shapes} {what} {spoil}")
    rng = np.random.default_rng(seed)
    params = [_values(rng, s, dtype) for s in shapes]
    opt = getattr(optim, name)(params, **hp, **lp)
    exact = lp.get("state_dtype", "float32") == "float32"
    ref_params = [p.astype(np.float32) for p in params]
    ref = getattr(optim, name)(ref_params, **hp) if exact else None
    for _ in range(2):
        gs = [_values(rng, s, dtype) for s in shapes]
        opt.step(gs)
        if ref is not None:
            ref.step([g.astype(np.float32) for g in gs])
    if ref is not None and lp.get("master_weights"):
        for k, r in enumerate(ref_params):
            np.testing.assert_array_equal(opt.state_dict()["state"][k]["master_param"], r)
    state = (params, _state_arrays(opt))
    if what == "grad":
        i, kind = spoil
        event(f"grad: {kind}")
        gs = [_values(rng, s, dtype) for s in shapes]
        other = {np.dtype(np.float16): BF16, BF16: np.dtype(np.float16), np.dtype(np.float32): np.dtype(np.float16)}
        p = params[i]
        gs[i] = {
            "other_half": lambda: gs[i].astype(np.float32).astype(other[dtype]),
            "float64": lambda: gs[i].astype(np.float64),
            "size+1": lambda: _values(rng, (p.size + 1,), dtype),
            "strided": lambda: np.repeat(gs[i].reshape(-1), 2)[::2].reshape(p.shape) if p.size > 1 else None,
            "same_as_param": lambda: p,
            "twice": lambda: gs[(i + 1) % len(gs)] if len(gs) > 1 and gs[(i + 1) % len(gs)].shape == p.shape else None,
            "list": lambda: gs[i].tolist(),
            "nan": lambda: np.full(p.shape, np.nan, dtype),
            "none": lambda: "skip",
        }[kind]()
        if gs[i] is None:
            return  # (no such spoil for this layout)
        if isinstance(gs[i], str):
            gs[i] = None  # a param without a grad: skipped, valid
            check_call(lambda: opt.step(gs), [f"grads[{i}]"], state=state)
            return
        # (a strided grad may be copied; NaN is a value; one grad read for two params writes nothing;
        # empty arrays overlap nothing)
        valid = kind in ("nan", "strided", "twice") or (kind == "same_as_param" and p.size == 0)
        names = [f"grads[{i}]", "grads", "params", "state"]
        check_call(lambda: opt.step(gs), names, state=state, ok=valid)
    elif what == "grads_list":
        event(f"grads list: {spoil}")
        gs = [_values(rng, s, dtype) for s in shapes]
        bad = {"shorter": gs[:-1], "longer": gs + gs[:1], "dict": dict(enumerate(gs))}[spoil]
        check_call(lambda: opt.step(bad), ["grads"], state=state, ok=False)
    elif what == "state_dict":
        _spoiled_state_dict(opt, name, hp, lp, params, *spoil)


def _spoiled_state_dict(opt, name, hp, lp, params, i, kind):
    sd = opt.state_dict()
    entry = sd["state"].get(i)
    if entry is None:
        return
    e = dict(entry)
    moment = next((k for k, v in e.items() if f"{k}_scale" in e), None)
    arrays = [k for k, v in e.items() if isinstance(v, np.ndarray) and v.ndim and not k.endswith("_scale")]
    if kind == "drop_scale" and moment:
        del e[f"{moment}_scale"]
    elif kind == "short_scale" and moment and e[f"{moment}_scale"].size:
        e[f"{moment}_scale"] = e[f"{moment}_scale"][:-1]
    elif kind == "codes_dtype" and moment:
        e[moment] = e[moment].astype(np.int16)
    elif kind == "bad_block" and "block" in e:
        e["block"] = 100
    elif kind == "bad_format" and "state_dtype" in e:
        e["state_dtype"] = "int4"
    elif kind == "moment_size" and [k for k in arrays if k != "master_param"]:
        k = next(k for k in arrays if k != "master_param")
        e[k] = np.zeros(e[k].size + 1, e[k].dtype)
    elif kind == "master_size" and "master_param" in e:
        e["master_param"] = np.zeros(e["master_param"].size + 1, np.float32)
    else:
        return
    event(f"state dict: {kind}")
    fresh_params = [p.copy() for p in params]
    fresh = getattr(optim, name)(fresh_params, **hp, **lp)
    bad = {**sd, "state": {**sd["state"], i: e}}
    check_call(lambda: fresh.load_state_dict(bad), ["state_dict"], state=(fresh_params, _state_arrays(fresh)), ok=False)
