"""Schedules, SWA and regularizers: defects found in the 31st hunt, one test each."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import schedules as S
from optkern.norm import BatchNorm
from optkern.regularize import EarlyStopping, mixup, save_state, soft_targets
from optkern.swa import update_bn
from optkern.swalp import SWALP


def _torch_lrs(make, steps, lr=0.1):
    """torch's lr sequence (test_schedules_torch.torch_values) of ``make(torch, opt)``."""
    torch = pytest.importorskip("torch")
    from test_schedules_torch import torch_values

    return torch_values(lambda opt: make(torch, opt), steps, lr)


@pytest.mark.parametrize("milestones", [[5, 2], [8, 3, 3, 1], [4, 9, 2, 9]])
def test_multi_step_takes_unsorted_milestones_as_torch_does(milestones):
    # torch's MultiStepLR counts its milestones (order is irrelevant); multi_step refused an
    # unsorted list with ValueError.
    want = _torch_lrs(lambda torch, o: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=0.5), 14)
    s = S.multi_step(0.1, milestones, 0.5)
    assert [s(t) for t in range(14)] == pytest.approx(want, rel=1e-12, abs=0)
    assert s.milestones == sorted(milestones)


@pytest.mark.parametrize("name", ["lr", "weight_decay"])
def test_swalp_refuses_a_scale_its_sgd_step_refuses_at_construction(name):
    # SWALP took lr / weight_decay above float32's max ** (1/4) (what sgd_ refuses for float32
    # params) and raised at the first step; a checkpoint holding one loaded the same way.
    p = [np.full(7, 0.3, np.float32)]
    with pytest.raises(ValueError, match=f"^{name}: .* max \\*\\* \\(1/4\\)"):
        SWALP(p, **{"lr": 0.1, name: 1e10})
    np.testing.assert_array_equal(p[0], np.full(7, 0.3, np.float32))  # not quantized either
    run = SWALP(p, lr=0.1)
    run.step([np.ones(7, np.float32)])
    sd = run.state_dict()
    sd[name] = 1e10
    before = (run.t, run.lr, run.weight_decay, run.buffers[0].copy(), run.averages[0].copy())
    with pytest.raises(ValueError, match=f"^state_dict\\['{name}'\\]: "):
        run.load_state_dict(sd)
    assert (run.t, run.lr, run.weight_decay) == before[:3]
    np.testing.assert_array_equal(run.buffers[0], before[3])
    np.testing.assert_array_equal(run.averages[0], before[4])


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.9)])
def test_cyclic_step_size_down_zero_is_torchs_sawtooth(mode, gamma):
    # torch's CyclicLR(step_size_down=0) rises over step_size_up steps and drops back to base_lr;
    # cyclic refused step_size_down=0 with ValueError.
    def make(torch, o):
        return torch.optim.lr_scheduler.CyclicLR(
            o, 0.01, 0.1, step_size_up=4, step_size_down=0, mode=mode, gamma=gamma, cycle_momentum=False
        )

    want = _torch_lrs(make, 17)
    s = S.cyclic(0.01, 0.1, 4, 0, mode=mode, gamma=gamma)
    assert [s(t) for t in range(17)] == want
    m = s.momentum(0.8, 0.9)
    assert [m(t) for t in (0, 2, 4)] == pytest.approx([0.9, 0.9 - 0.1 * 0.5 * (gamma**2), 0.9])


@pytest.mark.parametrize("k", [2, 3, 7])
def test_float16_soft_targets_rounded_from_probabilities_are_taken(k):
    # A softmax's rows rounded to float16 sum to 1 only within float16's rounding (an ulp of 1 is
    # 9.8e-4): soft_targets (and so mixup / cutmix) refused such rows against atol=1e-4.
    rng = np.random.default_rng(k)
    z = rng.standard_normal((1023, k))
    y = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).astype(np.float16)
    assert soft_targets(y, 1023) is y
    x = rng.standard_normal((1023, 5)).astype(np.float16)
    m = mixup(x, y, 0.4, rng=3)
    assert m.y.dtype == np.float16 and np.allclose(m.y.astype(np.float64).sum(axis=1), 1.0, atol=4e-3)
    with pytest.raises(ValueError, match="^y: soft targets"):  # a row off by 1% is still refused
        soft_targets(np.full((4, 2), 0.505, np.float16), 4)


def test_early_stopping_resume_of_a_run_that_kept_no_checkpoint_ignores_a_stale_file(tmp_path):
    # A run whose checks improved without state= kept no checkpoint (restore raises); resumed from
    # its state_dict, the stopper took another run's file at path as its own and restored it.
    path = tmp_path / "best.npz"
    save_state(path, {"w": np.full(2, 99.0)})  # another run's checkpoint
    run = EarlyStopping(path=path)
    run.step(1.0)
    run.step(0.5)
    with pytest.raises(RuntimeError, match="no checkpoint"):
        run.restore()
    resumed = EarlyStopping(path=path)
    resumed.load_state_dict(run.state_dict())
    with pytest.raises(RuntimeError, match="no checkpoint"):  # as the uninterrupted run
        resumed.restore()
    assert resumed.state_dict() == run.state_dict()
    # a run that kept one resumes with it
    kept = EarlyStopping(path=tmp_path / "mine.npz")
    kept.step(1.0, state={"w": np.zeros(2)})
    again = EarlyStopping(path=tmp_path / "mine.npz")
    again.load_state_dict(kept.state_dict())
    np.testing.assert_array_equal(again.restore()["w"], np.zeros(2))
    # checked before anything changes
    before = again.state_dict()
    for bad, exc in (("yes", TypeError), (None, TypeError)):
        with pytest.raises(exc, match=r"^state\['kept'\]: "):
            again.load_state_dict({**run.state_dict(), "kept": bad})
    with pytest.raises(ValueError, match=r"^state\['kept'\]: "):
        again.load_state_dict({**EarlyStopping().state_dict(), "kept": True})
    assert again.state_dict() == before


