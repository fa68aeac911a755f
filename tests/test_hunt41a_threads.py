"""optkern objects shared by several Python threads (defect hunt 41a).

Defect fixed: ``amp.GradScaler`` had no lock (the optimizers and ``swa.AveragedParams`` got theirs
in hunt 40e, ``optkern._serial``). Its iteration record is read by ``update()`` (the flags) and
then replaced by a fresh one; a thread's ``unscale_`` / ``step`` that recorded its optimizer's
found_inf flag in between wrote it into the record being dropped: that optimizer's inf/NaN never
backed the scale off (and its next ``unscale_`` was taken as a first one). Two ``update()`` calls
on one iteration both backed off on the same flag, and ``state_dict()`` read the scale and the
growth tracker of two different updates. Now ``scale``, ``unscale_``, ``step``, ``update``,
``state_dict`` and ``load_state_dict`` hold the scaler's own reentrant lock: the calls of several
threads run in some order, each whole.
"""

import sys
import threading

import numpy as np
import pytest

from optkern import amp, optim

INIT = 2.0**120  # (room for ~240 backoffs by 0.5 above float32's smallest scale)


@pytest.fixture
def frequent_switches():
    """The GIL handed between threads every microsecond: each interleaving a race allows is tried."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _run(threads):
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)


def test_grad_scaler_unscale_and_update_from_two_threads_back_off_once_per_inf(frequent_switches):
    # (100 runs: unlocked, the 100 lost a flag in 20 of 20 tries)
    for _ in range(100):
        backoffs, taken, still_recorded = _unscale_and_update_in_two_threads()
        assert taken > 0
        assert backoffs == taken - still_recorded, (backoffs, taken, still_recorded)


def _unscale_and_update_in_two_threads():
    # Two threads, each its own optimizer, share one scaler: unscale_ its grads, update(). Thread
    # "inf"'s grads hold an inf, thread "clean"'s do not. In any order of whole calls, each of the
    # inf thread's recorded flags is read by exactly one update(), which backs the scale off by
    # 0.5: the backoffs are its unscale_ calls that were taken, less the one still recorded (if any).
    scaler = amp.GradScaler(init_scale=INIT, growth_interval=10**9)
    p_clean, p_inf = np.zeros(64, np.float32), np.zeros(64, np.float32)
    opts = {"clean": optim.SGD([p_clean], lr=0.1), "inf": optim.SGD([p_inf], lr=0.1)}
    # (zeros: unscaled in place by ever larger factors, ones became inf after ~100 backoffs)
    grads = {"clean": np.zeros(64, np.float32), "inf": np.full(64, np.inf, np.float32)}
    taken = {"clean": 0, "inf": 0}
    errors: list = []
    barrier = threading.Barrier(2)

    def loop(name, rounds=200):
        try:
            barrier.wait()
            for _ in range(rounds):
                try:
                    scaler.unscale_(opts[name], [grads[name]])
                    taken[name] += 1
                except RuntimeError as e:  # (recorded since the last update: the other thread's turn)
                    assert "already been called" in str(e)
                try:
                    scaler.update()
                except RuntimeError as e:  # (the other thread's update took this iteration)
                    assert "no inf checks" in str(e)
        except BaseException as e:  # (reported by the test's thread)
            errors.append(e)

    _run([threading.Thread(target=loop, args=(name,)) for name in opts])
    assert not errors, errors
    still_recorded = scaler._iteration.stage(opts["inf"]) is not amp.OptState.READY
    return round(np.log2(INIT / scaler.get_scale())), taken["inf"], int(still_recorded)


def test_grad_scaler_state_dict_read_while_updating_is_one_update_s_state(frequent_switches):
    # (50 runs: unlocked, the 50 tore a read in 20 of 20 tries)
    reads = 0
    for _ in range(50):
        seen = _state_dicts_read_while_updating()
        reads += len(seen)
        assert all(a <= b for a, b in zip(seen, seen[1:])), [(a, b) for a, b in zip(seen, seen[1:]) if a > b][:5]
    assert reads > 20  # (the reader ran beside the updates, not only after them)


def _state_dicts_read_while_updating(rounds=250):
    # growth_interval 2: the clean updates count the tracker 0, 1, then grow the scale and reset it.
    # Every state_dict() is the state after some number of updates u (scale 2 ** (u // 2), tracker
    # u % 2), and u never decreases from one read to the next; a read that took the scale before an
    # update and the tracker after it gave a u below the one read before. (250 updates: a scale of
    # 2 ** 125, in float32's range.)
    scaler = amp.GradScaler(init_scale=1.0, growth_interval=2)
    p = np.zeros(64, np.float32)
    opt = optim.SGD([p], lr=0.1)
    g = np.zeros(64, np.float32)
    done, barrier = threading.Event(), threading.Barrier(2)
    seen: list = []
    errors: list = []

    def updater():
        try:
            barrier.wait()
            for _ in range(rounds):
                scaler.unscale_(opt, [g])
                scaler.update()
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def reader():
        try:
            barrier.wait()
            while not done.is_set():
                st = scaler.state_dict()
                seen.append(2 * round(np.log2(st["scale"])) + st["_growth_tracker"])
        except BaseException as e:
            errors.append(e)

    _run([threading.Thread(target=updater), threading.Thread(target=reader)])
    assert not errors, errors
    return seen
