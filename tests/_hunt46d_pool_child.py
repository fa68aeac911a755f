"""The child of tests/test_hunt46d_study_pool_broken.py: ``run_pool`` over two runs whose pool
breaks (see ``Broken``); it prints how run_pool ended."""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def dies_holding_the_queue_lock(*args):
    """A worker killed while it holds the call queue's read lock, as an idle worker waiting for
    work is when a SIGTERM to the study's process group kills it."""
    frame = sys._getframe()
    while frame is not None and "call_queue" not in frame.f_locals:
        frame = frame.f_back
    frame.f_locals["call_queue"]._rlock.acquire()
    time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


def ignores_terminate(*args):
    """A run that outlives the pool's terminate(): one whose first signal stopped it ignores the next
    while it saves its record (pool._interrupt_once)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(4.0)
    return {"status": "interrupted"}, None


class Broken(ProcessPoolExecutor):
    """The study's pool: the first run's worker dies holding the queue's lock, the second's outlives
    terminate() and then waits for that lock."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._calls = 0

    def submit(self, fn, *args, **kwargs):
        self._calls += 1
        return super().submit(dies_holding_the_queue_lock if self._calls == 1 else ignores_terminate, *args)


def main() -> None:
    sys.path.insert(0, os.path.dirname(__file__))  # (so that the spawned workers import this module)
    from optkern.datasets import load_digits
    from optkern.study import pool
    from optkern.study.config import StudyConfig

    pool.ProcessPoolExecutor = Broken
    train, val = load_digits().split(seed=0)
    cfg = StudyConfig.quick(optimizers=["sgd"], norms=["none", "batch"], epochs=1, hidden=(8,), jobs=2)
    tasks = [("sgd", "none", 0), ("sgd", "batch", 0)]
    records: list[dict] = [{}, {}]
    try:
        pool.run_pool(tasks, records, train, val, cfg, 2, False)
    except Exception as e:
        print("raised", type(e).__name__, flush=True)
    else:
        print("returned", flush=True)


if __name__ == "__main__":
    main()
