"""``amp.GradScaler.step`` and the optimizer's step it runs (defect hunt 42b).

Defect fixed: ``step`` held the scaler's lock (hunt 41a, ``optkern._serial``) across the
optimizer's step. A step that waits for another thread which uses the same scaler -- a closure
evaluated on a worker that scales its loss, a pipeline whose other stage unscales its own
optimizer's grads -- waited for ever: that thread waited for the lock the step held. Now the
lock is held while the grads are checked / unscaled and the step's flag is recorded (recorded
before the optimizer steps, as torch records found_inf at the unscale: an ``update()`` in another
thread meanwhile reads it, nothing is dropped), and released while the optimizer steps. A step
that raises takes its record back (a refused step changes nothing). A low-precision optimizer
unscales by the scale of its own iteration, copied: an ``update()`` meanwhile cannot change it
under the step.
"""

import sys
import threading

import numpy as np
import pytest

from optkern import amp, optim

WAIT = 20.0  # (seconds: a deadlock fails the test here instead of hanging it)


def _in_thread(fn):
    """``fn()`` in a daemon thread joined with a timeout: (its result, or its exception)."""
    out: list = []

    def body():
        try:
            out.append(("ok", fn()))
        except BaseException as e:  # (reported by the test's thread)
            out.append(("err", e))

    t = threading.Thread(target=body, daemon=True)  # (a deadlocked one must not keep pytest alive)
    t.start()
    t.join(WAIT)
    assert not t.is_alive(), "deadlock: the call did not return"
    kind, value = out[0]
    if kind == "err":
        raise value
    return value


class ClosureOnWorker:
    """An optimizer whose step evaluates ``closure`` on a worker thread and waits for it (torch's
    ``step(closure)``, forwarded by ``scaler.step(opt, grads, closure)``)."""

    def __init__(self, params):
        self.inner = optim.SGD(params, lr=0.5)
        self.param_groups = self.inner.param_groups

    def step(self, grads, closure):
        got: list = []
        worker = threading.Thread(target=lambda: got.append(closure()), daemon=True)
        worker.start()
        worker.join(WAIT)
        if not got:
            raise RuntimeError("the closure's worker did not finish")
        self.inner.step(grads)
        return got[0]


def test_step_whose_closure_scales_on_another_thread_returns():
    scaler = amp.GradScaler(init_scale=8.0)
    p = np.ones(5, np.float32)
    opt = ClosureOnWorker([p])
    g = np.full(5, 8.0, np.float32)  # (scaled by 8: unscaled to 1)
    loss = _in_thread(lambda: scaler.step(opt, [g], lambda: scaler.scale(np.float32(2.0))))
    assert loss == 16.0
    np.testing.assert_array_equal(p, np.full(5, 0.5, np.float32))
    scaler.update()
    assert scaler.get_scale() == 8.0  # (one clean step of 2000: no growth)


def test_step_waiting_for_another_optimizer_s_unscale_returns():
    # a two-stage pipeline: stage a's step waits until stage b has unscaled its own grads
    scaler = amp.GradScaler(init_scale=4.0, growth_interval=10**6)
    pa, pb = np.zeros(3, np.float32), np.zeros(3, np.float32)
    b_unscaled = threading.Event()
    b_found: list = []

    class WaitsForB(optim.SGD):
        def step(self, grads=None, closure=None):
            threading.Thread(target=stage_b, daemon=True).start()  # (stage b runs while a steps)
            if not b_unscaled.wait(WAIT):
                raise RuntimeError("stage b never unscaled")
            return super().step(grads)

    opt_a, opt_b = WaitsForB([pa], lr=1.0), optim.SGD([pb], lr=1.0)
    gb = np.array([4.0, np.inf, 0.0], np.float32)

    def stage_b():
        b_found.append(scaler.unscale_(opt_b, [gb]))
        b_unscaled.set()

    _in_thread(lambda: scaler.step(opt_a, [np.full(3, 4.0, np.float32)]))
    assert b_found == [True]
    np.testing.assert_array_equal(pa, np.full(3, -1.0, np.float32))
    scaler.step(opt_b, [gb])  # (skipped: its inf)
    np.testing.assert_array_equal(pb, np.zeros(3, np.float32))
    scaler.update()
    assert scaler.get_scale() == 2.0  # b's inf backed off once


