"""optkern's kernels called from several Python threads, and interrupted (defect hunt 27).

Guards (held on the code as found): kernels of different Python threads give what one thread
gives, bit for bit; one optimizer stepped from two threads counts every step; long kernels
release the GIL; the Philox streams do not depend on the thread count or the calling thread.

Defect fixed: a Ctrl-C that arrived while an optimizer step's or an SWA update's kernel ran was
raised when the kernel returned, after it wrote every element, but before the Python code counted
the step: the state said one step fewer than the arrays held (Adam's next step repeated the bias
correction of the last one; a checkpoint saved in ``except KeyboardInterrupt`` kept the
mismatch). Steps of at least ``optkern._atomic.DEFER_SIGINT_ELEMENTS`` elements now defer SIGINT
to their end (``Uninterrupted``).
"""

import os
import sys
import threading
import time

import numpy as np
import pytest

import optkern
import sigint_mid_kernel
from optkern import norm
from optkern import random as okrandom

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))


@pytest.fixture
def restore_threads():
    before = optkern.get_num_threads()
    yield
    optkern.set_num_threads(before)


def _in_threads(fns):
    """Runs every function in its own Python thread, all started together; their results."""
    out, errors = [None] * len(fns), []
    barrier = threading.Barrier(len(fns))

    def run(i):
        try:
            barrier.wait()
            out[i] = fns[i]()
        except BaseException as e:  # (re-raised below, in the test's thread)
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts)
    if errors:
        raise errors[0]
    return out


def _workload(kind, seed):
    rng = np.random.default_rng(seed)
    n = 200_003
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    opt = {
        "adam": lambda: optkern.optim.Adam([p], lr=1e-2),
        "sgd": lambda: optkern.optim.SGD([p], lr=1e-2, momentum=0.9),
        "adagrad": lambda: optkern.optim.Adagrad([p], lr=1e-2),
    }.get(kind, lambda: None)()
    x = rng.standard_normal((129, 1000)).astype(np.float32)
    out = []
    for i in range(8):
        if opt is not None:
            opt.step([g])
            out.append(p.copy())
        elif kind == "layer_norm":
            out.append(norm.layer_norm(x + i, (1000,))[0])
        elif kind == "uniform":
            out.append(okrandom.uniform(n, seed=seed, offset=i * n))
        elif kind == "dropout":
            out.append(norm.dropout(x, 0.5, seed=seed, offset=i)[0])
        elif kind == "clip":
            out.append(np.float64(optkern.clip_grad_norm_([g.copy(), p * i], 1.0)))
    return out


KINDS = ["adam", "sgd", "adagrad", "layer_norm", "uniform", "dropout", "clip"]


@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_of_concurrent_python_threads_match_one_thread(restore_threads, threads):
    optkern.set_num_threads(threads)
    alone = [_workload(k, s) for s, k in enumerate(KINDS)]
    together = _in_threads([lambda k=k, s=s: _workload(k, s) for s, k in enumerate(KINDS)])
    for kind, a, b in zip(KINDS, alone, together):
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), kind


@pytest.mark.parametrize("name", ["Adam", "Adagrad", "RMSprop"])
def test_one_optimizer_stepped_from_two_threads_counts_every_step(name):
    # It must not crash, lose the state or miscount the steps (the steps themselves run one at a
    # time since hunt 40e: test_hunt40e_threads.py checks their values).
    p = np.zeros(100_000, np.float32)
    g = np.ones_like(p)
    opt = getattr(optkern.optim, name)([p], lr=1e-3)

    def steps():
        for _ in range(25):
            opt.step([g])

    _in_threads([steps, steps])
    assert opt.state_dict()["state"][0]["step"] == 50
    assert np.isfinite(p).all() and (p < 0).all()


def _ticks_during(call, switch_s=0.2):
    """How often a spinning Python thread ran during ``call()``. With a long switch interval a
    thread that holds the GIL runs alone: a call that keeps the GIL gives 0."""
    ticks, stop, started = [0], [False], threading.Event()

    def spin():
        started.set()
        while not stop[0]:
            ticks[0] += 1

    old = sys.getswitchinterval()
    t = threading.Thread(target=spin)
    try:
        t.start()
        started.wait()
        sys.setswitchinterval(switch_s)
        time.sleep(0.01)  # (gives the GIL to the spinner; the main thread waits one interval for it)
        before = ticks[0]
        call()
        during = ticks[0] - before
    finally:
        stop[0] = True
        sys.setswitchinterval(old)
        t.join()
    return during


