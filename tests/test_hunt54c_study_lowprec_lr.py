"""``--lr adam=...`` with ``--low-precision`` (54th hunt, c).

The report's "Low precision" section sets each low-precision run beside "the float32 run it
replaces" (adam-bf16, adam-fp16, adam-8bit beside adam; swalp beside momentum) and words the
difference as the precision's. Their learning rates are the baseline's by default (2e-3, 0.02), but
``--lr adam=1e-3`` changed adam's alone: the bf16/fp16/8-bit runs kept 2e-3, and the report said
"adam-bf16: validation accuracy 0.657 against 0.518 for adam (+13.9 points)", a difference of
learning rates. A baseline's --lr now applies to its low-precision runs unless they have their own.
"""

from __future__ import annotations

import json

import pytest

from optkern import cli
from optkern.study import StudyConfig
from optkern.study.methods import LOW_PRECISION


@pytest.mark.parametrize("low, base", sorted(LOW_PRECISION.items()))
def test_low_precision_run_takes_its_baselines_lr(low, base):
    cfg = StudyConfig(optimizers=[base, low], low_precision=True, overrides={base: {"lr": 1e-3}})
    assert cfg.hyperparameters(low)["lr"] == 1e-3
    assert cfg.hyperparameters(base)["lr"] == 1e-3


@pytest.mark.parametrize("low, base", sorted(LOW_PRECISION.items()))
def test_low_precision_runs_own_lr_wins(low, base):
    cfg = StudyConfig(optimizers=[base, low], overrides={base: {"lr": 1e-3}, low: {"lr": 5e-4}})
    assert cfg.hyperparameters(low)["lr"] == 5e-4
    assert cfg.hyperparameters(base)["lr"] == 1e-3


def test_defaults_unchanged_without_overrides():
    cfg = StudyConfig(optimizers=["adam", "adam-bf16", "momentum", "swalp"])
    assert cfg.hyperparameters("adam-bf16")["lr"] == cfg.hyperparameters("adam")["lr"] == 2e-3
    assert cfg.hyperparameters("swalp")["lr"] == cfg.hyperparameters("momentum")["lr"] == 0.02


def test_cli_report_and_runs_use_the_baselines_lr(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["study", "--quick", "--epochs", "1", "--hidden", "8", "--norms", "none", "--jobs", "1"]
    args += ["--optimizers", "adam", "--low-precision", "--lr", "adam=1e-3", "--no-plots", "--quiet"]
    assert cli.main([*args, "--out", str(out)]) == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    lrs = {r["optimizer"]: r["hyperparameters"]["lr"] for r in res["runs"]}
    assert lrs["adam"] == lrs["adam-bf16"] == lrs["adam-fp16"] == lrs["adam-8bit"] == 1e-3, lrs
    assert lrs["swalp"] == 0.02, lrs  # (momentum's default: no --lr momentum)
    table = {n: o["hyperparameters"]["lr"] for n, o in res["optimizers"].items()}
    assert table["adam-bf16"] == 1e-3 and "lr" in res["optimizers"]["adam-bf16"]["set"], table
