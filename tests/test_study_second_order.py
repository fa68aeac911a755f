"""`optkern study` with L-BFGS (full batch), Newton-CG (large batch, Gauss-Newton) and SAM next to
the first-order optimizers: each trains (its loss falls on the bundled digits), gets its Hessian
measurements and its row in the report; the closure path counts its gradient evaluations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optkern import cli, datasets, optim
from optkern.study import DEFAULT_OPTIMIZERS, OPTIMIZERS, methods, report, runner

SECOND = ["lbfgs", "newton-cg", "sam", "asam"]


def _tiny(**kw) -> runner.StudyConfig:
    base = dict(
        norms=["none"],
        epochs=3,
        checkpoints=2,
        hidden=(16,),
        curvature_batch=64,
        top_k=2,
        concentration_k=2,
        trace_matvecs=6,
        density_steps=10,
        density_grid=32,
        lanczos_steps=20,
    )
    base.update(kw)
    return runner.StudyConfig.quick(**base)


@pytest.fixture(scope="module")
def study():
    train, val = datasets.load_digits().split(0.2, seed=0)
    cfg = _tiny(optimizers=["sgd", *SECOND])
    return train, cfg, runner.run_study(train, val, cfg, progress=False)


def test_the_default_study_keeps_the_first_order_methods():
    assert runner.StudyConfig().optimizers == DEFAULT_OPTIMIZERS
    assert set(SECOND) <= set(OPTIMIZERS) and not set(SECOND) & set(DEFAULT_OPTIMIZERS)


@pytest.mark.parametrize("name", SECOND)
def test_each_second_order_method_lowers_the_loss(study, name):
    train, cfg, res = study
    (run,) = [r for r in res["runs"] if r["optimizer"] == name]
    loss = run["history"]["train_loss"]
    assert run["status"] == "done" and len(loss) == cfg.epochs + 1
    assert all(np.isfinite(loss)), loss
    assert loss[-1] < 0.7 * loss[0], loss  # every one of them trains, not just moves
    assert run["history"]["val_acc"][-1] > run["history"]["val_acc"][0]
    # its top-eigenvalue curve: one measurement per checkpoint, as for the first-order runs
    assert [c["epoch"] for c in run["curvature"]] == cfg.checkpoint_epochs()
    assert run["curvature"][0]["top_eigenvalues"][0] > 0 and all(
        np.isfinite(c["top_eigenvalues"]).all() for c in run["curvature"]
    )
    n = int(train.x.shape[0])
    if name == "lbfgs":  # full batch: one step per epoch, up to max_iter evaluations in it
        assert run["batch_size"] == n and run["steps"] == cfg.epochs
        assert cfg.epochs < run["grad_evals"] <= cfg.epochs * 25
    elif name == "newton-cg":  # large batches, GGN products counted
        assert run["batch_size"] == cfg.large_batch
        assert run["steps"] == cfg.epochs * len(runner.batches(n, cfg.large_batch))
        assert run["train_hvps"] > run["steps"]
    else:  # SAM, ASAM: two gradients per step
        assert run["batch_size"] == cfg.batch_size and run["grad_evals"] == 2 * run["steps"]


def test_sgd_through_the_shared_path_counts_one_gradient_per_step(study):
    _, _, res = study
    (run,) = [r for r in res["runs"] if r["optimizer"] == "sgd"]
    assert run["grad_evals"] == run["steps"] > 0


def test_the_report_lists_them(study, tmp_path):
    _, _, res = study
    with open(report.write_markdown(res, str(tmp_path), [])) as f:
        text = f.read()
    for name, cls in (("lbfgs", "LBFGS"), ("newton-cg", "NewtonCG"), ("sam", "SAM"), ("asam", "SAM")):
        assert f"| {name} | `optkern.optim.{cls}` |" in text
        assert any(line.startswith(f"| {name} | none | ") for line in text.splitlines()), name
    assert "strong_wolfe" in text and "rho=0.05" in text and "damping=1.0" in text and "adaptive=True" in text
    with open(report.write_json(res, str(tmp_path))) as f:
        json.load(f)  # strict JSON


def test_sam_hyperparameters_reach_the_wrapped_optimizer():
    cfg = runner.StudyConfig(overrides={"sam": {"lr": 0.03}})
    opt, hp = runner.make_optimizer("sam", np.zeros(3, np.float32), cfg)
    assert isinstance(opt, optim.SAM) and isinstance(opt.base, optim.SGD)
    assert opt.rho == 0.05 and opt.param_groups[0]["lr"] == 0.03 and opt.param_groups[0]["momentum"] == 0.9
    listed = runner.all_hyperparameters("sam", cfg)
    assert listed["rho"] == 0.05 and listed["lr"] == 0.03 and listed["dampening"] == 0 and "base" not in listed


def test_asam_is_sam_with_adaptive_steps():
    opt, _ = runner.make_optimizer("asam", np.zeros(3, np.float32), runner.StudyConfig())
    assert isinstance(opt, optim.SAM) and opt.adaptive and opt.rho == 1.0 and isinstance(opt.base, optim.SGD)
    sam, _ = runner.make_optimizer("sam", np.zeros(3, np.float32), runner.StudyConfig())
    assert not sam.adaptive


def test_newton_cg_needs_its_operator():
    with pytest.raises(ValueError, match="newton-cg: needs a curvature operator"):
        methods.build("newton-cg", [np.zeros(3, np.float32)], runner.StudyConfig().hyperparameters("newton-cg"))


def test_cli_runs_them_and_all_selects_every_optimizer(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["study", "--quick", "--optimizers", "lbfgs,sam", "--norms", "none", "--epochs", "1"]
    args += ["--hidden", "8", "--curvature-samples", "32", "--no-plots", "--quiet", "--out", str(out)]
    assert cli.main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["optimizer"] for r in res["runs"]] == ["lbfgs", "sam"] and res["ranks"] == 1
    ns = cli._parser().parse_args(["study", "--optimizers", "all"])
    from optkern.study import _config

    assert _config(ns).optimizers == list(OPTIMIZERS)
    assert cli.main(["study", "--optimizers", "lbfgs,bfgs", "--out", str(tmp_path / "x")]) == 2
    assert "--optimizers: unknown ['bfgs']" in capsys.readouterr().err
