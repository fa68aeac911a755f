"""The child of tests/test_hunt47n_study_pool_signals.py: ``run_pool`` over two runs on two
workers, each worker sent the signals named in argv (INT, TERM) while it starts up, before the
pool's ``_init`` ran; ``handled`` in argv: this process has a Python SIGTERM handler, as the command
line has (``optkern.study._SigtermAsCtrlC``). It prints how run_pool ended and the runs' statuses."""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def _instant_run(name, norm, train, val, cfg, rec, **kw):
    rec.update(optimizer=name, norm=norm, seed=kw.get("seed"), status="finished")


def _starting(delay: float) -> None:
    """Unpickled in a starting worker (the pool's ``train``): holds it in its start-up, where the
    signals reach it, and makes its runs instant."""
    from optkern.study import runner

    runner.train_run = _instant_run
    time.sleep(delay)


class Starting:
    def __reduce__(self):
        return (_starting, (0.5,))


class SignalledAtStart(ProcessPoolExecutor):
    """The study's pool, whose every new worker gets the signals as soon as it is started."""

    signals: tuple[int, ...] = ()

    def _spawn_process(self):
        super()._spawn_process()
        pid = list(self._processes)[-1]
        for s in self.signals:
            os.kill(pid, s)


def main() -> None:
    sys.path.insert(0, os.path.dirname(__file__))  # (so that the spawned workers import this module)
    from optkern.study import pool
    from optkern.study.config import StudyConfig

    SignalledAtStart.signals = tuple(getattr(signal, f"SIG{a}") for a in sys.argv[1:] if a in ("INT", "TERM"))
    if "handled" in sys.argv:
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
    pool.ProcessPoolExecutor = SignalledAtStart
    cfg = StudyConfig.quick(optimizers=["sgd"], norms=["none"], seeds=2, epochs=1, hidden=(8,), jobs=2)
    tasks = [("sgd", "none", s) for s in range(2)]
    records: list[dict] = [{}, {}]
    try:
        interrupted = pool.run_pool(tasks, records, Starting(), None, cfg, 2, False)
    except Exception as e:
        print("raised", type(e).__name__, flush=True)
    else:
        print("returned", interrupted, [r.get("status") for r in records], flush=True)


if __name__ == "__main__":
    main()
