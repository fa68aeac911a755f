"""``optkern study --hidden`` too large for the machine: refused up front by arithmetic on the
layer widths (weights of the MLP times the float32 copies a run holds), naming --hidden, instead
of starting the study and allocating. These tests never allocate the model: the machine's memory
is patched small, and training itself is patched to fail the test if it is reached."""

from __future__ import annotations

import pytest

import optkern.study as study
from optkern import cli
from optkern.study import config as study_config
from optkern.study.config import ConfigError, StudyConfig, check_memory, model_weights

GIB = 2**30
BASE = ["--quick", "--epochs", "1", "--curvature-samples", "32", "--jobs", "1", "--no-plots"]
BASE += ["--optimizers", "sgd", "--norms", "none", "--quiet"]


def _never(*a, **k):
    raise AssertionError("the study started: the size check let it through")


def test_weights_count_is_exact_python_integer_arithmetic():
    cfg = StudyConfig(hidden=(65536, 65536))
    # (64 + 1) * 65536 + (65536 + 1) * 65536 + (65536 + 1) * 10: no float, no overflow
    assert model_weights(cfg, 64, 10) == 65 * 65536 + 65537 * 65536 + 65537 * 10
    huge = StudyConfig(hidden=(65536,) * 40)
    assert model_weights(huge, 64, 10) > 39 * 65536**2


def test_check_memory_refuses_by_name_and_says_how_much():
    cfg = StudyConfig(hidden=(65536, 65536))
    with pytest.raises(ConfigError, match=r"^hidden: .*4,299,948,042 weights.*GiB.*8 GiB") as e:
        check_memory(cfg, 64, 10, available=8 * GIB)
    assert e.value.field == "hidden"
    check_memory(StudyConfig(hidden=(128, 128)), 64, 10, available=8 * GIB)  # fits
    check_memory(cfg, 64, 10, available=None)  # memory unknown: not refused here


def test_cli_hidden_too_large_fails_fast_naming_hidden(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(study_config, "_memory_bytes", lambda device: 8 * GIB)
    monkeypatch.setattr(study, "run_study", _never)
    rc = cli.main(["study", *BASE, "--hidden", "65536,65536", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("optkern study: error: --hidden: "), line
    assert "GiB" in line, line
    assert not (tmp_path / "o").exists()  # refused before the output folder was made


def test_run_study_refuses_before_training(monkeypatch):
    from optkern.datasets import load_digits
    from optkern.study import runner

    monkeypatch.setattr(study_config, "_memory_bytes", lambda device: 1 * GIB)
    monkeypatch.setattr(runner, "train_run", _never)
    train, val = load_digits().split(val_fraction=0.2, seed=0)
    cfg = StudyConfig(hidden=(32768, 32768), optimizers=["sgd"], norms=["none"], jobs=1)
    with pytest.raises(ConfigError, match=r"^hidden: "):
        runner.run_study(train, val, cfg, progress=False)


def test_memory_probe_reports_this_machine():
    m = study_config._memory_bytes("cpu")
    assert m is None or m > 0
