"""``optkern study --checkpoints`` beyond ``--epochs + 1`` (hunt 46d). The Hessian is measured at
most once per epoch plus epoch 0; ``--checkpoints 50`` with 4 epochs measured 5 times and said
nothing (results.json kept ``"checkpoints": 50``), where a flag that cannot act as given is refused
before training, naming it (exit 2), as ``--large-batch`` without newton-cg is. The default
count (4; 3 with --quick) still follows a short ``--epochs`` (1 epoch: epochs 0 and 1)."""

from __future__ import annotations

import json

import pytest

from optkern import cli

_BASE = ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--hidden", "8", "--quiet"]
_BASE += ["--curvature-samples", "32", "--jobs", "1", "--no-plots"]


@pytest.mark.parametrize(
    "args, most",
    [
        (["--epochs", "4", "--checkpoints", "6"], 5),
        (["--checkpoints", "50"], 5),
        (["--epochs", "1", "--checkpoints", "3"], 2),
    ],
)
def test_more_checkpoints_than_epochs_plus_one_are_refused_naming_the_flag(args, most, tmp_path, capsys):
    rc = cli.main([*_BASE, *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "--checkpoints: at most" in err and f"{most}" in err and "--epochs" in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "args, epochs",
    [
        (["--epochs", "4", "--checkpoints", "5"], [0, 1, 2, 3, 4]),
        (["--epochs", "1"], [0, 1]),
        (["--epochs", "3", "--checkpoints", "1"], [3]),
    ],
)
def test_counts_that_fit_and_the_default_still_run(args, epochs, tmp_path):
    out = tmp_path / "out"
    assert cli.main([*_BASE, *args, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint_epochs"] == epochs
    assert [c["epoch"] for c in results["runs"][0]["curvature"]] == epochs


def test_the_help_says_what_one_checkpoint_and_the_bound_are(capsys):
    with pytest.raises(SystemExit):
        cli.main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "at most --epochs + 1" in text and "1: the last epoch only" in text
