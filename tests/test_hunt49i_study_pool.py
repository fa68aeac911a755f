"""``optkern study --jobs N`` interrupted while it starts a worker (hunt 49i)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time

import pytest

from optkern.datasets import load_digits
from optkern.study.pool import run_pool
from optkern.study.runner import StudyConfig


@pytest.mark.spawns  # (the pool's workers train in processes of their own)
def test_ctrl_c_while_a_worker_starts_leaves_no_worker_behind(monkeypatch):
    # ``_signals_blocked`` blocks SIGINT in the thread that submits, but a SIGINT to the process
    # reaches any other thread that does not block it (the OpenMP / BLAS threads of the study), and
    # Python then raises KeyboardInterrupt in the main thread anyway: between the pool's p.start()
    # and its ``_processes[pid] = p`` it left a worker the pool did not know, which _kill_workers
    # missed and which waited for work forever after the study exited 130 (and kept the study's
    # stdout open: ``optkern study ... | tee log`` hung).
    go, sent = threading.Event(), threading.Event()

    def other_thread() -> None:  # (started here, before the block: SIGINT unblocked in it)
        go.wait()
        os.kill(os.getpid(), signal.SIGINT)
        sent.set()

    helper = threading.Thread(target=other_thread, daemon=True)
    helper.start()
    start = multiprocessing.context.SpawnProcess.start
    started = []

    def start_then_ctrl_c(self) -> None:
        start(self)
        started.append(self)
        if len(started) == 1:
            go.set()
            sent.wait(10)
            time.sleep(0.05)  # (the C handler has run: Python raises at its next check)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", start_then_ctrl_c)
    train, val = load_digits().split(seed=0)
    cfg = StudyConfig.quick(epochs=1, checkpoints=1, hidden=(4,), curvature_batch=8, optimizers=("sgd",))
    tasks = [("sgd", "none", 0), ("sgd", "batch", 0)]
    records: list = [{} for _ in tasks]
    # Python's handler, whatever the test run inherited: a run started in the background by a
    # non-interactive shell (``cmd &``, as nohup'd CI runs are) has SIGINT ignored, and no
    # KeyboardInterrupt ever comes.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run_pool(tasks, records, train, val, cfg, 2, False) is True
        deadline = time.monotonic() + 10
        while any(p.is_alive() for p in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.pid for p in started if p.is_alive()] == []
    finally:
        signal.signal(signal.SIGINT, old)
        for p in started:
            if p.is_alive():
                p.kill()
                p.join(5)