def test_update_while_a_step_runs_reads_that_step_s_flag_once():
    # another thread's unscale_ (an inf) and update() while a's step runs: a's flag was recorded
    # before its step, so that update() reads both flags; nothing is left for the next one
    scaler = amp.GradScaler(init_scale=4.0, growth_interval=1)
    pa, pb = np.zeros(2, np.float32), np.zeros(2, np.float32)

    class UpdatesMeanwhile(optim.SGD):
        def step(self, grads=None, closure=None):
            def other():
                scaler.unscale_(opt_b, [np.array([np.nan, 1.0], np.float32)])
                scaler.update()

            t = threading.Thread(target=other, daemon=True)
            t.start()
            t.join(WAIT)
            assert not t.is_alive()
            return super().step(grads)

    opt_a, opt_b = UpdatesMeanwhile([pa], lr=1.0), optim.SGD([pb], lr=1.0)
    _in_thread(lambda: scaler.step(opt_a, [np.full(2, 4.0, np.float32)]))
    np.testing.assert_array_equal(pa, np.full(2, -1.0, np.float32))
    assert scaler.get_scale() == 2.0  # backed off once (b's NaN), not grown on a's clean step
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler.update()  # (a's flag was read by that update: none left)


@pytest.mark.parametrize("lowp", [False, True])
def test_a_step_that_raises_takes_its_record_back(lowp):
    # released while the optimizer steps, the record is written first: a refused step undoes it
    scaler = amp.GradScaler(init_scale=2.0)
    p = np.zeros(4, np.float16 if lowp else np.float32)
    kw = {"master_weights": True} if lowp else {}

    class Refuses(optim.SGD):
        refuse = True

        def step(self, grads=None, closure=None):
            if self.refuse:
                raise ValueError("lr: refused")
            return super().step(grads)

    opt = Refuses([p], lr=1.0, **kw)
    g = np.full(4, 2.0, p.dtype)
    with pytest.raises(ValueError, match="lr: refused"):
        scaler.step(opt, [g])
    # float32 grads were unscaled in place before the step (UNSCALED: not unscaled again);
    # a low-precision optimizer's grads were only checked (READY: checked again)
    expected = amp.OptState.READY if lowp else amp.OptState.UNSCALED
    assert scaler._iteration.stage(opt) is expected
    opt.refuse = False
    scaler.step(opt, [g])
    np.testing.assert_array_equal(p, np.full(4, -1.0, p.dtype))
    scaler.update()


def test_low_precision_step_unscales_by_its_own_iteration_s_scale():
    # update(new_scale) while a master_weights step runs (here from inside it): the step unscales
    # its grads by the scale they were scaled by, not the new one
    scaler = amp.GradScaler(init_scale=4.0)
    p = np.zeros(3, np.float16)

    class UpdatesFirst(optim.SGD):
        def step(self, grads=None, closure=None):
            scaler.update(new_scale=1024.0)
            return super().step(grads)

    opt = UpdatesFirst([p], lr=1.0, master_weights=True)
    scaler.step(opt, [np.full(3, 8.0, np.float16)])
    np.testing.assert_array_equal(p, np.full(3, -2.0, np.float16))  # 8 / 4, not 8 / 1024
    assert scaler.get_scale() == 1024.0


def test_steps_and_updates_from_two_threads_back_off_once_per_inf():
    # hunt 41a's guarantee with the lock released during the step: each recorded inf flag is read
    # by exactly one update() (backoffs = the inf thread's steps taken, less one still recorded)
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # (each interleaving tried)
    try:
        for _ in range(20):
            backoffs, taken, still_recorded = _steps_and_updates_in_two_threads()
            assert taken > 0
            assert backoffs == taken - still_recorded, (backoffs, taken, still_recorded)
    finally:
        sys.setswitchinterval(before)


def _steps_and_updates_in_two_threads(rounds=100):
    init = 2.0**120  # (room for the backoffs above float32's smallest scale)
    scaler = amp.GradScaler(init_scale=init, growth_interval=10**9)
    params = {"clean": np.zeros(64, np.float32), "inf": np.zeros(64, np.float32)}
    opts = {name: optim.SGD([p], lr=0.1) for name, p in params.items()}
    taken = {"clean": 0, "inf": 0}
    errors: list = []
    barrier = threading.Barrier(2)

    def loop(name):
        try:
            barrier.wait()
            for _ in range(rounds):
                g = np.full(64, np.inf if name == "inf" else 0.0, np.float32)
                try:
                    scaler.step(opts[name], [g])
                    taken[name] += 1
                except RuntimeError as e:  # (stepped since the last update: the other thread's turn)
                    assert "already been called" in str(e)
                try:
                    scaler.update()
                except RuntimeError as e:  # (the other thread's update took this iteration)
                    assert "no inf checks" in str(e)
        except BaseException as e:  # (reported by the test's thread)
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(name,), daemon=True) for name in opts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert not errors, errors
    assert not params["inf"].any()  # (every inf step skipped)
    still_recorded = scaler._iteration.stage(opts["inf"]) is not amp.OptState.READY
    return round(np.log2(init / scaler.get_scale())), taken["inf"], int(still_recorded)
