"""``optkern study`` stopped by SIGTERM writes its report as Ctrl-C does.

``kill PID``, ``timeout``, a job scheduler at the end of its time limit, systemd and
``docker stop`` send SIGTERM. Its default action ended the study at once: report.md said
**Not finished** and results.json held the runs finished so far, but the run in flight was lost
and no report was written. SIGTERM now stops the study as a Ctrl-C does (the runs so far and what
the run in flight measured, ``"interrupted": true``, a report marked **Interrupted**) and the exit
status is 143 (128 + SIGTERM), a shell's convention for a process ended by SIGTERM.

The subprocesses run in the environment as given (CI imports the installed package).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from optkern.study import pool
from test_cli_hunt_interrupt import _children, _cpu_seconds, _default_sigint

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="Linux /proc")


def _default_signals() -> None:
    """In the child before exec: SIGINT (see ``_default_sigint``) and SIGTERM at their defaults."""
    _default_sigint()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _study(out, *args, preexec=_default_signals) -> subprocess.Popen:
    """``optkern study --quick`` (small, two checkpoints) into ``out``, in its own process group, with
    ``preexec`` setting its signals before exec (test_hunt54c's: SIGINT ignored, as a background job)."""
    cmd = [sys.executable, "-m", "optkern", "study", "--quick", "--norms", "none", "--checkpoints", "2"]
    cmd += ["--hidden", "16", "--curvature-samples", "64", "--no-plots", "--quiet", "--out", str(out), *args]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        preexec_fn=preexec,
        start_new_session=True,  # its own process group: the signals below reach it alone
    )


def _wait(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None and ready(), proc.communicate()[1]


def _workers_training(pid: int, n: int) -> bool:
    """``n`` of the study ``pid``'s workers past their imports (~0.5 s of CPU each): in their runs."""
    busy = 0
    for c in _children(pid):
        try:
            busy += _cpu_seconds(c) > 1.2
        except OSError:  # (a worker that just ended)
            pass
    return busy >= n


def _finish(proc: subprocess.Popen, sig: int, group: bool = False) -> str:
    try:
        os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)  # runs of 100,000 epochs: only the signal ends them
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return err


def test_sigterm_after_a_finished_run_writes_the_report_of_the_runs_so_far(tmp_path):
    out = tmp_path / "out"
    # sgd with a learning rate that diverges at once: a run finished within a second; adam's
    # 100,000 epochs: still running when the SIGTERM comes
    proc = _study(out, "--jobs", "1", "--optimizers", "sgd,adam", "--lr", "sgd=1e6", "--epochs", "100000")
    _wait(proc, (out / "results.json").exists)  # written after each finished run
    # adam under way (a SIGTERM while sgd's results.json is written stops the study before adam
    # has a record): half a second more of CPU, not of wall time, on however loaded a machine
    cpu = _cpu_seconds(proc.pid)
    _wait(proc, lambda: _cpu_seconds(proc.pid) > cpu + 0.5)
    err = _finish(proc, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    runs = [(r["optimizer"], r["status"]) for r in results["runs"]]
    assert runs == [("sgd", "diverged"), ("adam", "interrupted")], runs
    assert results["runs"][1]["history"]["epoch"][0] == 0  # what the run in flight measured is kept
    report = (out / "report.md").read_text()
    assert "**Interrupted**" in report and "Not finished" not in report
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"), reason="Linux /proc")
def test_sigterm_to_the_process_group_stops_the_workers_runs_as_ctrl_c(tmp_path):
    """``kill -TERM -PGID`` (a scheduler, systemd): the workers get it too. A worker killed by it
    broke the pool and lost its run; a training worker now stops its run and returns it."""
    out = tmp_path / "out"
    proc = _study(out, "--jobs", "2", "--optimizers", "sgd", "--norms", "none,batch", "--epochs", "100000")

    _wait(proc, lambda: _workers_training(proc.pid, 2))
    err = _finish(proc, signal.SIGTERM, group=True)
    assert proc.returncode == 128 + signal.SIGTERM, err
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    assert [r["status"] for r in results["runs"]] == ["interrupted", "interrupted"], err
    assert "**Interrupted**" in (out / "report.md").read_text()


def test_a_run_s_sigterm_handler_is_the_sigint_one_and_ignores_what_follows():
    old = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, pool._interrupt_once)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode
        # the parent's forwarded SIGINT, a second SIGTERM: ignored while the run saves its record (by a
        # Python handler, not SIG_IGN: one already pending printed a race traceback, hunt 47e)
        assert signal.getsignal(signal.SIGINT) is pool._ignore
        assert signal.getsignal(signal.SIGTERM) is pool._ignore
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])


def test_results_json_interrupted_while_written_keeps_the_last_one_and_no_temporary(tmp_path, monkeypatch):
    from optkern.study import report

    report.write_json({"runs": [1]}, str(tmp_path))

    def interrupted(obj, f, **kw):
        f.write('{"runs": [')
        raise KeyboardInterrupt

    monkeypatch.setattr(report.json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_json({"runs": [1, 2]}, str(tmp_path))
    assert os.listdir(tmp_path) == ["results.json"]
    assert json.loads((tmp_path / "results.json").read_text()) == {"runs": [1]}
