"""Optimizer state dicts, defects found in hunt 27: an entry the check accepted and the loader then
dropped, a loaded optimizer that kept the caller's objects; and defects outside the checkpoint code:
what a checkpoint or a copy lost (the stochastic-rounding seed, a ShardedOptimizer's flat buffer, a
SAM saved between its two steps)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import optkern
import optkern.optim as O
from optkern import lowp


def _stepped(**hp):
    params = [np.ones(3, np.float32), np.ones(4, np.float32)]
    opt = O.Adam(params, lr=0.1, **hp)
    opt.step([np.full(3, 0.5, np.float32), np.full(4, -0.25, np.float32)])
    return opt


def _fresh(**hp):
    return O.Adam([np.ones(3, np.float32), np.ones(4, np.float32)], lr=0.1, **hp)


@pytest.mark.parametrize("key", ["01", "+1", " 1", "1 ", "\u0661"], ids=repr)
def test_a_state_key_the_loader_would_not_find_is_refused(key):
    """A string key that int() reads as index 1 but is not its decimal form was checked as param 1's
    entry, then ignored by the loader (it looks up 1 and "1"): param 1 restarted from no state,
    silently. Refused now, naming the key, with the optimizer unchanged."""
    sd = _stepped().state_dict()
    bad = {"state": {0: sd["state"][0], key: sd["state"][1]}, "param_groups": sd["param_groups"]}
    target = _fresh()
    for strict in (True, False):
        with pytest.raises(ValueError, match=r"^state_dict\['state'\]: key .* is not a parameter index"):
            target.load_state_dict(bad, strict=strict)
        assert target.state_dict()["state"] == {}
    good = {"state": {0: sd["state"][0], "1": sd["state"][1]}, "param_groups": sd["param_groups"]}
    target.load_state_dict(good)  # (the decimal form, as JSON writes it, still loads)
    assert sorted(target.state_dict()["state"]) == [0, 1]


def test_a_loaded_optimizer_keeps_no_reference_to_the_callers_group_values():
    """The saved groups' values were taken as they were: a ``betas`` list (or any mutable extra
    entry) stayed shared with the caller's dict, and changing the dict after the load changed the
    optimizer. torch's loader deep-copies the saved groups; so does this one now."""
    sd = _stepped().state_dict()
    sd["param_groups"][0]["betas"] = [0.9, 0.999]
    sd["param_groups"][0]["note"] = {"tags": ["a"]}
    target = _fresh()
    target.load_state_dict(sd)
    sd["param_groups"][0]["betas"][0] = 0.0
    sd["param_groups"][0]["note"]["tags"].append("b")
    group = target.param_groups[0]
    assert group["betas"] == [0.9, 0.999] and group["note"] == {"tags": ["a"]}
    # and the other way: one optimizer loaded from another's state_dict() shares nothing with it
    a = O.Adam([np.ones(2, np.float32)], lr=0.1, betas=[0.8, 0.99])
    b = O.Adam([np.ones(2, np.float32)], lr=0.1)
    b.load_state_dict(a.state_dict())
    a.param_groups[0]["betas"][0] = 0.5
    assert b.param_groups[0]["betas"] == [0.8, 0.99]


def test_state_arrays_are_live_and_loaded_arrays_are_copies():
    """(Documented: state_dict() arrays are the live state, as torch's; load_state_dict copies.)"""
    opt = _stepped()
    sd = opt.state_dict()
    assert np.shares_memory(sd["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    target = _fresh()
    target.load_state_dict(sd)
    sd["state"][0]["exp_avg"][...] = 7.0
    assert not (target.state_dict()["state"][0]["exp_avg"] == 7.0).any()


# ---- found outside the checkpoint modules ------------------------------------------------------


def test_a_stochastic_rounding_run_resumes_bit_for_bit_whatever_seed_the_new_optimizer_got(tmp_path):
    bf16 = lowp.bfloat16_dtype()
    if bf16 is None:
        pytest.skip("ml_dtypes not installed")

    def grads(t):
        return [np.sin(np.arange(500.0) * (t + 1)).astype(np.float32)]

    params = [np.linspace(-1, 1, 500).astype(np.float32)]
    opt = O.Adam(params, lr=0.01, state_dtype="bfloat16", seed=5)
    opt.step(grads(0))
    path = optkern.save(tmp_path / "ck.npz", opt=opt, params=params)
    params2 = [np.zeros(500, np.float32)]
    opt2 = O.Adam(params2, lr=0.01, state_dtype="bfloat16")  # the default seed, 0
    optkern.load(path, opt=opt2, params=params2)
    for t in range(1, 4):
        opt.step(grads(t))
        opt2.step(grads(t))
    assert np.array_equal(params[0], params2[0])
    assert opt2.state_dict()["state"][0]["seed"] == 5
    # a state dict saved without a seed (before it was saved) loads, keeping the constructor's
    sd = opt.state_dict()
    for entry in sd["state"].values():
        del entry["seed"]
    opt3 = O.Adam([np.zeros(500, np.float32)], lr=0.01, state_dtype="bfloat16", seed=9)
    opt3.load_state_dict(sd)
    assert opt3.state_dict()["state"][0]["seed"] == 9
    with pytest.raises(ValueError, match=r"^state_dict\['state'\]\[0\]\['seed'\]"):
        opt3.load_state_dict({**sd, "state": {0: {**sd["state"][0], "seed": -1}}})


def _sharded_one_rank():
    pytest.importorskip("mpi4py")
    from optkern import distributed as D

    params = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in ((5, 3), (7,))]
    return params, D.ShardedOptimizer(O.Adam, params, D.Communicator(), lr=1e-2)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_sharded_optimizer_copy_continues_bit_for_bit(how):
    params, opt = _sharded_one_rank()

    def grads(ps, t):
        return [np.sin(p * 3 + t).astype(np.float32) for p in ps]

    opt.step(grads(params, 0))
    params2, opt2 = copy.deepcopy((params, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((params, opt)))
    for t in range(1, 4):
        opt.step(grads(params, t))
        opt2.step(grads(params2, t))
    assert all(np.array_equal(a, b) for a, b in zip(params, params2))
    assert all(np.shares_memory(v, opt2._flat) and not np.shares_memory(v, opt._flat) for v in opt2.params)


def test_a_sam_optimizer_between_its_two_steps_is_not_saved_silently(tmp_path):
    params = [np.ones(5, np.float32)]
    sam = O.SAM(O.SGD(params, lr=0.1), rho=0.5)
    sam.first_step([np.ones(5, np.float32)])
    with pytest.raises(RuntimeError, match="perturbed"):
        optkern.save(tmp_path / "ck.npz", opt=sam, params=params)
    sam.second_step([np.ones(5, np.float32)])
    optkern.save(tmp_path / "ck.npz", opt=sam, params=params)  # (after second_step it saves)
