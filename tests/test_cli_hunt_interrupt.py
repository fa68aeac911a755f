"""A SIGINT sent to ``optkern study``'s own process only, with runs in worker processes (--jobs 2).

Ctrl-C at a terminal reaches every process of the job; ``kill -INT PID``, a job scheduler or
``timeout -s INT`` reach the parent alone. The parent used to wait for the runs in flight to
reach their last epoch (here: never, in any sensible time); it now forwards the SIGINT, the runs
stop, and the report of what they measured is written at once. A worker told twice (terminal and
parent) stops once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import optkern
from optkern.study import pool

SRC = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _default_sigint() -> None:
    """In the child before exec: SIGINT's default action. A test run from a background job (CI's
    ``cmd &``, nohup) has SIGINT ignored, which its children inherit; a Python started so never
    installs its KeyboardInterrupt handler, as a background job should not."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _assert_gone(workers) -> None:
    """Each of the study's ``workers`` (PIDs) ended with it: half a second on, gone or a zombie
    (until PID 1 reaps it), not still running."""
    time.sleep(0.5)
    for pid in workers:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        assert state == "Z", f"worker {pid} outlived the study ({state})"


def _children(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"), reason="Linux /proc")
def test_sigint_to_the_parent_alone_stops_the_workers_runs(tmp_path):
    out = tmp_path / "out"
    args = ["--jobs", "2", "--optimizers", "sgd", "--norms", "none,batch", "--epochs", "100000"]
    args += ["--checkpoints", "2", "--hidden", "8", "--curvature-samples", "32", "--no-plots", "--quiet"]
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "optkern", "study", *args, "--out", str(out)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
        start_new_session=True,  # no terminal's Ctrl-C: the signal below reaches the parent only
    )
    try:
        # Both workers training: past their imports (~0.5 s of CPU) and unpickling the data.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = []
            for c in _children(proc.pid):
                try:
                    if _cpu_seconds(c) > 1.2:
                        busy.append(c)
                except OSError:
                    pass
            if len(busy) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=45)  # runs of 100,000 epochs: only an interrupt ends them
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()  # reaped, its stderr pipe closed
    assert proc.returncode == 130, err
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    assert [r["status"] for r in results["runs"]] == ["interrupted", "interrupted"], err
    # what they measured is kept (how many epochs depends on the machine: under the sanitizer's
    # -O1 build a worker past 1.2 s of CPU may still be measuring epoch 0)
    assert all(isinstance(r["history"]["epoch"], list) for r in results["runs"])
    assert "**Interrupted**" in (out / "report.md").read_text()


def test_a_run_stops_on_the_first_sigint_and_ignores_a_second():
    old = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, pool._interrupt_once)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs at the next bytecode
        assert signal.getsignal(signal.SIGINT) is pool._ignore  # (not SIG_IGN: hunt 47e)
        os.kill(os.getpid(), signal.SIGINT)  # the forwarded copy: ignored
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, old)


def test_forward_interrupt_signals_every_worker_and_tolerates_gone_ones():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=_default_sigint)
    try:

        class Gone:
            pid = 2**22 + 12345  # beyond Linux's pid_max: no such process

        class FakePool:
            def __init__(self):
                self._processes = {1: sleeper, 2: Gone()}

        pool._forward_interrupt(FakePool())
        assert sleeper.wait(timeout=30) != 0  # died of KeyboardInterrupt
        pool._forward_interrupt(object())  # an executor without the attribute: nothing to do
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()  # (reaped: no ResourceWarning for a later test to trip on)
