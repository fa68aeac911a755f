"""``optkern study --jobs N`` (hunt 48a): an error raised in the study's own process while it
handles a run's result stops the pool at once, naming the run.

``run_pool`` handles each finished run in the study's process (its record, the progress line,
``on_run_done``: results.json written after every run). An exception raised there (results.json
on a full disk) left the loop into the ``with ProcessPoolExecutor``'s shutdown, which waited for
every run in flight and queued to train to its last epoch: the error surfaced only after them
(here: 100,000 epochs of adam and of rmsprop). The pool's runs are now stopped and the error
carries a note naming the run whose result raised.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from test_cli_hunt_interrupt import _assert_gone, _children

pytestmark = pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="Linux /proc")

# results.json unwritable from the first finished run on (a full disk), in a study whose first run
# (sgd, a learning rate that diverges at once) finishes within seconds and whose others (adam in
# flight, rmsprop queued for a worker) train 100,000 epochs: only the fix ends them
_CHILD = r"""
import os, sys, time
from optkern.cli import main
from optkern.study import report

def full(results, out):
    print("handler", os.getpid(), flush=True)
    raise OSError(28, "No space left on device")

report.write_json = full
t = time.monotonic()
print("rc", main(sys.argv[1:]), flush=True)  # (one error line on stderr, exit 1: test_hunt55c_full_disk)
print("after", round(time.monotonic() - t, 1), flush=True)
"""


@pytest.mark.spawns
def test_an_error_handling_a_run_s_result_stops_the_pool_and_names_the_run(tmp_path):
    args = ["study", "--quick", "--norms", "none", "--checkpoints", "2", "--hidden", "16"]
    args += ["--curvature-samples", "64", "--no-plots", "--quiet", "--out", str(tmp_path / "out")]
    args += ["--jobs", "2", "--optimizers", "sgd,adam,rmsprop", "--lr", "sgd=1e6", "--epochs", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args],
        env=dict(os.environ, OMP_NUM_THREADS="1"),  # (as given otherwise: CI imports the installed package)
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            workers = sorted(set(workers) | set(_children(proc.pid)))
            time.sleep(0.1)
        timed_out = proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    assert not timed_out, f"the error waited for the other runs' 100,000 epochs\n{out}\n{err}"
    lines = out.splitlines()
    assert lines[0].startswith("handler") and len([x for x in lines if x.startswith("handler")]) == 1, out
    assert lines[1] == "rc 1", out
    (said,) = [x for x in err.splitlines() if "error" in x]
    assert said.startswith(
        "optkern study: error: cannot write its output: No space left on device (run sgd seed 0: "
    ), err
    assert "the runs in flight stopped" in said, err
    assert workers, "no worker seen"
    _assert_gone(workers)  # (killed at the study's end)
