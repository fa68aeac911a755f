"""``optkern study``'s progress lines for a diverged run (40th hunt, j).

In one process (``--jobs 1``) the last line a diverged run drew (the only one in a log, where the
bar is not redrawn) kept the note of its last step: "measuring the Hessian at epoch 0...", or
nothing for a run whose epoch 0 came from the cache, never that it diverged. With worker processes
(``--jobs 2``) its line read "diverged ... val acc 0.212": the accuracy of the initial weights
(a diverged run's history ends before it diverged), looking like the run's result."""

from __future__ import annotations

import io

import pytest

from optkern.cli import main
from optkern.study.progress import ProgressBar

_ARGS = ["study", "--quick", "--epochs", "2", "--norms", "none", "--no-plots", "--seed", "0"]


def _lines(capsys, tmp_path, jobs: str) -> dict:
    argv = [*_ARGS, "--optimizers", "sgd,adam", "--lr", "sgd=1e9", "--jobs", jobs, "--out", str(tmp_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    return {name: [ln for ln in err if ln.split(" ", 1)[0] == name] for name in ("sgd", "adam")}


def test_in_process_progress_line_says_the_run_diverged(capsys, tmp_path):
    lines = _lines(capsys, tmp_path, "1")
    assert len(lines["sgd"]) == 1, lines
    assert "diverged at epoch 1" in lines["sgd"][0], lines["sgd"]
    assert "measuring the Hessian" not in lines["sgd"][0], lines["sgd"]
    assert "diverged" not in lines["adam"][0], lines["adam"]  # the healthy run's line: its loss
    assert "val acc" in lines["adam"][0], lines["adam"]


def test_worker_progress_line_gives_no_accuracy_of_a_diverged_run(capsys, tmp_path):
    lines = _lines(capsys, tmp_path, "2")
    assert len(lines["sgd"]) == 1, lines
    assert lines["sgd"][0].split()[1] == "diverged" and "at epoch 1" in lines["sgd"][0], lines["sgd"]
    assert "val acc" not in lines["sgd"][0], lines["sgd"]
    assert "val acc" in lines["adam"][0], lines["adam"]


def test_bar_line_of_an_interrupted_run_says_so():
    # (likewise the line of the run in flight at Ctrl-C / SIGTERM kept "measuring the Hessian at epoch 2...")
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt), ProgressBar(4, "sgd+batch", stream=stream) as bar:
        bar.update(1, "loss 1.0 val acc 0.5")
        bar.update(0, "measuring the Hessian at epoch 2...")
        raise KeyboardInterrupt
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" interrupted"), line
    assert "measuring" not in line, line
