"""Which signal stops an interrupted study's runs (``pool._stop_signals``, 54th hunt, h).

The workers took Ctrl-C only where ``callable(getsignal(SIGINT))``: SIG_DFL (a library caller that
reset SIGINT) and None (a handler set from C) read as "ignored", so the runs ignored a Ctrl-C that
killed the study, and trained on, orphaned. Only SIG_IGN means ignored now. And the study forwarded
SIGTERM to its workers where they ignore SIGINT even with no Python SIGTERM handler (run_study from
a library): an idle worker then dies of it (SIG_DFL, ``_init``), the pool breaks and the runs in
flight lose their records; no signal is forwarded there now (the runs finish).
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from optkern.study import pool


def _handler(signum, frame):  # a Python handler (the command line's SIGTERM one, a user's)
    pass


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, None, _handler, signal.default_int_handler])
def test_ctrl_c_taken_by_the_runs_unless_ignored(sigint):
    for sigterm in (signal.SIG_DFL, _handler):
        handled, taken, stop = pool._stop_signals(sigint, sigterm)
        assert taken is True and stop == signal.SIGINT
        assert handled is (sigterm is _handler)


def test_sigint_ignored_stops_by_sigterm_only_where_the_workers_handle_it():
    assert pool._stop_signals(signal.SIG_IGN, _handler) == (True, False, signal.SIGTERM)
    # (the library's run_study: no Python SIGTERM handler, an idle worker would die of SIGTERM)
    for sigterm in (signal.SIG_DFL, signal.SIG_IGN, None):
        assert pool._stop_signals(signal.SIG_IGN, sigterm) == (False, False, None)


def test_no_stop_signal_sends_nothing():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:

        class FakePool:
            def __init__(self):
                self._processes = {1: sleeper}

        pool._forward_interrupt(FakePool(), None)
        with pytest.raises(subprocess.TimeoutExpired):
            sleeper.wait(timeout=0.5)  # not signalled: still sleeping
        pool._forward_interrupt(FakePool(), signal.SIGTERM)
        assert sleeper.wait(timeout=30) == -signal.SIGTERM  # (the same call with a signal: sent)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
