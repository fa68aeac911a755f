"""Session 35 hunt: optkern.swa, SWALP and optkern.schedules as a demanding user (odd layouts,
step counts, resumes), each test failing before its fix."""

import numpy as np
import pytest

from optkern.swa import AveragedParams


def test_a_fortran_ordered_param_is_refused_at_construction():
    # The construction-time copy kept the param's Fortran order: every later update raised
    # "averages[0]: array must be C-contiguous" (an array the caller never passed). Such a param
    # is now refused at construction (hunt 39i: every update refused it too), naming it.
    init = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(ValueError, match=r"^params\[0\]: array must be C-contiguous"):
        AveragedParams([init])
    avg = AveragedParams([np.ascontiguousarray(init)])
    assert avg.averages[0].flags.c_contiguous
    avg.update([np.ones((2, 3), np.float32)])
    avg.update([np.full((2, 3), 3.0, np.float32)])
    np.testing.assert_array_equal(avg.averages[0], np.full((2, 3), 2.0, np.float32))


def test_a_fortran_ordered_param_given_to_update_is_named():
    # (the kernel needs C order: the error names the caller's array, as for any other layout)
    avg = AveragedParams([np.zeros((2, 3), np.float32)])
    before = avg.averages[0].copy()
    with pytest.raises(ValueError, match=r"params\[0\]"):
        avg.update([np.asfortranarray(np.ones((2, 3), np.float32))])
    np.testing.assert_array_equal(avg.averages[0], before)
    assert avg.n_averaged == 0


@pytest.mark.parametrize("ema", [None, 0.9])
def test_torch_averaged_model_updated_with_its_own_module_as_torch(ema):
    # torch's AveragedModel takes update_parameters(avg.module) (each average lerped toward
    # itself: unchanged, the count advanced); the fused pass refused it after the first update
    # with "params[1] shares memory with averages[1]", names of arrays the caller never saw.
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils

    import optkern.torch as okt

    out = []
    for mk, ema_fn in (
        (swa_utils.AveragedModel, swa_utils.get_ema_multi_avg_fn),
        (okt.AveragedModel, okt.get_ema_multi_avg_fn),
    ):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
        avg = mk(model) if ema is None else mk(model, multi_avg_fn=ema_fn(ema))
        for k in range(3):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(k + 1)
            avg.update_parameters(model)
        avg.update_parameters(avg.module)
        avg.update_parameters(model)
        out.append(([t.detach().clone() for t in avg.module.parameters()], int(avg.n_averaged)))
    (theirs, n_theirs), (ours, n_ours) = out
    assert n_ours == n_theirs == 5
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_swalp_refuses_a_checkpoint_whose_average_is_an_ema():
    # SWALP averages in mode "swa" (it has no mode argument): a checkpoint whose 'swa' entry said
    # mode "ema" was loaded, and the run went on folding the weights in as an EMA of decay 0.999.
    from optkern.swalp import SWALP

    params = [np.linspace(-1, 1, 6, dtype=np.float32)]
    run = SWALP(params, 0.1)
    run.step([np.ones(6, np.float32)])
    state = run.state_dict()
    state["swa"] = dict(state["swa"], mode="ema")
    before = (run.t, run.averages[0].copy(), run.swa.n_averaged)
    with pytest.raises(ValueError, match=r"state_dict\['swa'\]\['mode'\]"):
        run.load_state_dict(state)
    assert run.swa.mode == "swa"
    assert (run.t, run.swa.n_averaged) == (before[0], before[2])
    np.testing.assert_array_equal(run.averages[0], before[1])


@pytest.mark.parametrize(
    "attr, value, match",
    [
        ("cycle", 0, r"cycle: must be >= 1"),
        ("swa_start", "3", r"swa_start: expected an integer"),
        ("number", "block-fp", r"number: expected 'block_fp' or 'fixed_point'"),
        ("momentum", 2.0, r"momentum: must be in \[0.0, 1.0\]"),
        ("seed", -1, r"seed: must be >= 0"),
        ("bits", {"weight": 8, "grad": 8, "momentum": 99}, r"bits\['momentum'\]"),
    ],
)
def test_swalp_step_checks_assigned_attributes_before_it_writes(attr, value, match):
    # The attributes are assignable (the docstring's "assign lr between steps"), but only the
    # constructor checked them: a cycle of 0 raised ZeroDivisionError and a swa_start of "3" an
    # unnamed TypeError after the params were stepped and t counted, a seed of -1 raised after
    # the params were written, "block-fp" quantized in fixed point and a momentum of 2 ran.
    from optkern.swalp import SWALP

    run = SWALP([np.linspace(-1, 1, 6, dtype=np.float32)], 0.1, momentum=0.5)
    run.step([np.ones(6, np.float32)])
    before = (run.t, run.params[0].copy(), run.buffers[0].copy(), run.averages[0].copy())
    setattr(run, attr, value)
    with pytest.raises((TypeError, ValueError), match=match):
        run.step([np.ones(6, np.float32)])
    assert run.t == before[0]
    for now, then in zip((run.params[0], run.buffers[0], run.averages[0]), before[1:]):
        np.testing.assert_array_equal(now, then)


