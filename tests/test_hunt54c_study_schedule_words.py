"""report.md's learning-rate schedule against what the runs did (54th hunt, c).

A run of one step (``--epochs 1`` with a batch as large as the training set, or a small --data
file) takes no schedule: it steps at the peak learning rate. Its report said "linear warm-up (5% of
the steps) to each optimizer's learning rate, then cosine decay to 0". A run of a few steps warms
up for one step at least (of 2: half of them), which the report called 5%.
"""

from __future__ import annotations

import json

import pytest

from optkern import cli
from optkern.study.batching import warmup_steps


@pytest.mark.parametrize("total, want", [(0, None), (1, None), (2, 1), (3, 1), (19, 1), (20, 1), (40, 2), (1000, 50)])
def test_warmup_steps(total, want):
    assert warmup_steps(0.05, total) == want


def _study(tmp_path, capsys, *args):
    out = tmp_path / "o"
    base = ["study", "--quick", "--hidden", "8", "--norms", "none", "--jobs", "1", "--optimizers", "sgd"]
    assert cli.main([*base, *args, "--no-plots", "--quiet", "--out", str(out)]) == 0, capsys.readouterr().err
    return (out / "report.md").read_text(), json.loads((out / "results.json").read_text())


def test_one_step_runs_are_reported_at_a_constant_learning_rate(tmp_path, capsys):
    text, res = _study(tmp_path, capsys, "--epochs", "1", "--batch-size", "5000", "--checkpoints", "1")
    assert [r["steps"] for r in res["runs"]] == [1]
    assert "linear warm-up" not in text and "cosine decay" not in text, text
    assert "constant learning rate" in text, text


def test_few_step_runs_say_how_many_steps_warm_up(tmp_path, capsys):
    text, res = _study(tmp_path, capsys, "--epochs", "2", "--batch-size", "5000")
    assert [r["steps"] for r in res["runs"]] == [2]
    assert "linear warm-up (1 of the 2 steps)" in text, text
    assert "5% of the steps" not in text, text
