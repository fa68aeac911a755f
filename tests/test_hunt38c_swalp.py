"""SWALP defects found in hunt 38c: a checkpoint written after ``momentum`` was assigned between
steps (which ``step`` supports: off drops the buffers, on starts them at zero) held buffers that
did not fit its momentum, and ``load_state_dict`` -- its own, a fresh SWALP's, ``optkern.load`` --
refused it ("state_dict['buffers']: given with momentum 0.0"): the run could not be resumed; and
``load_state_dict`` named its average's entries as if they were its own (``state_dict['averages'][0]``
for ``state_dict['swa']['averages'][0]``)."""

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


@pytest.mark.parametrize("before, after", [(0.9, 0.0), (0.0, 0.9), (0.9, 0.5)])
def test_checkpoint_after_momentum_assigned_resumes_bit_for_bit(before, after, tmp_path):
    kw = dict(lr=0.05, weight_decay=1e-3, swa_start=1, seed=7)
    p = _params()
    run = SWALP(p, momentum=before, **kw)
    for t in range(3):
        run.step(_grads(t))
    run.momentum = after  # (between steps: the next step drops or starts the buffers)
    optkern.save(tmp_path / "ckpt.npz", params=p, swalp=run)
    q = _params(1)
    other = SWALP(q, momentum=before, **kw)
    optkern.load(tmp_path / "ckpt.npz", params=q, swalp=other)
    run.load_state_dict(run.state_dict())  # (its own checkpoint, too)
    for t in range(3, 6):
        run.step(_grads(t))
        other.step(_grads(t))
    assert other.t == run.t == 6 and other.momentum == after
    for a, b in zip(q + other.averages, p + run.averages):
        np.testing.assert_array_equal(a, b)
    assert (other.buffers is None) == (run.buffers is None) == (after == 0)


def test_state_dict_buffers_are_what_the_next_step_takes():
    run = SWALP(_params(), lr=0.05, momentum=0.0)
    run.step(_grads(0))
    run.momentum = 0.9
    sd = run.state_dict()
    assert [b.shape for b in sd["buffers"]] == [p.shape for p in run.params]
    assert all(b.dtype == np.float32 and not b.any() for b in sd["buffers"])
    assert run.buffers is None  # (state_dict changes nothing)
    run.momentum = 0.0
    assert run.state_dict()["buffers"] is None
    went_on = copy.deepcopy(run)
    went_on.step(_grads(1))
    run.load_state_dict(run.state_dict())
    run.step(_grads(1))
    for a, b in zip(run.params, went_on.params):
        np.testing.assert_array_equal(a, b)


def _stepped():
    run = SWALP(_params(), lr=0.05, momentum=0.9)
    run.step(_grads(0))
    return run


@pytest.mark.parametrize(
    "swa, error, match",
    [
        (lambda sd: {**sd, "averages": sd["averages"][:1]}, ValueError, r"\['swa'\]\['averages'\]: expected 3 arrays"),
        (
            lambda sd: {**sd, "averages": [np.ones(4, np.float32)] + sd["averages"][1:]},
            ValueError,
            r"\['swa'\]\['averages'\]\[0\]: expected shape",
        ),
        (
            lambda sd: {k: v for k, v in sd.items() if k != "n_averaged"},
            ValueError,
            r"state_dict\['swa'\]: missing 'n_averaged'",
        ),
        (lambda sd: {**sd, "n_averaged": -1}, ValueError, r"state_dict\['swa'\]\['n_averaged'\]: must be >= 0"),
        (lambda sd: {**sd, "decay": 7}, ValueError, r"state_dict\['swa'\]\['decay'\]"),
        (lambda sd: 5, TypeError, r"state_dict\['swa'\]: expected a dict, got int"),
    ],
)
def test_load_state_dict_names_the_entries_of_its_average_by_their_place(swa, error, match):
    """The average's state is ``state_dict['swa']``: its refusals named ``state_dict['averages'][0]``,
    ``state_dict: missing 'n_averaged'``, keys the checkpoint does not have at that level."""
    run = _stepped()
    sd = run.state_dict()
    bad = {**sd, "swa": swa(sd["swa"])}
    before = [a.copy() for a in run.params + run.buffers + run.averages]
    with pytest.raises(error, match=match):
        run.load_state_dict(bad)
    for a, b in zip(run.params + run.buffers + run.averages, before):
        np.testing.assert_array_equal(a, b)
