"""SWALP checkpoints: ``state_dict`` / ``load_state_dict`` (SWALP had neither: a long low-precision
run could not be resumed). A run resumed from a checkpoint takes the same steps, bit for bit, as the
run that went on (the stochastic rounding draws from seed, step and element); a bad checkpoint is
refused by name before anything is assigned."""

import copy

import numpy as np
import pytest

import optkern
from optkern.swalp import SWALP


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in [(7,), (3, 5), (1,)]]


def _grads(t):
    return _params(100 + t)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
@pytest.mark.parametrize("number", ["block_fp", "fixed_point"])
def test_resumed_run_takes_the_same_steps(momentum, number, tmp_path):
    kw = dict(lr=0.05, momentum=momentum, weight_decay=1e-3, number=number, bits=8, swa_start=2, seed=7)
    p = _params()
    run = SWALP(p, **kw)
    for t in range(4):
        run.step(_grads(t))
    optkern.save(tmp_path / "ckpt.npz", params=p, swalp=run)
    for t in range(4, 8):
        run.step(_grads(t))
    q = _params(1)  # other values: all restored from the checkpoint
    other = SWALP(q, lr=1.0, momentum=momentum, number=number, seed=3)
    optkern.load(tmp_path / "ckpt.npz", params=q, swalp=other)
    assert other.t == 4 and other.seed == 7 and other.lr == 0.05 and other.swa.n_averaged == 3
    for t in range(4, 8):
        other.step(_grads(t))
    for a, b in zip(p + run.averages, q + other.averages):
        np.testing.assert_array_equal(a, b)
    if momentum:
        for a, b in zip(run.buffers, other.buffers):
            np.testing.assert_array_equal(a, b)


def test_state_dict_is_a_copy():
    run = SWALP(_params(), lr=0.1)
    run.step(_grads(0))
    sd = run.state_dict()
    before = copy.deepcopy(sd)
    run.step(_grads(1))
    for a, b in zip(sd["buffers"] + sd["swa"]["averages"], before["buffers"] + before["swa"]["averages"]):
        np.testing.assert_array_equal(a, b)


def _bad(sd, key, value):
    sd = copy.deepcopy(sd)
    if value is _DROP:
        del sd[key]
    else:
        sd[key] = value
    return sd


_DROP = object()


@pytest.mark.parametrize(
    "key, value, exc, match",
    [
        ("t", _DROP, ValueError, r"state_dict: missing 't'"),
        ("t", -1, ValueError, r"state_dict\['t'\]"),
        ("lr", float("nan"), ValueError, r"state_dict\['lr'\]"),
        ("number", "float", ValueError, r"state_dict\['number'\]"),
        ("bits", {"weight": 8}, ValueError, r"state_dict\['bits'\]"),
        ("seed", -3, ValueError, r"state_dict\['seed'\]"),
        ("buffers", None, ValueError, r"state_dict\['buffers'\]: missing with momentum 0.9"),
        ("buffers", [np.zeros(7, np.float32)], ValueError, r"state_dict\['buffers'\]: expected 3 arrays"),
        (
            "buffers",
            [np.zeros(7, np.float64), np.zeros((3, 5), np.float32), np.zeros(1, np.float32)],
            TypeError,
            r"state_dict\['buffers'\]\[0\]",
        ),
        ("swa", {"mode": "swa"}, ValueError, r"state_dict\['swa'\]: missing 'decay'"),
    ],
)
def test_bad_checkpoints_refused_before_anything_is_assigned(key, value, exc, match):
    run = SWALP(_params(), lr=0.1, momentum=0.9)
    for t in range(3):
        run.step(_grads(t))
    sd = run.state_dict()
    run.step(_grads(3))
    mine = copy.deepcopy(run.state_dict())
    with pytest.raises(exc, match=match):
        run.load_state_dict(_bad(sd, key, value))
    after = run.state_dict()
    assert after["t"] == mine["t"] == 4 and after["lr"] == mine["lr"]
    for a, b in zip(after["buffers"] + after["swa"]["averages"], mine["buffers"] + mine["swa"]["averages"]):
        np.testing.assert_array_equal(a, b)


def test_buffers_given_without_momentum_refused_and_not_a_dict_refused():
    run = SWALP(_params(), lr=0.1, momentum=0.0)
    sd = SWALP(_params(), lr=0.1, momentum=0.9).state_dict()
    sd["momentum"] = 0.0
    with pytest.raises(ValueError, match=r"state_dict\['buffers'\]: given with momentum 0.0"):
        run.load_state_dict(sd)
    with pytest.raises(TypeError, match=r"state_dict: expected a dict, got list"):
        run.load_state_dict([])


def test_momentum_switched_on_by_a_checkpoint_gets_buffers():
    src = SWALP(_params(), lr=0.1, momentum=0.9)
    src.step(_grads(0))
    run = SWALP(_params(), lr=0.1, momentum=0.0)
    assert run.buffers is None
    run.load_state_dict(src.state_dict())
    for a, b in zip(run.buffers, src.buffers):
        np.testing.assert_array_equal(a, b)
