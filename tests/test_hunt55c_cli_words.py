"""The study's report and console text in the number of what they count, and the command line's
options all explained (55th hunt, c).

A study of one epoch, one optimizer, one normalization and one thread read "1 epochs",
"1 optimizer(s) x 1 normalization(s)", "curvature at epochs [1]" and "1 thread(s) per run"; and
``optkern bench --help`` listed ``--device`` with no text."""

from __future__ import annotations

import argparse
import re

import pytest

from optkern import cli
from optkern._words import counted_list, plural

# "1 <plural noun>" as the study's text could write it
_ONE_PLURAL = re.compile(
    r"\b1 (epochs|optimizers|normalizations|samples|training samples|validation samples|threads|steps|products|"
    r"probes|runs|features|seeds|classes)\b|[a-z]\(s\)|epochs \[|at epochs \d+[^,\d]"
)


@pytest.mark.parametrize(
    "n, word, many, want",
    [(0, "epoch", None, "0 epochs"), (1, "epoch", None, "1 epoch"), (2, "epoch", None, "2 epochs")]
    + [(1, "class", "classes", "1 class"), (10, "class", "classes", "10 classes"), ("?", "step", None, "? steps")]
    + [(True, "run", None, "True runs")],
)
def test_plural(n, word, many, want):
    assert plural(n, word, many) == want


def test_counted_list():
    assert counted_list("epoch", [4]) == "epoch 4"
    assert counted_list("epoch", [0, 2, 4]) == "epochs 0, 2, 4"


def test_a_study_of_one_says_so_in_the_singular(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["study", "--quick", "--hidden", "8", "--norms", "none", "--jobs", "1", "--optimizers", "sgd"]
    args += ["--epochs", "1", "--checkpoints", "1", "--threads", "1", "--no-plots", "--out", str(out)]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("optkern study: 1 optimizer x 1 normalization, 1 epoch on "), first
    assert "curvature at epoch 1 on " in first, first
    report = (out / "report.md").read_text()
    assert "1 epoch, batch" in report and "1 thread per run" in report and "at epoch 1." in report, report
    for text in (err, report):
        assert not _ONE_PLURAL.search(text), _ONE_PLURAL.search(text)


def test_checkpoints_past_one_epoch_are_refused_in_the_singular(capsys):
    assert cli.main(["study", "--quick", "--epochs", "1", "--checkpoints", "3", "--out", "/nonexistent/x"]) != 0
    err = capsys.readouterr().err
    assert "(epoch 0 and the one epoch)" in err, err


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_of_every_command_has_help_text():
    commands = dict(_subparsers(cli._parser()))
    assert {"study", "bench"} <= set(commands)
    silent = [
        f"{name} {'/'.join(a.option_strings) or a.dest}"
        for name, sub in commands.items()
        for a in sub._actions
        if not a.help or not a.help.strip()
    ]
    assert not silent, silent
