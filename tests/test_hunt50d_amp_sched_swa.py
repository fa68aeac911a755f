"""Hunt 50d: loss scaling, schedules, clipping, SWA / SWALP."""

import numpy as np
import pytest

from optkern.amp import GradScaler


class _PlainOptimizer:
    """An optimizer that is not optkern's: ``param_groups`` of arrays and ``step(grads)``."""

    def __init__(self, params):
        self.param_groups = [{"params": list(params[:1]), "lr": 0.5}, {"params": list(params[1:]), "lr": 0.5}]
        self.steps = 0

    def step(self, grads):
        self.steps += 1
        for p, g in zip([p for grp in self.param_groups for p in grp["params"]], grads):
            if g is not None:
                p -= 0.5 * g


def _plain(n=3):
    params = [np.full(5, 1.0 + k, np.float32) for k in range(n)]
    return _PlainOptimizer(params), params


@pytest.mark.parametrize("call", ["step", "unscale_"])
@pytest.mark.parametrize("where", ["itself", "view"])
def test_grad_sharing_memory_with_a_plain_optimizers_param_is_refused_before_writing(call, where):
    # optkern's optimizers refuse a grad that is (or overlaps) one of their params before the scaler
    # unscales it in place; an optimizer of another kind was checked for kind, dtype and shape only,
    # and the unscale divided its param by the scale (then its step moved it by that), silently
    opt, params = _plain()
    grads = [np.full(5, 4.0, np.float32) for _ in params]
    grads[2] = params[1] if where == "itself" else params[1][:]
    before = [p.copy() for p in params]
    scaler = GradScaler(init_scale=4.0)
    with pytest.raises(ValueError, match=r"^grads\[2\] shares memory with params\[1\] "):
        getattr(scaler, call)(opt, grads)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    assert opt.steps == 0
    scaler2 = GradScaler(init_scale=4.0)  # (the refused call recorded nothing: update() has no flag)
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler2.update()


def test_plain_optimizer_with_its_own_grads_still_steps():
    opt, params = _plain()
    grads = [np.full(5, 4.0, np.float32) for _ in params]
    grads[1] = None  # (a param without a grad: skipped)
    scaler = GradScaler(init_scale=4.0)
    scaler.step(opt, grads)
    scaler.update()
    assert opt.steps == 1
    np.testing.assert_array_equal(grads[0], np.full(5, 1.0, np.float32))
    np.testing.assert_array_equal(params[0], np.full(5, 0.5, np.float32))


def test_plain_optimizer_params_sharing_memory_with_each_other_are_not_refused():
    # (two params over one buffer are the optimizer's business, not the scaler's: it writes only grads)
    buf = np.ones(10, np.float32)
    opt = _PlainOptimizer([buf[:5], buf[5:], buf])
    grads = [np.full(5, 2.0, np.float32), np.full(5, 2.0, np.float32), np.full(10, 2.0, np.float32)]
    GradScaler(init_scale=2.0).unscale_(opt, grads)
    np.testing.assert_array_equal(grads[2], np.ones(10, np.float32))


# ---- Scheduler's relative flag: one rule (a Python or NumPy bool) -------------------------------


def _groups(*lrs):
    opt = type("Opt", (), {})()
    opt.param_groups = [{"lr": lr} for lr in lrs]
    return opt


def test_scheduler_state_with_an_assigned_numpy_bool_relative_loads_back():
    # a NumPy bool assigned to ``relative`` was taken by every step (the flag rule) and written by
    # state_dict() as it was; load_state_dict refused that very state ("expected a bool, got bool")
    from optkern import schedules as S

    opt = _groups(0.1, 0.4)
    sched = S.Scheduler(opt, S.exponential(1.0, 0.5), relative=True)
    sched.relative = np.bool_(True)
    sched.step()
    state = sched.state_dict()
    assert state["relative"] is True  # (a Python bool: what a checkpoint file keeps as written)
    other = S.Scheduler(_groups(0.1, 0.4), S.exponential(1.0, 0.5), relative=True)
    other.load_state_dict(state)
    assert other.last_step == 1 and other.get_last_lr() == [0.05, 0.2]
    state["relative"] = np.bool_(True)  # (and the NumPy bool itself, as the step takes it)
    other.load_state_dict(state)
    assert other.get_last_lr() == [0.05, 0.2]


