"""run_study (the library path) checks the runs it trains at once against the memory (54th hunt,
h): it checked one run only, so a library caller's ``cfg.jobs`` past the memory was never refused
(only the command line's --jobs was) and every worker allocated its model."""

from __future__ import annotations

import pytest

from optkern.datasets import load_digits
from optkern.study import config as study_config
from optkern.study import runner
from optkern.study.config import ConfigError, StudyConfig, run_bytes


def _never(*a, **k):
    raise AssertionError("a run started: the memory check let it through")


@pytest.fixture
def data():
    return load_digits().split(val_fraction=0.2, seed=0)


def _cfg(jobs):
    return StudyConfig.quick(hidden=(64, 64), jobs=jobs, optimizers=("sgd", "adam"), norms=("none",), epochs=1)


def test_library_jobs_past_the_memory_are_refused_before_any_run(data, monkeypatch):
    train, val = data
    cfg = _cfg(3)
    one = run_bytes(cfg, train.x.shape[1], train.num_classes)
    monkeypatch.setattr(study_config, "_memory_bytes", lambda device: int(1.5 * one))
    monkeypatch.setattr(runner, "train_run", _never)
    monkeypatch.setattr("optkern.study.pool.run_pool", _never)
    with pytest.raises(ConfigError, match=r"^jobs: 2 runs at once .*--jobs 1") as e:
        runner.run_study(train, val, cfg, progress=False)
    assert e.value.field == "jobs"  # (2: cfg.jobs, capped by the study's 2 runs)


def test_library_jobs_that_fit_run(data, monkeypatch):
    train, val = data
    cfg = _cfg(1)
    one = run_bytes(cfg, train.x.shape[1], train.num_classes)
    monkeypatch.setattr(study_config, "_memory_bytes", lambda device: int(1.5 * one))
    res = runner.run_study(train, val, cfg, progress=False)
    assert res["jobs"] == 1 and [r["status"] for r in res["runs"]] == ["done", "done"]
