"""SWALP.step refuses what its SWA update would refuse before the low-precision step writes anything.

SWALP's docstring: "a refused step leaves params, buffers, averages and ``t`` as they were". The step
checked its grads, then stepped the params and buffers and counted ``t``, and only then folded the
params into the average, whose ``update`` checks them against the averages' shapes (and its own
attributes). A param reshaped in place since construction (``p.shape = (6,)``: the same memory, which
the optimizers take) was stepped and quantized, ``t`` counted, and then the update raised "params[0]:
expected shape (2, 3), got (6,)": the step was taken but not averaged, and a retry stepped again.
"""

import numpy as np
import pytest

from optkern import swalp


def _run(shape=(2, 3), **kw):
    rng = np.random.default_rng(5507)
    params = [rng.standard_normal(shape).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    return params, swalp.SWALP(params, lr=0.1, momentum=0.9, **kw)


def _snapshot(run):
    return (
        [p.tobytes() for p in run.params],
        [b.tobytes() for b in run.buffers] if run.buffers is not None else None,
        [a.tobytes() for a in run.averages],
        run.t,
        run.swa.n_averaged,
    )


def test_a_param_reshaped_in_place_is_refused_before_anything_is_written():
    params, run = _run()
    run.step([np.ones((2, 3), np.float32), np.ones(5, np.float32)])
    before = _snapshot(run)
    params[0].shape = (6,)  # (the same memory, laid out anew)
    with pytest.raises(ValueError, match=r"params\[0\]: expected shape \(2, 3\), got \(6,\)"):
        run.step([np.ones(6, np.float32), np.ones(5, np.float32)])
    assert _snapshot(run) == before
    params[0].shape = (2, 3)  # put back: the run goes on as if nothing happened
    run.step([np.ones((2, 3), np.float32), np.ones(5, np.float32)])
    assert run.t == 2 and run.swa.n_averaged == 2


@pytest.mark.parametrize(
    "attr, value, match",
    [("n_averaged", -1, "n_averaged"), ("n_averaged", 2.5, "n_averaged"), ("mode", "mean", "mode")],
)
def test_an_average_attribute_its_update_refuses_is_refused_before_the_step(attr, value, match):
    """The average's own attributes (assignable: ``run.swa.n_averaged``), by the update's rules,
    before the step writes: the update refused them after the params had moved."""
    params, run = _run()
    run.step([np.ones((2, 3), np.float32), np.ones(5, np.float32)])
    setattr(run.swa, attr, value)
    before = _snapshot(run)
    with pytest.raises((TypeError, ValueError), match=match):
        run.step([np.ones((2, 3), np.float32), np.ones(5, np.float32)])
    assert _snapshot(run) == before


def test_a_step_that_does_not_average_is_not_refused_for_the_average():
    """Before swa_start (or between cycles) no update runs: nothing of the average is asked then,
    as before (an average attribute set for later is the average's business at its next update)."""
    params, run = _run(swa_start=3)
    run.swa.mode = "mean"
    run.step([np.ones((2, 3), np.float32), np.ones(5, np.float32)])
    assert run.t == 1 and run.swa.n_averaged == 0
