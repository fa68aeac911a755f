"""Schedules driving the real optkern.optim optimizers; resume through both state_dicts."""

import numpy as np
import pytest

optim = pytest.importorskip("optkern.optim", reason="optkern.optim is not on this branch yet")
from optkern import regularize as R  # noqa: E402
from optkern import schedules as S  # noqa: E402

TARGET = np.linspace(-1, 1, 37)


def make(opt_cls, **kw):
    rng = np.random.default_rng(0)
    w = [rng.standard_normal(37), rng.standard_normal(5)]
    opt = opt_cls([{"params": [w[0]], "lr": 0.1}, {"params": [w[1]], "lr": 0.03}], **kw)
    sched = S.linear_warmup(S.cosine_restarts(1.0, T_0=5, T_mult=2), 4, start_factor=0.1).attach(opt, relative=True)
    return w, opt, sched


def train(w, opt, sched, steps):
    lrs = []
    for _ in range(steps):
        grads = [w[0] - TARGET, w[1].copy()]
        R.add_penalty_grad_(w, grads, l1=1e-3, l2=1e-2)
        opt.step(grads)
        sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    return lrs


@pytest.mark.parametrize("opt_cls, kw", [(optim.SGD, dict(momentum=0.9)), (optim.AdamW, {})])
def test_resume_mid_run_is_bitwise_identical(opt_cls, kw, tmp_path):
    w_ref, opt_ref, sched_ref = make(opt_cls, **kw)
    lrs_ref = train(w_ref, opt_ref, sched_ref, 30)

    w, opt, sched = make(opt_cls, **kw)
    lrs = train(w, opt, sched, 12)
    # checkpoint everything through an .npz, as a real run would
    R.save_state(tmp_path / "ckpt.npz", {"w": w, "opt": opt.state_dict(), "sched": sched.state_dict()})
    ck = R.load_state(tmp_path / "ckpt.npz")
    w2, opt2, sched2 = make(opt_cls, **kw)
    for a, b in zip(w2, ck["w"]):
        a[...] = b
    opt2.load_state_dict(ck["opt"])
    sched2.load_state_dict(ck["sched"])
    lrs += train(w2, opt2, sched2, 18)
    assert lrs == lrs_ref
    for a, b in zip(w2, w_ref):
        np.testing.assert_array_equal(a, b)
    assert opt2.param_groups[1]["lr"] / opt2.param_groups[0]["lr"] == pytest.approx(0.3)


def test_early_stopping_restores_optimizer_state():
    w, opt, sched = make(optim.Adam)
    stopper = R.EarlyStopping(patience=2)
    best = None
    for epoch, val in enumerate([3.0, 2.0, 2.5, 1.5, 1.6, 1.7, 1.8]):  # noqa: B007 - epoch is read after the loop
        train(w, opt, sched, 2)
        if val == 1.5:
            best = {k: v.copy() for k, v in opt.state_dict()["state"][0].items() if isinstance(v, np.ndarray)}
        if stopper.step(val, state=opt.state_dict):
            break
    assert epoch == 6 and stopper.best_step == 3
    kept = stopper.restore()
    for k, v in best.items():
        np.testing.assert_array_equal(kept["state"][0][k], v)
    opt.load_state_dict(kept)  # round-trips into the optimizer


def test_l2_penalty_is_coupled_weight_decay_not_adamw():
    """The docstring's claim: an L2 penalty equals torch-style coupled weight_decay (SGD, Adam)
    but not AdamW's decoupled decay."""
    rng = np.random.default_rng(3)
    p0, grads = rng.standard_normal(50), [rng.standard_normal(50) for _ in range(5)]

    def run(cls, wd, penalty, **kw):
        p = p0.copy()
        opt = cls([p], lr=0.05, weight_decay=wd, **kw)
        for g in grads:
            g = g.copy()
            if penalty:
                R.add_penalty_grad_([p], [g], l2=penalty)
            opt.step([g])
        return p

    np.testing.assert_allclose(
        run(optim.SGD, 0.0, 0.1, momentum=0.9), run(optim.SGD, 0.1, 0.0, momentum=0.9), rtol=1e-13, atol=1e-15
    )
    coupled = run(optim.Adam, 0.0, 0.1)
    np.testing.assert_allclose(coupled, run(optim.Adam, 0.1, 0.0), rtol=1e-13, atol=1e-15)
    assert np.abs(coupled - run(optim.AdamW, 0.1, 0.0)).max() > 1e-4


def test_scheduler_fills_a_device_resident_lr_in_place():
    # Stand-in for a capturable GPU optimizer whose lr is a 1-element array:
    # the Scheduler must update that array, not replace it (a graph holds its pointer).
    from optkern.schedules import Scheduler, step_decay

    lr = np.full(1, 0.1)

    class Opt:
        param_groups = [{"lr": lr}]  # noqa: RUF012 - a stand-in optimizer

    opt = Opt()
    s = Scheduler(opt, step_decay(0.1, step_size=2, gamma=0.5))
    values = []
    for _ in range(5):
        s.step()
        assert opt.param_groups[0]["lr"] is lr
        values.append(float(lr[0]))
    np.testing.assert_allclose(values, [0.1, 0.05, 0.05, 0.025, 0.025])