def test_swalp_lr_assigned_between_steps_is_used():
    from optkern.swalp import SWALP

    a, b = (SWALP([np.zeros(4, np.float32)], 0.5, momentum=0.0, rounding="nearest") for _ in range(2))
    a.lr = 0.25
    b.lr = np.float64(0.25)
    for run in (a, b):
        run.step([np.ones(4, np.float32)])
    np.testing.assert_array_equal(a.params[0], np.full(4, -0.25, np.float32))
    np.testing.assert_array_equal(b.params[0], a.params[0])


@pytest.mark.parametrize("cap", [None, 40])
def test_batch_size_schedule_keeps_the_noise_scale_of_a_rounded_batch(cap):
    # The documented invariant lr(t) / batch_size(t) == lr * factor ** -c / base_batch_size held
    # only where base * factor ** c is an integer: with factor 1.5 from 7 the batch 10.5 was
    # rounded to 10 and the lr kept, a noise scale 5% above the step decay's.
    from optkern.schedules import batch_size_schedule

    sched = batch_size_schedule(7, [1, 2, 3, 4, 5, 6, 7, 8], factor=1.5, max_batch_size=cap, lr=0.3)
    for t in range(10):
        c = min(t, 8)
        want = 0.3 * 1.5**-c / 7
        assert sched(t) / sched.batch_size(t) == pytest.approx(want, rel=1e-12), t
    whole = batch_size_schedule(8, [2], factor=2.0, lr=0.1)
    assert [whole(t) for t in range(4)] == [0.1] * 4  # (an integer batch: the lr itself, exactly)


def test_momentum_scheduler_of_an_optimizer_without_groups_says_so():
    # An empty param_groups list is a list of dicts (Scheduler takes it); the TypeError said
    # "expected an object with param_groups, a list of dicts" of one that is.
    from optkern.schedules import constant, momentum_scheduler

    class NoGroups:
        def __init__(self):
            self.param_groups: list = []

    with pytest.raises(ValueError, match=r"optimizer: has no param groups"):
        momentum_scheduler(NoGroups(), constant(0.9))


def _swalp_pair(momentum):
    from optkern.swalp import SWALP

    return SWALP([np.linspace(-1, 1, 6, dtype=np.float32)], 0.1, momentum=momentum, rounding="nearest")


def test_swalp_momentum_assigned_on_mid_run_starts_a_buffer_as_torch():
    # momentum assigned from 0 to 0.5 between steps raised "momentum_buffers: required when
    # momentum != 0" (no such argument); torch's SGD starts the buffer there as the gradient.
    run = _swalp_pair(0.0)
    g = np.full(6, 0.5, np.float32)
    run.step([g])
    run.momentum = 0.5
    run.step([g])
    # the reference: one plain step, then a fresh momentum-0.5 run's first step (b = g) from there
    # (nearest rounding: the fresh run's construction-time quantization keeps grid values)
    plain = _swalp_pair(0.0)
    plain.step([g])
    from optkern.swalp import SWALP

    ref = SWALP([plain.params[0].copy()], 0.1, momentum=0.5, rounding="nearest")
    ref.step([g])
    np.testing.assert_array_equal(run.params[0], ref.params[0])
    assert run.t == 2 and run.buffers is not None
    np.testing.assert_array_equal(run.buffers[0], ref.buffers[0])


def test_swalp_checkpoint_after_momentum_assigned_off_loads():
    # momentum assigned from 0.5 to 0 kept the buffers, which state_dict saved and load_state_dict
    # refused ("buffers exist exactly when momentum is not 0"): the run's own checkpoint unloadable.
    run = _swalp_pair(0.5)
    run.step([np.ones(6, np.float32)])
    run.momentum = 0.0
    run.step([np.ones(6, np.float32)])
    state = run.state_dict()
    other = _swalp_pair(0.5)
    other.load_state_dict(state)
    assert other.momentum == 0.0 and other.t == 2
