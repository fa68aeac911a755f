"""Pieces of ``optkern study``: configuration, thread limits, the shared
Lanczos run for gradient concentration, the epoch-0 cache and the report."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from optkern import _cpu, datasets, hessian, threads
from optkern.nn import MLP
from optkern.study import report, runner, summary


def test_checkpoint_epochs_include_first_and_last():
    assert runner.StudyConfig(epochs=30, checkpoints=4).checkpoint_epochs() == [0, 10, 20, 30]
    assert runner.StudyConfig(epochs=4, checkpoints=3).checkpoint_epochs() == [0, 2, 4]
    assert runner.StudyConfig(epochs=3, checkpoints=1).checkpoint_epochs() == [3]
    assert runner.StudyConfig(epochs=2, checkpoints=9).checkpoint_epochs() == [0, 1, 2]


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(optimizers=["adam", "lion"]), "optimizers"),
        (dict(norms=[]), "norms"),
        (dict(threads=0), "threads"),
        (dict(hidden=(64, 0)), "hidden"),
        (dict(lanczos_steps=0), "lanczos_steps"),
        (dict(device="tpu"), "device"),
        (dict(norms=["batch"], batch_size=1), "batch_size"),
        (dict(norms=["none", "batch"], curvature_batch=1), "curvature_batch"),
        (dict(seeds=0), "seeds"),
        (dict(overrides={"lion": {"lr": 1.0}}), "overrides"),
        (dict(overrides={"adam": {"lr": -1.0}}), "overrides"),
    ],
)
def test_config_validation_names_the_field(kw, word):
    with pytest.raises(runner.ConfigError, match=word) as e:
        runner.StudyConfig(**kw).validate()
    assert e.value.field == word
    assert "lion" in str(e.value) or "lion" not in str(kw)


def test_every_hyperparameter_is_listed_with_overrides_applied():
    cfg = runner.StudyConfig(overrides={"adam": {"lr": 5e-4}})
    hp = runner.all_hyperparameters("adam", cfg)
    assert hp["lr"] == 5e-4 and hp["betas"] == (0.9, 0.999) and hp["eps"] == 1e-8 and "capturable" not in hp
    assert runner.all_hyperparameters("nesterov", cfg)["nesterov"] is True
    opt, used = runner.make_optimizer("adam", np.zeros(3, np.float32), cfg)
    assert used == {"lr": 5e-4} and opt.param_groups[0]["lr"] == 5e-4


@pytest.mark.parametrize("n, size", [(65, 64), (1025, 1024), (129, 64), (128, 64), (64, 64), (7, 1), (1, 8)])
def test_batches_cover_every_row_and_never_leave_one_alone(n, size):
    sl = runner.batches(n, size)
    assert [s.start for s in sl] == [0, *(s.stop for s in sl[:-1])] and sl[-1].stop == n
    sizes = [s.stop - s.start for s in sl]
    assert max(sizes) <= size + 1 and (n == 1 or size == 1 or min(sizes) >= 2), sizes


def test_evaluate_with_batch_norm_and_one_row_left_over():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 3)).astype(np.float32), np.arange(9) % 2
    model = MLP([3, 4, 2], norm="batch", dtype=np.float32)
    params = model.init_params(seed=0)
    loss, acc = runner.evaluate(model, params, x, y, batch=4)  # 4 + 5, not 4 + 4 + 1
    assert np.isfinite(loss) and 0 <= acc <= 1


def test_limit_threads_sets_and_restores_both_pools():
    blas = threads._loaded_openblas()
    before = (_cpu.get_num_threads(), [int(get()) for get, _ in blas])
    with threads.limit_threads(1):
        assert _cpu.get_num_threads() == 1
        assert all(int(get()) == 1 for get, _ in blas)
    assert (_cpu.get_num_threads(), [int(get()) for get, _ in blas]) == before
    with pytest.raises(KeyboardInterrupt), threads.limit_threads(1):
        raise KeyboardInterrupt
    assert _cpu.get_num_threads() == before[0]


def _problem():
    d = datasets.load_digits()
    rng = np.random.default_rng(3)
    idx = rng.choice(len(d.y), 97, replace=False)
    model = MLP([64, 13, 10], activation="tanh", dtype=np.float64)
    p = model.init_params(seed=5)
    return model, p, d.x[idx].astype(np.float64), d.y[idx]


def test_gradient_concentration_reuses_given_eigenvectors():
    model, p, x, y = _problem()
    op = hessian.from_mlp(model, p, x, y)
    _, g = model.loss_and_grad(p, x, y)
    H = np.column_stack([op.matvec(e) for e in np.eye(model.num_params)])
    evals, evecs = np.linalg.eigh((H + H.T) / 2)
    want = float(np.sum((evecs[:, -4:].T @ g) ** 2) / (g @ g))
    top = hessian.top_eigenvalues(op, k=7, tol=1e-10, max_steps=model.num_params, return_eigenvectors=True)
    before = op.num_matvecs
    got = hessian.gradient_concentration(op, g, 4, eigenvectors=top.eigenvectors)
    assert op.num_matvecs == before  # no new Lanczos run
    assert got == pytest.approx(want, abs=1e-8)
    assert got == pytest.approx(hessian.gradient_concentration(op, g, 4, tol=1e-10), abs=1e-8)
    with pytest.raises(ValueError, match="eigenvectors"):
        hessian.gradient_concentration(op, g, 8, eigenvectors=top.eigenvectors)


def test_curvature_measurements_match_dense_eigenvalues():
    model, p, x, y = _problem()
    cfg = runner.StudyConfig(
        top_k=3,
        concentration_k=5,
        lanczos_steps=200,
        lanczos_tol=1e-8,
        trace_matvecs=400,
        density_probes=2,
        density_steps=40,
    )
    c = runner.curvature(model, p, x, y, cfg, seed=1)
    op = hessian.from_mlp(model, p, x, y)
    H = np.column_stack([op.matvec(e) for e in np.eye(model.num_params)])
    evals = np.linalg.eigvalsh((H + H.T) / 2)
    np.testing.assert_allclose(c["top_eigenvalues"], evals[::-1][:3], rtol=1e-6)
    assert c["lanczos_converged"]
    assert abs(c["trace"] - evals.sum()) < 4 * c["trace_stderr"] + 1e-6 * abs(evals).sum()
    assert c["hvps"] > 0 and c["time_s"] >= 0


def test_epoch0_cache_gives_the_same_record(monkeypatch):
    calls = []
    real = runner.curvature
    monkeypatch.setattr(runner, "curvature", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    d = datasets.load_digits()
    train, val = d.split(0.2, seed=0)
    cfg = runner.StudyConfig.quick(
        optimizers=["sgd"], norms=["none"], epochs=1, checkpoints=2, hidden=(16,), curvature_batch=64
    )
    cache: dict = {}
    first = runner.train_run("sgd", "none", train, val, cfg, {}, progress=False, cache=cache)
    assert len(calls) == 2  # epochs 0 and 1
    cached = runner.train_run("sgd", "none", train, val, cfg, {}, progress=False, cache=cache)
    assert len(calls) == 3  # epoch 0 came from the cache
    fresh = runner.train_run("sgd", "none", train, val, cfg, {}, progress=False)
    assert cached["curvature"][0]["top_eigenvalues"] == fresh["curvature"][0]["top_eigenvalues"]
    assert cached["history"] == fresh["history"] == first["history"]


def test_report_of_an_empty_interrupted_study(tmp_path):
    results = {
        "config": runner.dataclasses.asdict(runner.StudyConfig()),
        "info": {},
        "dataset": "digits",
        "num_train": 10,
        "num_val": 5,
        "interrupted": True,
        "runs": [{"optimizer": "sgd", "norm": "none", "status": "interrupted"}],
    }
    path = report.write_markdown(results, str(tmp_path), [])
    text = Path(path).read_text()
    assert "Interrupted" in text and "| sgd | none | — |" in text
    report.write_json(results, str(tmp_path))
    assert (tmp_path / "results.json").read_text().startswith("{")


def test_a_diverging_run_is_reported_not_raised(monkeypatch, tmp_path):
    monkeypatch.setitem(runner.OPTIMIZERS, "sgd", runner.Method("SGD", dict(lr=4e9)))
    d = datasets.load_digits()
    train, val = d.split(0.2, seed=0)
    cfg = runner.StudyConfig.quick(
        optimizers=["sgd"], norms=["none"], epochs=3, checkpoints=4, hidden=(16,), curvature_batch=64
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy overflow warnings reach the user
        results = runner.run_study(train, val, cfg, progress=False)
    run = results["runs"][0]
    assert run["status"] == "diverged" or run.get("curvature_failed")
    assert run["curvature"][0]["epoch"] == 0  # the start is still measured
    report.write_json(results, str(tmp_path))
    json.loads((tmp_path / "results.json").read_text())  # strict JSON: no NaN
    text = Path(report.write_markdown(results, str(tmp_path), [])).read_text()
    assert "| sgd | none |" in text


# ---- computed sentences, against a synthetic results object ---------------------


def _curv(epoch, top, lo, hi, conc=0.5, trace=10.0):
    return {
        "epoch": epoch,
        "top_eigenvalues": [top, top / 2],
        "spectrum_min": lo,
        "spectrum_max": hi,
        "grad_concentration": conc,
        "trace": trace,
        "trace_stderr": 0.5,
        "lanczos_converged": True,
        "density": {"grid": [lo, hi], "density": [0.5, 0.5], "sigma": 0.1},
    }


def _synthetic(none_end, batch_end, none_start=7.3, batch_start=5.3, seeds=1):
    """Two optimizers x two norms, checkpoints 0 and 30, with chosen top eigenvalues."""
    runs = []
    for norm, start, ends, span0 in [
        ("none", none_start, none_end, (-1.0, none_start)),
        ("batch", batch_start, batch_end, (-5.0, batch_start)),
    ]:
        for (name, end), acc in zip(ends.items(), (0.96, 0.98)):
            for s in range(seeds):
                runs.append(
                    {
                        "optimizer": name,
                        "norm": norm,
                        "seed": s,
                        "status": "done",
                        "steps": 100,
                        "train_time_s": 0.5,
                        "curvature_time_s": 3.0,
                        "time_s": 4.0,
                        "history": {
                            "epoch": [0, 30],
                            "train_loss": [2.3, 0.1],
                            "val_loss": [2.3, 0.1],
                            "val_acc": [0.1, acc + 0.01 * s],
                        },
                        "curvature": [_curv(0, start, *span0), _curv(30, end, -0.3, end, 0.6)],
                    }
                )
    cfg = runner.dataclasses.asdict(runner.StudyConfig(seeds=seeds))
    return {
        "config": cfg,
        "info": {},
        "dataset": "digits",
        "num_train": 1438,
        "num_val": 359,
        "checkpoint_epochs": [0, 30],
        "runs": runs,
        "interrupted": False,
    }


def test_summary_says_what_the_numbers_say_when_outliers_shrink():
    r = _synthetic({"sgd": 4.0, "adam": 2.0}, {"sgd": 0.5, "adam": 0.7})
    text = " ".join(summary.summary(r))
    assert (
        "Without normalization, the largest Hessian eigenvalue is 7.3 at epoch 0 (the same weights for every "
        "optimizer) and median 3 (2 for adam to 4 for sgd) at epoch 30"
    ) in text
    assert "it falls 2.4-fold" in text
    assert "The spectrum spans -5 to 5.3 at epoch 0" in text  # batch norm's start is wide: said, not hidden
    assert "smaller than without normalization for 2 of 2 optimizers" in text
    assert "ranges from 0.960 (sgd without normalization) to 0.980 (adam without normalization)" in text
    claim, measured = summary.ghorbani_comparison(r)
    assert claim.startswith("**Claim from the literature (not measured here).**")
    assert measured.startswith("**This run.**")
    assert "is at its highest at initialization and falls during training" in measured
    assert "smaller with batch norm, as they describe (median 0.6 vs 3)" in measured
    caption = summary.density_caption(r)
    assert "With batch norm the spectrum spans -5 to 5.3 at epoch 0 and -0.3 to 0.6 at epoch 30" in caption
    assert "within" not in caption  # no claim the data does not make


def test_summary_when_outliers_grow_and_batch_norm_does_not_help():
    r = _synthetic({"sgd": 20.0, "adam": 30.0}, {"sgd": 40.0, "adam": 50.0}, none_start=2.0, batch_start=2.0)
    text = " ".join(summary.summary(r))
    assert "it grows 12.5-fold" in text and "smaller than without normalization for 0 of 2" in text
    _, measured = summary.ghorbani_comparison(r)
    assert "grows during training, as they describe" in measured
    assert "larger with batch norm, unlike their description" in measured
    assert "at initialization it is not smaller" in measured


def test_report_shows_mean_and_spread_over_seeds_and_every_hyperparameter(tmp_path):
    r = _synthetic({"sgd": 4.0, "adam": 2.0}, {"sgd": 0.5, "adam": 0.7}, seeds=2)
    r["optimizers"] = {
        n: {
            "class": runner.OPTIMIZERS[n].optimizer,
            "set": ["lr"],
            "hyperparameters": runner.all_hyperparameters(n, runner.StudyConfig()),
        }
        for n in ("sgd", "adam")
    }
    r["data_notes"] = ["labels {1, 2, 3} renumbered 0..2"]
    r["curvature_samples"] = 300
    text = Path(report.write_markdown(r, str(tmp_path), [])).read_text()
    assert "| sgd | none | 0.1000 ± 0.0000 | 0.965 ± 0.007 |" in text  # accuracies 0.96 and 0.97
    assert "| done (2 seeds) |" in text and "trace s.e." in text
    assert "| adam | `optkern.optim.Adam` | **lr=0.002**, betas=(0.9, 0.999), eps=1e-08" in text
    assert "labels {1, 2, 3} renumbered 0..2" in text
    assert "on the same 300 training samples for every run (asked for 512; the training set has 1438)" in text
    assert "## Comparison with Ghorbani et al. 2019" in text and "**This run.**" in text


def test_sharpness_sentence_counts_one_optimizer_in_the_singular():
    from optkern.study.summary import sharpness_sentences

    def curv(epoch):
        return {"epoch": epoch, "top_eigenvalues": [2.0], "grad_concentration": 0.5}

    runs = [{"optimizer": "adam", "norm": "none", "curvature": [curv(0), curv(3)]}]
    (sentence,) = sharpness_sentences({"runs": runs, "checkpoint_epochs": [0, 3]})
    assert "(1 optimizer)" in sentence
    two = runs + [{"optimizer": "sgd", "norm": "none", "curvature": [curv(0), curv(3)]}]
    assert "(2 optimizers)" in sharpness_sentences({"runs": two, "checkpoint_epochs": [0, 3]})[0]
