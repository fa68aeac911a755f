"""The study's "found, not fixed" of the 41st hunt's i (41st hunt, l)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.study import summary as S


def _sharp(top_start, top_end, conc_end=0.5):
    return {
        "first": 0,
        "last": 2,
        "optimizers": 1,
        "end_seeds": {"sgd": 1},
        "top_start": top_start,
        "top_end": {"sgd": top_end},
        "lo_start": -1.0,
        "hi_start": top_start,
        "lo_end": -1.0,
        "hi_end": top_end,
        "conc_start": 0.5,
        "conc_end": conc_end,
    }


@pytest.mark.parametrize(
    "end_bn, start_bn, want",
    [
        (5.0, 1.0, "at initialization it is also smaller with batch norm"),  # both smaller
        (20.0, 1.0, "at initialization it is smaller with batch norm"),  # end larger: not "also"
        (10.0, 1.0, "at initialization it is smaller with batch norm"),  # end about the same
        (5.0, 10.0, "at initialization it is not smaller with batch norm"),  # start the same
        (5.0, 30.0, "at initialization it is larger with batch norm"),
    ],
)
def test_ghorbani_initialization_wording_follows_both_comparisons(monkeypatch, end_bn, start_bn, want):
    table = {"none": _sharp(10.0, 10.0), "batch": _sharp(start_bn, end_bn)}
    monkeypatch.setattr(S, "sharpness", lambda results, norm: table[norm])
    text = S.ghorbani_comparison({"runs": []})[1]
    assert want in text, text
    if end_bn >= 10.0 / 1.1:
        assert "also" not in text, text


@pytest.mark.parametrize(
    "a, b, want",
    [
        (0.0, 2.0, "rises from 0 to 2"),
        (0.0, 0.0, "stays at 0"),
        (0.0, -1.0, "falls from 0 to -1"),
        (-2.0, 1.0, "rises from -2 to 1"),
        (2.0, 0.0, "falls to 0"),
        (1.0, 3.0, "grows 3.0-fold"),
        (3.0, 1.0, "falls 3.0-fold"),
        (1.0, 1.05, "stays about the same"),
    ],
)
def test_change_of_a_zero_or_negative_start_says_something_true(a, b, want):
    text = S._change(a, b)
    assert text == want
    assert "inf" not in text and ("-fold" not in text or (a > 0 and b > 0))


def _shifted_csv(tmp_path, dtype=float):
    rng = np.random.default_rng(3)
    n = 60
    x = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.0] + [0.0, 5.0, 7.0]  # column 2 constant on every row
    y = np.arange(n) % 2
    return x, y


def test_file_features_standardized_by_the_training_rows_alone(tmp_path):
    from optkern.datasets import load_file

    x, y = _shifted_csv(tmp_path)
    # the rows that split() puts in validation, shifted far from the training rows
    n = len(y)
    perm = np.random.default_rng(0).permutation(n)
    nv = int(round(n * 0.2))
    v, t = perm[:nv], perm[nv:]
    x[v] += [1e3, -5e2, 4.0]  # (the third column: constant on the training rows, not on the validation ones)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    train, val = load_file(str(path)).split(val_fraction=0.2, seed=0)
    mu, sd = x[t].mean(0), x[t].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    np.testing.assert_allclose(train.x, ((x[t] - mu) / sd).astype(np.float32), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(val.x, ((x[v] - mu) / sd).astype(np.float32), rtol=1e-5, atol=1e-4)
    assert train.x.dtype == val.x.dtype == np.float32
    assert np.all(train.x[:, 2] == 0)  # constant on the training rows: centred, not divided by 0
    assert any("training rows" in note for note in train.notes), train.notes
    assert not any("training rows" in note for note in load_file(str(path)).notes)


def test_file_features_standardized_by_the_training_rows_csv(tmp_path):
    from optkern.datasets import load_file

    x, y = _shifted_csv(tmp_path)
    n = len(y)
    perm = np.random.default_rng(5).permutation(n)
    v, t = perm[:12], perm[12:]
    x[v, 0] += 100.0
    path = tmp_path / "d.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.17g")
    train, val = load_file(str(path)).split(val_fraction=0.2, seed=5)
    mu, sd = x[t].mean(0), x[t].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    np.testing.assert_allclose(train.x, (x[t] - mu) / sd, rtol=1e-5, atol=1e-5)


def test_a_run_whose_parameters_never_changed_is_stuck():
    from optkern.study import divergence

    p = np.arange(5, dtype=np.float32)
    assert divergence.stuck(p, p.copy()) is True
    q = p.copy()
    q[3] = np.nextafter(q[3], np.float32(9))
    assert divergence.stuck(p, q) is False


def _row(seed, stuck=False, acc=0.9):
    return {
        "optimizer": "newton-cg",
        "norm": "none",
        "seed": seed,
        "status": "done",
        "stuck": stuck,
        "collapsed": stuck,  # (its initial weights' chance accuracy: stuck is what it says)
        "steps": 10,
        "train_time_s": 1.0,
        "history": {
            "epoch": [0, 1, 2],
            "train_loss": [2.3, 1.0 if not stuck else 2.3, 0.5 if not stuck else 2.3],
            "val_acc": [0.1, 0.5, acc],
        },
        "curvature": [],
    }


def test_stuck_run_left_out_of_the_means_and_said():
    from optkern.study import aggregates as A
    from optkern.study import report

    results = {"runs": [_row(0), _row(1, stuck=True, acc=0.1)], "config": {"seeds": 2, "epochs": 2}}
    (grp,) = A.groups(results)
    assert A.failed(A.run_row(results["runs"][1])) == "stuck"
    assert grp["stats"]["final_val_acc"].n == 1 and grp["stats"]["final_val_acc"].mean == pytest.approx(0.9)
    assert grp["excluded"]["stuck"] == 1 and grp["excluded"]["collapsed"] == 0
    assert A.excluded_note(grp) == " (1 stuck excluded)"
    said = S.failed_sentence(results)
    assert "never accepted a step (newton-cg without normalization seed 1)" in said, said
    assert "left out of every mean" in said, said
    assert "seed 1: no step accepted" in report._status(grp["rows"])


def test_study_run_of_newton_cg_that_rejects_every_step_is_stuck():
    from optkern.datasets import load_digits
    from optkern.study import runner

    train, val = load_digits().split(0.2, seed=0)
    cfg = runner.StudyConfig.quick(optimizers=["newton-cg"], norms=["none"], hidden=(4,), epochs=1, jobs=1)
    cfg.overrides = {"newton-cg": {"lr": 1e6}}
    rec: dict = {}
    runner.train_run("newton-cg", "none", train, val, cfg, rec, progress=False)
    assert rec["status"] == "done" and rec["stuck"] is True
    assert rec["history"]["train_loss"][-1] == pytest.approx(rec["history"]["train_loss"][0], rel=1e-6)
    ok: dict = {}
    cfg.overrides = {}
    runner.train_run("newton-cg", "none", train, val, cfg, ok, progress=False)
    assert ok["stuck"] is False


def test_a_half_precision_step_too_small_to_move_any_weight_is_stuck():
    # adam-fp16's model weights are its float16 ones, rounded from the float32 initial weights when
    # the run starts: compared with those unrounded ones, a run that moved nothing was not stuck.
    # (Adam's steps are ~lr whatever the gradient: 1e-30 is below float16's smallest subnormal.)
    name = "adam-fp16"
    from optkern.datasets import load_digits
    from optkern.study import runner

    train, val = load_digits().split(0.2, seed=0)
    cfg = runner.StudyConfig.quick(optimizers=[name], norms=["none"], hidden=(4,), epochs=1, jobs=1)
    cfg.overrides = {name: {"lr": 1e-30}}
    rec: dict = {}
    runner.train_run(name, "none", train, val, cfg, rec, progress=False)
    assert rec["status"] == "done" and rec["stuck"] is True


def test_validation_features_past_float32_when_standardized_are_refused(tmp_path):
    from optkern.datasets import DataError, load_file

    n = 40
    x = np.random.default_rng(1).normal(size=(n, 2)) * 1e-10
    v = np.random.default_rng(0).permutation(n)[:8]  # split(0.2, seed=0)'s validation rows
    x[v[0], 0] = 1e30  # 1e40 standard deviations of the training rows away: inf as float32
    path = tmp_path / "far.npz"
    np.savez(path, x=x, y=np.arange(n) % 2)
    data = load_file(str(path))
    assert np.all(np.isfinite(data.x))  # (over every row it is only an outlier)
    with pytest.raises(DataError, match=r"far\.npz: features overflow float32 when standardized by the training"):
        data.split(0.2, seed=0)