@pytest.mark.parametrize(
    "make, name, other",
    [
        (lambda v: S.cyclic(0.1, 1.0, 2, mode=v), "mode", "triangular2"),
        (lambda v: S.one_cycle(1.0, 10, anneal=v), "anneal", "linear"),
        (lambda v: S.swalr(1.0, 0.1, 3, anneal_strategy=v), "anneal_strategy", "linear"),
        (lambda v: S.scale_lr(0.1, 2, 1, rule=v), "rule", "sqrt"),
        (lambda v: EarlyStopping(mode=v), "mode", "max"),
    ],
)
def test_string_options_refuse_arrays_by_name(make, name, other):
    # ``v not in (...)`` with a NumPy array of strings: two elements raised NumPy's unnamed "truth
    # value of an array is ambiguous"; one element passed and was stored as the option.
    for bad in (np.array([other, "x"]), np.array([other]), None, 3):
        with pytest.raises(TypeError, match=f"^{name}: expected "):
            make(bad)
    with pytest.raises(ValueError, match=f"^{name}: expected "):
        make("nope")
    make(np.str_(other))  # (a str subclass: taken)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda v: S.multi_step(1.0, v), "milestones"),
        (lambda v: S.batch_size_schedule(8, v), "milestones"),
        (lambda v: S.sequential([S.constant(1.0), S.constant(2.0)], v), "boundaries"),
        (lambda v: S.sequential(v, []), "schedules"),
    ],
)
def test_a_0d_array_for_a_sequence_is_refused_by_name(make, name):
    # A 0-d array has __iter__ but iterating it raises NumPy's "iteration over a 0-d array".
    with pytest.raises(TypeError, match=f"^{name}: expected a sequence"):
        make(np.array(3))
    make(np.array([3]) if name != "schedules" else np.array([S.constant(1.0)], dtype=object))


def test_update_bn_refuses_a_0d_array_of_batches_by_name():
    # It passed the hasattr(batches, "__iter__") check, reset the statistics and raised NumPy's
    # unnamed "iteration over a 0-d array" from the loop.
    bn = BatchNorm(3)
    bn.running_mean[...] = 2.0
    with pytest.raises(TypeError, match="^batches: expected an iterable"):
        update_bn(np.array(3.0, np.float32), lambda x: bn.forward(x), [bn])
    np.testing.assert_array_equal(bn.running_mean, np.full(3, 2.0, np.float32))
    update_bn(np.ones((2, 4, 3), np.float32), lambda x: bn.forward(x), [bn])  # (rows of an array: batches)
    np.testing.assert_allclose(bn.running_mean, np.ones(3))


@pytest.mark.parametrize(
    "change", [{"key": np.array(["lr", "x"])}, {"key": np.array(["lr"])}, {"index": np.array([0, 1])}, {"key": b"lr"}]
)
def test_scheduler_state_of_another_key_or_index_is_refused_whole(change):
    # key / index compared with != : a NumPy array raised NumPy's unnamed "truth value is
    # ambiguous" (or, with one element, passed for the key it holds).
    class Opt:
        def __init__(self):
            self.param_groups = [{"lr": 0.1}]

    sc = S.cosine(0.1, 10).attach(Opt())
    sc.step()
    before = sc.state_dict()
    with pytest.raises(ValueError, match="^state: drives "):
        sc.load_state_dict({"last_step": 5, "base_values": [0.2], **change})
    assert sc.state_dict() == before
    sc.load_state_dict({"last_step": 5, "base_values": [0.2], "key": "lr", "index": None})
    assert sc.last_step == 5


@pytest.mark.parametrize(
    "key, index, value, where",
    [
        ("lr", None, -0.1, r"optimizer\.param_groups\[1\]\['lr'\]"),
        ("lr", None, "0.1", r"optimizer\.param_groups\[1\]\['lr'\]"),
        ("betas", 0, (1.5, 0.99), r"optimizer\.param_groups\[1\]\['betas'\]\[0\]"),
    ],
)
def test_scheduler_names_the_group_entry_it_read(key, index, value, where):
    # A bad value of a group with no 'initial_<key>' entry was reported as 'initial_<key>'.
    class Opt:
        def __init__(self):
            self.param_groups = [{key: 0.1 if index is None else (0.9, 0.99)}, {key: value}]

    with pytest.raises((TypeError, ValueError), match=f"^{where}: "):
        S.Scheduler(Opt(), S.constant(0.5), key=key, index=index)
    opt = Opt()
    opt.param_groups[1]["initial_" + key + ("" if index is None else str(index))] = -1.0
    with pytest.raises(ValueError, match=r"^optimizer\.param_groups\[1\]\['initial_"):
        S.Scheduler(opt, S.constant(0.5), key=key, index=index)
