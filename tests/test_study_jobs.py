"""``optkern study --jobs``: runs trained in worker processes (study/pool.py) give the records
of the one-process loop, bit for bit, in the same order; Ctrl-C still writes a report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optkern import datasets
from optkern.study import pool, runner

TIMES = ("time_s", "train_time_s", "eval_time_s", "curvature_time_s")


def _without_times(run: dict) -> dict:
    out = {k: v for k, v in run.items() if k not in TIMES}
    out["curvature"] = [{k: v for k, v in c.items() if k not in TIMES} for c in run.get("curvature", [])]
    return out


def _tiny(**kw):
    return runner.StudyConfig.quick(
        optimizers=["sgd", "adam", "rmsprop"], epochs=2, checkpoints=2, hidden=(12,), curvature_batch=48, **kw
    )


def test_worker_processes_give_the_records_of_one_process():
    train, val = datasets.load_digits().split(0.2, seed=0)
    one = runner.run_study(train, val, _tiny(seeds=2), progress=False)
    many = runner.run_study(train, val, _tiny(seeds=2, jobs=3), progress=False)
    assert one["jobs"] == 1 and many["jobs"] == 3
    assert not many["interrupted"]
    assert len(many["runs"]) == len(one["runs"]) == 3 * 2 * 2
    assert [_without_times(r) for r in many["runs"]] == [_without_times(r) for r in one["runs"]]
    assert all(r["status"] == "done" for r in many["runs"])


def test_jobs_are_capped_by_runs_and_one_on_a_gpu_or_under_mpi():
    cfg = _tiny(jobs=64)
    assert runner.study_jobs(cfg, 5) == 5
    assert runner.study_jobs(_tiny(jobs=2), 5) == 2
    assert runner.study_jobs(_tiny(jobs=2, device="cuda"), 5) == 1
    assert runner.study_jobs(_tiny(jobs=2), 5, comm=object()) == 1
    auto = runner.study_jobs(_tiny(jobs=0, threads=1), 1000)
    assert auto == len(os.sched_getaffinity(0))
    assert pool.default_jobs(_tiny(threads=10**6), 1000) == 1  # more threads per run than cores


def test_negative_jobs_is_a_usage_error_naming_the_flag(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "optkern", "study", "--quick", "--jobs", "-1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--jobs" in r.stderr, r.stderr


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _wait_for_training_workers(pid: int, n: int, cpu_s: float = 5.0, timeout: float = 180.0) -> None:
    """Until ``n`` child processes of ``pid`` have each used ``cpu_s`` of CPU: started, imported,
    epoch 0 measured (a quick study's epoch 0 takes well under a second) and training."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        busy = 0
        for k in kids:
            try:
                busy += _cpu_seconds(int(k)) >= cpu_s
            except (OSError, IndexError, ValueError):  # a child that just ended (resource tracker)
                pass
        if busy >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"{n} workers did not start training within {timeout} s")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker CPU times from Linux's /proc")
def test_ctrl_c_with_workers_writes_a_report_of_what_was_measured(tmp_path):
    out = tmp_path / "out"
    # --epochs: far more than any run finishes before the Ctrl-C, on any machine
    cmd = [sys.executable, "-m", "optkern", "study", "--quick", "--jobs", "2", "--epochs", "20000"]
    cmd += ["--optimizers", "sgd,adam", "--no-plots", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # SIGINT back to its default in the child: a shell starting this test suite in the background
    # (`cmd &` without job control) leaves SIGINT ignored, and Python then never raises
    # KeyboardInterrupt.
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed just before the workers start
        assert banner.startswith("optkern study:") and "2 runs at a time" in banner, banner
        _wait_for_training_workers(proc.pid, 2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] and results["jobs"] == 2
    # the first run of each normalization was training; the others waited for its epoch-0 measurement
    runs = [(r["optimizer"], r["norm"], r["status"]) for r in results["runs"]]
    assert runs == [("sgd", "none", "interrupted"), ("sgd", "batch", "interrupted")], runs
    assert all(r["history"]["epoch"][0] == 0 for r in results["runs"])  # each kept what it measured
    assert "Interrupted" in Path(out / "report.md").read_text()
