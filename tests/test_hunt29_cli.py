"""``optkern study`` hunt (session 29): inputs that crashed with a traceback, were silently ignored
or left a report that looked complete.

- a CSV whose header line has more or fewer names than its rows have columns, with
  ``--label-column NAME``: an IndexError traceback, or silently the wrong column; a name two
  columns share silently took the first;
- ``--large-batch 1`` with batch norm: Newton-CG's first step ended the study with a traceback;
- ``--lr`` above float32's max ** (1/4): the optimizer refused it when built, mid-study;
- ``--lr ""`` / ``--lr ,`` and ``--data ""`` (a shell variable left unset) fell back to the
  defaults; ``--lr adam=1 --lr adam=2`` kept the last silently; ``--low-precision --optimizers ""``
  ran the low-precision runs alone;
- a closure optimizer (SAM, L-BFGS, Newton-CG) whose loss turned NaN mid-epoch refused the step
  with a ValueError that ended the whole study instead of marking the run diverged;
- a study killed (SIGTERM, SIGKILL) in a folder holding an earlier study's report left that
  report, complete-looking, beside its own partial results.json (marked not interrupted).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import optkern.study as study
from optkern import cli
from optkern.datasets import load_file
from optkern.study import runner
from test_cli_hunt_options import TINY, no_training  # noqa: F401 (the study-stopping fixture)


def _one_line_error(capsys, *words) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("optkern study: error: "), err
    assert all(w in lines[0] for w in words), err
    return lines[0]


def _csv(path, header: str, ncols: int) -> str:
    rows = "\n".join(",".join([str(i)] * (ncols - 1) + [str(i % 2)]) for i in range(20))
    path.write_text(header + "\n" + rows + "\n")
    return str(path)


@pytest.mark.spawns
def test_label_column_name_in_a_header_longer_than_the_rows_exits_2_without_traceback(tmp_path):
    data = _csv(tmp_path / "long.csv", "a,b,c,label", 2)  # the name's index (3) is past the 2 columns
    args = ["study", *TINY, "--data", data, "--label-column", "label", "--out", str(tmp_path / "out"), "--quiet"]
    # (the environment as given: optkern is the installed package in CI, src/ with PYTHONPATH here)
    r = subprocess.run([sys.executable, "-m", "optkern", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert "4 names for 2 columns" in r.stderr and "'label'" in r.stderr
    # a header that matches the rows still names the label column
    ok = tmp_path / "ok.csv"
    ok.write_text("a,label,b\n" + "\n".join(f"{i},{i % 2},{-i}" for i in range(20)) + "\n")
    d = load_file(str(ok), label_column="label")
    assert d.x.shape == (20, 2) and "'label'" in d.notes[0]
    assert np.array_equal(np.bincount(d.y), [10, 10])


@pytest.mark.parametrize(
    "header, ncols, column, words",
    [
        ("label", 3, "label", ("1 names for 3 columns",)),  # took column 0 (the row index) as the label
        ("a,a,label", 3, "a", ("'a' is ambiguous",)),  # took the first 'a'
    ],
)
@pytest.mark.usefixtures("no_training")
def test_label_column_name_that_does_not_say_which_column_is_refused(header, ncols, column, words, tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", header, ncols)
    rc = cli.main(["study", *TINY, "--data", data, "--label-column", column, "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2
    _one_line_error(capsys, "d.csv", *words)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--lr", "sgd=1e300"], ("--lr:", "sgd", "at most")),
        (["--lr", "adam=5e9"], ("--lr:", "adam", "at most")),
        (["--lr", ""], ("--lr:", "NAME=VALUE")),
        (["--lr", ","], ("--lr:", "NAME=VALUE")),
        (["--lr", "adam=1e-3", "--lr", "adam=2e-3"], ("--lr:", "adam given more than once")),
        (["--lr", "adam=1e-3,adam=1e-3"], ("--lr:", "adam given more than once")),
        (["--data", ""], ("--data:", "no file name")),
        (["--low-precision", "--optimizers", ""], ("--optimizers:", "no optimizer given")),
    ],
)
@pytest.mark.usefixtures("no_training")
def test_options_that_were_ignored_or_failed_mid_study_exit_2(args, words, tmp_path, capsys):
    rc = cli.main(["study", *TINY, *args, "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 2
    line = _one_line_error(capsys, *words)
    assert "overrides" not in line and "large_batch" not in line  # internal names never reach the user


@pytest.mark.usefixtures("no_training")
def test_large_batch_1_with_batch_norm_exits_2_and_without_it_is_fine(tmp_path, capsys):
    args = ["study", *TINY, "--optimizers", "newton-cg", "--large-batch", "1", "--out", str(tmp_path), "--quiet"]
    assert cli.main(args) == 2
    _one_line_error(capsys, "--large-batch:", "batch norm", "newton-cg")
    runner.StudyConfig.quick(optimizers=["newton-cg"], norms=["none", "layer"], large_batch=1).validate()
    runner.StudyConfig.quick(optimizers=["sgd"], norms=["batch"], large_batch=1).validate()  # (no large batches)


def test_a_closure_run_whose_loss_turns_nan_is_marked_diverged_and_the_study_goes_on(tmp_path):
    # relu + SAM at lr 1e9: the loss is NaN within the first epoch; SAM refuses the step with a
    # ValueError, which ended the study (no report) before the next run.
    out = tmp_path / "out"
    args = [*TINY, "--hidden", "8,8", "--activation", "relu", "--norms", "none", "--optimizers", "sam,sgd"]
    rc = cli.main(["study", *args, "--lr", "sam=1e9", "--out", str(out), "--quiet"])
    assert rc == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["optimizer"], r["status"]) for r in runs] == [("sam", "diverged"), ("sgd", "done")]
    assert runs[0]["diverged_epoch"] == 1
    assert "diverged at epoch 1" in (out / "report.md").read_text()


def test_a_killed_study_leaves_no_complete_looking_report(tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["study", *TINY, "--optimizers", "sgd", "--norms", "none", "--out", str(out), "--quiet"]
    assert cli.main(args) == 0  # an earlier, finished study in the same folder
    assert json.loads((out / "results.json").read_text())["interrupted"] is False
    report = (out / "report.md").read_text()
    assert "Not finished" not in report and "Interrupted" not in report and "| sgd | none |" in report

    class Killed(BaseException):  # SIGKILL / SIGTERM: nothing after it runs
        pass

    seen = {}

    def killed_after_one_run(train, val, cfg, progress=True, on_run_done=None, comm=None):
        seen["results.json at the start"] = (out / "results.json").exists()
        on_run_done({"runs": [{"optimizer": "sgd", "status": "done"}], "interrupted": False})
        raise Killed

    monkeypatch.setattr(study, "run_study", killed_after_one_run)
    with pytest.raises(Killed):
        cli.main([*args, "--optimizers", "sgd,adam"])
    assert seen["results.json at the start"] is False  # the earlier study's is gone
    assert "Not finished" in (out / "report.md").read_text()
    assert json.loads((out / "results.json").read_text())["interrupted"] is True
