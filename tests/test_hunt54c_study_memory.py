"""``optkern study``'s up-front memory check counts what a run holds (54th hunt, c).

``check_memory`` refused a network whose 4 float32 copies (weights, gradient, two optimizer states)
exceeded the machine's memory, but a run's Hessian measurements hold far more vectors of the
model's size: the Lanczos basis of the top eigenpairs alone is ``lanczos_steps + 1`` (81) of them;
tracemalloc measured 88 copies for ``--quick``'s measurements and 158 for the default's. A
network 20 to 40 times too large passed, trained, and ran out of memory at its first Hessian
(epoch 0), or was killed by the system. Nor did it count ``--jobs``: every worker holds its run.
"""

from __future__ import annotations

import tracemalloc

import pytest

import optkern.study as study
from optkern import cli, nn
from optkern.datasets import load_digits
from optkern.study import config as study_config
from optkern.study.config import ConfigError, StudyConfig, check_memory, model_weights, run_bytes
from optkern.study.hessian_measures import curvature

GIB = 2**30
MIB = 2**20
BASE = ["--quick", "--epochs", "1", "--no-plots", "--optimizers", "sgd,adam", "--norms", "none", "--quiet"]


def _never(*a, **k):
    raise AssertionError("the study started: the memory check let it through")


@pytest.mark.parametrize("quick", [True, False])
def test_bound_is_below_what_the_measurements_hold(quick):
    """The bound's Hessian part is a lower bound of the measured peak (it claims "at least") and not
    a loose one (at least half of it): tracemalloc sees NumPy's allocations."""
    train, _ = load_digits().split(val_fraction=0.2, seed=0)
    # (few samples: the activations, which do not grow with the weights, stay small beside them)
    kw = dict(hidden=(256, 256), curvature_batch=8)
    cfg = StudyConfig.quick(**kw) if quick else StudyConfig(**kw)
    model = nn.MLP([64, 256, 256, 10], activation="tanh")
    params = model.init_params(seed=0)
    x, y = train.x[: cfg.curvature_batch], train.y[: cfg.curvature_batch]
    bound = run_bytes(cfg, 64, 10) - study_config._COPIES * 4 * model.num_params  # (the Hessian part)
    tracemalloc.start()
    try:
        curvature(model, params, x, y, cfg, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0.5 * peak <= bound <= peak, (bound / (4 * model.num_params), peak / (4 * model.num_params))


def test_network_whose_hessian_does_not_fit_is_refused():
    cfg = StudyConfig(hidden=(1024, 1024))
    weights_only = 4 * 4 * model_weights(cfg, 64, 10)  # the old bound: 17 MiB
    assert weights_only < 100 * MIB
    with pytest.raises(ConfigError, match=r"^hidden: .*Hessian") as e:
        check_memory(cfg, 64, 10, available=100 * MIB)
    assert e.value.field == "hidden"
    check_memory(cfg, 64, 10, available=run_bytes(cfg, 64, 10))  # (exactly fits)


def test_runs_at_once_are_counted_and_the_message_says_how_many_fit():
    cfg = StudyConfig(hidden=(256, 256))
    one = run_bytes(cfg, 64, 10)
    check_memory(cfg, 64, 10, available=3 * one, at_once=3)
    with pytest.raises(ConfigError, match=r"^jobs: 3 runs at once .*--jobs 2") as e:
        check_memory(cfg, 64, 10, available=int(2.5 * one), at_once=3)
    assert e.value.field == "jobs"
    with pytest.raises(ConfigError, match=r"^hidden: "):  # (one run does not fit: the widths' fault)
        check_memory(cfg, 64, 10, available=one // 2, at_once=3)


def test_cli_refuses_jobs_that_do_not_fit_before_the_output_folder(tmp_path, capsys, monkeypatch):
    cfg = StudyConfig.quick(hidden=(64, 64))
    one = run_bytes(cfg, 64, 10)
    monkeypatch.setattr(study_config, "_memory_bytes", lambda device: int(1.5 * one))
    monkeypatch.setattr(study, "run_study", _never)
    rc = cli.main(["study", *BASE, "--jobs", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("optkern study: error: --jobs: 2 runs at once"), line
    assert "--jobs 1" in line, line
    assert not (tmp_path / "o").exists()


def test_cli_default_jobs_that_fit_still_run(tmp_path, capsys):
    rc = cli.main(["study", *BASE, "--hidden", "8", "--jobs", "1", "--out", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "report.md").is_file()


def test_default_jobs_are_capped_by_the_memory_not_refused(tmp_path, capsys, monkeypatch):
    # no --jobs: the default (one run per logical CPU) starts only the workers the memory holds,
    # where an explicit --jobs past it is refused (above); with room for one run: one at a time
    from optkern.study import pool, runner

    cfg = StudyConfig.quick(hidden=(64, 64), jobs=0)
    one = run_bytes(cfg, 64, 10)
    monkeypatch.setattr(pool, "default_jobs", lambda cfg, runs: min(runs, 4))  # (as on a 4-CPU machine)
    monkeypatch.setattr(study_config, "_memory_bytes", lambda device: int(1.5 * one))
    assert runner.study_jobs(cfg, 6, None, study_config.runs_that_fit(cfg, 64, 10)) == 1
    high = study_config.run_bytes_high(cfg, 64, 10)  # (the default's cap counts runs by the estimate from above)
    assert runner.study_jobs(cfg, 6, None, study_config.runs_that_fit(cfg, 64, 10, available=3 * high)) == 3
    assert runner.study_jobs(cfg, 6, None, None) == 4  # (memory unknown: the CPUs decide)
    assert runner.study_jobs(cfg, 6, None, 0) == 1  # (even where none fits by the bound: one, never 0)
    rc = cli.main(["study", *BASE, "--hidden", "64,64", "--out", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "report.md").is_file()