def test_long_kernels_release_the_gil(restore_threads):
    optkern.set_num_threads(1)
    n = 1 << 24  # (each call tens of ms: far longer than the OS takes to wake the spinner)
    p, g = np.zeros(n, np.float32), np.ones(n, np.float32)
    x = np.ones((4096, 2048), np.float32)
    adam = optkern.optim.Adam([p], lr=1e-3)
    adam.step([g])
    assert _ticks_during(lambda: sum(range(300_000))) == 0  # (the measure: Python code keeps the GIL)
    for name, call in [
        ("Adam", lambda: adam.step([g])),
        ("uniform", lambda: okrandom.uniform(n, seed=1)),
        ("layer_norm", lambda: norm.layer_norm(x, (2048,))),
        ("dropout", lambda: norm.dropout(x, 0.5, seed=1)),
        # (one norm of 16M floats is ~2 ms: ten of them, so that a loaded machine wakes the spinner)
        ("clip_grad_norm_", lambda: [optkern.clip_grad_norm_([g], 1e30) for _ in range(10)]),
    ]:
        # (a spinner the OS schedules late may miss one short kernel: any of three calls will do)
        assert any(_ticks_during(call) > 0 for _ in range(3)), name


def _streams():
    x = np.ones((257, 1031), np.float32)
    out = []
    for n, off in [(65537, 3), (300_001, (1 << 40) + 1), (200_003, 2**64 - 200_003)]:
        for dt in (np.float32, np.float64):
            out += [okrandom.uniform(n, seed=12345, offset=off, dtype=dt)]
            out += [okrandom.rademacher(n, seed=2**64 - 1, offset=off, dtype=dt)]
    for off in (0, 7, 2**40):
        out += [norm.dropout(x, 0.3, seed=99, offset=off)[0], norm.dropout_backward(x, 0.3, seed=99, offset=off)]
    return out


def test_philox_streams_do_not_depend_on_threads(restore_threads):
    optkern.set_num_threads(1)
    ref = _streams()
    for n in (2, 3):
        optkern.set_num_threads(n)
        assert all(np.array_equal(a, b) for a, b in zip(ref, _streams())), n
    for got in _in_threads([_streams] * 4):
        assert all(np.array_equal(a, b) for a, b in zip(ref, got))


# ---- a Ctrl-C during a kernel -------------------------------------------------------------------

_INTERRUPT = """
import json, os, signal, threading
import numpy as np
import optkern
from optkern.swa import AveragedParams
signal.signal(signal.SIGINT, signal.default_int_handler)
optkern.set_num_threads(1)
n = 1 << 24
p, g = np.zeros(n, np.float32), np.ones(n, np.float32)
if "{what}" == "step":
    obj = optkern.optim.Adam([p], lr=1e-3)
    call, watched, count = (lambda: obj.step([g])), p, (lambda: obj.state_dict()["state"][0]["step"])
else:
    obj = AveragedParams([p])
    call, watched, count = (lambda: obj.update([p])), obj.averages[0], (lambda: obj.n_averaged)
call()
p += 1
call()
before = watched.copy()

{poke}
print(json.dumps(dict(where=where, written=written, n=n, count=count(), late=late)))
"""


def _interrupted(what):
    script = _INTERRUPT.replace("{poke}", sigint_mid_kernel.POKE.replace("CALL", "call()"))
    return sigint_mid_kernel.run(script.replace("{what}", what), ROOT, timeout=120)


def test_an_optimizer_step_interrupted_mid_kernel_is_counted():
    r = _interrupted("step")
    assert r["where"] == "inside" and r["written"] == r["n"]  # the kernel ran to the end: every element
    assert r["count"] == 3  # the state counts the step the arrays hold (was 2)


def test_an_swa_update_interrupted_mid_kernel_is_counted():
    r = _interrupted("swa")
    assert r["where"] == "inside" and r["written"] == r["n"]
    assert r["count"] == 3