def test_scheduler_takes_a_numpy_bool_relative_as_its_steps_do():
    from optkern import schedules as S

    opt = _groups(0.1, 0.4)
    sched = S.Scheduler(opt, S.exponential(1.0, 0.5), relative=np.bool_(True))
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.2]
    assert sched.relative is True


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_scheduler_relative_that_is_no_bool_is_still_refused_by_name(bad):
    from optkern import schedules as S

    with pytest.raises(TypeError, match=r"^relative: expected a bool"):
        S.Scheduler(_groups(0.1), S.constant(1.0), relative=bad)
    sched = S.Scheduler(_groups(0.1), S.constant(1.0))
    state = sched.state_dict()
    state["relative"] = bad
    with pytest.raises(TypeError, match=r"^state\['relative'\]: expected a bool"):
        sched.load_state_dict(state)


# ---- averages and buffers copied from arrays that are other ones of the same object ----------------


def _averaged():
    from optkern.swa import AveragedParams

    return AveragedParams([np.full(3, 1.0, np.float32), np.full(3, 2.0, np.float32), np.full(4, 3.0, np.float32)])


def test_copy_to_into_the_averages_crossed_is_refused_before_writing():
    # copied one by one, averages[1] was written with averages[0] before it was read: both came out
    # averages[0], the average itself lost, silently
    avg = _averaged()
    before = [a.copy() for a in avg.averages]
    with pytest.raises(ValueError, match=r"^params\[0\] shares memory with averages\[1\]"):
        avg.copy_to([avg.averages[1], avg.averages[0], np.zeros(4, np.float32)])
    for a, b in zip(avg.averages, before):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_of_the_averages_crossed_is_refused_before_writing():
    avg = _averaged()
    before = [a.copy() for a in avg.averages]
    state = {"mode": "swa", "decay": 0.5, "n_averaged": 4, "averages": [avg.averages[1], avg.averages[0], before[2]]}
    with pytest.raises(ValueError, match=r"^state_dict\['averages'\]\[0\] shares memory with averages\[1\]"):
        avg.load_state_dict(state)
    assert avg.n_averaged == 0
    for a, b in zip(avg.averages, before):
        np.testing.assert_array_equal(a, b)


def test_the_averages_themselves_in_place_are_still_taken():
    # (each array onto itself: nothing is read after it was written)
    avg = _averaged()
    avg.copy_to(avg.averages)
    avg.load_state_dict({"mode": "swa", "decay": 0.5, "n_averaged": 2, "averages": avg.averages})
    assert avg.n_averaged == 2
    np.testing.assert_array_equal(avg.averages[1], np.full(3, 2.0, np.float32))


def test_swalp_load_state_dict_of_its_buffers_crossed_is_refused_before_writing():
    from optkern.swalp import SWALP

    s = SWALP([np.full(3, 1.0, np.float32), np.full(3, 2.0, np.float32)], lr=0.1, rounding="nearest")
    s.step([np.ones(3, np.float32), np.full(3, 5.0, np.float32)])
    state = s.state_dict()
    before = [b.copy() for b in s.buffers]
    state["buffers"] = [s.buffers[1], s.buffers[0]]
    with pytest.raises(ValueError, match=r"^state_dict\['buffers'\]\[0\] shares memory with buffers\[1\]"):
        s.load_state_dict(state)
    for b, w in zip(s.buffers, before):
        np.testing.assert_array_equal(b, w)
    state["buffers"] = s.buffers  # (its own buffers, each onto itself: taken)
    s.load_state_dict(state)
