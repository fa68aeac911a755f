"""``optkern study --jobs N`` whose worker dies (hunt 47e): the runs that finished are reported.

A worker killed (the kernel's OOM killer, ``kill -9``) broke the pool, and ``BrokenProcessPool``
ended the study with one line and exit status 1: report.md stayed "Not finished" and nothing said
which runs were lost, though results.json held the finished ones. The report is now written
from the runs that finished, marked **Stopped**, and names the runs with no record (results.json:
``missing``); the exit status stays 1.
"""

from __future__ import annotations

import json
from concurrent.futures.process import BrokenProcessPool

from optkern.cli import main
from optkern.study import pool

_ARGS = ["study", "--quick", "--optimizers", "sgd,adam", "--norms", "none", "--epochs", "1", "--hidden", "8"]
_ARGS += ["--curvature-samples", "32", "--checkpoints", "2", "--jobs", "2", "--quiet", "--no-plots"]


def test_a_broken_pool_keeps_and_reports_the_runs_that_finished(tmp_path, monkeypatch, capsys):
    from optkern.study.runner import train_run

    def run_pool(tasks, records, train, val, cfg, jobs, progress, on_run_done=None):
        # the first run finishes (in this process, as a worker computes it), then a worker dies
        name, norm, seed = tasks[0]
        train_run(name, norm, train, val, cfg, records[0], progress=False, seed=seed)
        on_run_done()
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(pool, "run_pool", run_pool)
    out = tmp_path / "out"
    assert main([*_ARGS, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("optkern study: error: a worker process died"), err
    assert "--jobs" in line and "1 run that finished" in line and "not measured: adam seed 0" in line, line
    results = json.loads((out / "results.json").read_text())
    assert [(r["optimizer"], r["status"]) for r in results["runs"]] == [("sgd", "done")]
    assert results["missing"] == [{"optimizer": "adam", "norm": "none", "seed": 0}]
    assert results["interrupted"] is True and results["failure"].startswith("a worker process died")
    text = (out / "report.md").read_text()
    assert "Not finished" not in text and "**Stopped**: a worker process died" in text
    assert "Not measured (no record): adam seed 0." in text
    assert "| sgd | none |" in text  # the finished run's row


def test_an_interrupted_study_names_the_runs_it_did_not_start(tmp_path, monkeypatch):
    from optkern.study import runner

    real = runner.train_run

    def train_run(name, *a, **k):  # Ctrl-C as adam starts: sgd finished, adam and rmsprop not begun
        if name == "adam":
            raise KeyboardInterrupt
        return real(name, *a, **k)

    monkeypatch.setattr(runner, "train_run", train_run)
    out = tmp_path / "out"
    args = [a if a != "sgd,adam" else "sgd,adam,rmsprop" for a in _ARGS]
    assert main([*args, "--jobs", "1", "--out", str(out)]) == 130  # (the last --jobs counts)
    results = json.loads((out / "results.json").read_text())
    assert [r["optimizer"] for r in results["runs"]] == ["sgd"]
    assert results["missing"] == [{"optimizer": o, "norm": "none", "seed": 0} for o in ("adam", "rmsprop")]
    assert "Not measured (no record): adam seed 0, rmsprop seed 0." in (out / "report.md").read_text()
