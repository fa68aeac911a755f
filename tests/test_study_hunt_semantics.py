"""What the study measures is what it says: the epoch-0 measurement shared between runs only where
their weights are the same (not with a half-precision run's rounded start), a failed epoch-0
Hessian noted in every run that shares it, and the SWA average compared with its last iterate on
the same quantities (the same runs, the same loss)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from optkern import datasets, hessian
from optkern.nn import MLP
from optkern.study import lowprec, report, runner, summary


@pytest.fixture(scope="module")
def digits():
    return datasets.load_digits().split(0.2, seed=0)


def _cfg(optimizers, **kw):
    base = dict(
        optimizers=optimizers,
        norms=["none"],
        hidden=(4,),
        epochs=1,
        checkpoints=2,
        curvature_batch=64,
        top_k=1,
        concentration_k=1,
        trace_matvecs=6,
        density_probes=1,
        density_steps=5,
        jobs=1,
    )
    base.update(kw)
    return runner.StudyConfig.quick(**base)


def _exact_top(train, cfg, params) -> float:
    """The largest eigenvalue of the dense Hessian on the study's curvature subset."""
    n = train.x.shape[0]
    idx = np.random.default_rng(cfg.seed + 1).choice(n, size=min(cfg.curvature_batch, n), replace=False)
    model = MLP([train.x.shape[1], *cfg.hidden, train.num_classes], activation=cfg.activation, dtype=np.float32)
    op = hessian.from_mlp(model, params, train.x[idx], train.y[idx])
    H = np.asarray(op.matmat(np.eye(model.num_params, dtype=np.float32)), dtype=np.float64)
    return float(np.linalg.eigvalsh((H + H.T) / 2)[-1])


def test_epoch0_of_a_float32_run_does_not_depend_on_a_half_precision_run_before_it(digits):
    train, val = digits
    tops = {}
    for order in (["adam-fp16", "adam"], ["adam", "adam-fp16"]):
        res = runner.run_study(train, val, _cfg(order), progress=False)
        for r in res["runs"]:
            tops[(tuple(order), r["optimizer"])] = (
                r["curvature"][0]["top_eigenvalues"][0],
                r["history"]["train_loss"][0],
            )
    # adam's start (float32 weights) is measured there whichever run came first ...
    assert tops[(("adam-fp16", "adam"), "adam")] == tops[(("adam", "adam-fp16"), "adam")]
    cfg = _cfg(["adam"])
    model = MLP([train.x.shape[1], *cfg.hidden, train.num_classes], dtype=np.float32)
    init = model.init_params(seed=cfg.seed)
    assert tops[(("adam", "adam-fp16"), "adam")][0] == pytest.approx(_exact_top(train, cfg, init), rel=1e-3)
    # ... and the float16 run's at its own, rounded, weights
    half = init.astype(np.float16).astype(np.float32)
    assert tops[(("adam", "adam-fp16"), "adam-fp16")][0] == pytest.approx(_exact_top(train, cfg, half), rel=1e-3)
    assert tops[(("adam-fp16", "adam"), "adam-fp16")] == tops[(("adam", "adam-fp16"), "adam-fp16")]


def test_epoch0_start_sentence_uses_the_shared_full_precision_start():
    def run(name, start, end):
        return {
            "optimizer": name,
            "norm": "none",
            "status": "done",
            "history": {"epoch": [0, 2], "train_loss": [2.0, 1.0], "val_loss": [2.0, 1.0], "val_acc": [0.1, 0.5]},
            "curvature": [
                {"epoch": e, "top_eigenvalues": [t], "grad_concentration": 0.5, "spectrum_min": -1.0, "spectrum_max": t}
                for e, t in ((0, start), (2, end))
            ],
        }

    results = {"checkpoint_epochs": [0, 2], "config": {}, "runs": [run("adam", 2.0, 4.0), run("adam-bf16", 3.0, 4.0)]}
    s = summary.sharpness(results, "none")
    assert s["top_start"] == 2.0  # adam's start, not the mean with the bf16 run's rounded start (2.5)
    (text,) = summary.sharpness_sentences(results)
    assert "is 2 at epoch 0 (the same weights for every full-precision optimizer)" in text


def test_a_failed_epoch0_hessian_is_noted_in_every_run_that_shares_it(digits, monkeypatch, tmp_path):
    train, val = digits
    real = runner.curvature

    def fails_at_start(model, params, xc, yc, cfg, seed, comm=None):
        if seed == cfg.seed:  # epoch 0 (seed + epoch)
            raise FloatingPointError("non-finite Hessian estimates")
        return real(model, params, xc, yc, cfg, seed, comm)

    monkeypatch.setattr(runner, "curvature", fails_at_start)
    res = runner.run_study(train, val, _cfg(["sgd", "adam"]), progress=False)
    for r in res["runs"]:
        assert [f["epoch"] for f in r.get("curvature_failed", [])] == [0], r["optimizer"]
        assert [c["epoch"] for c in r["curvature"]] == [1]
    md = Path(report.write_markdown(res, str(tmp_path), [])).read_text()
    assert md.count("no Hessian at epoch 0") == 2


def _swalp(seed, top_end, swa_top, swa_loss, last_loss, status="done"):
    r = {
        "optimizer": "swalp",
        "norm": "none",
        "seed": seed,
        "status": status,
        "steps": 10,
        "history": {"epoch": [0, 4], "train_loss": [2.0, 1.5], "val_loss": [2.0, 1.5], "val_acc": [0.1, 0.6]},
        "curvature": [{"epoch": 0, "top_eigenvalues": [2.0]}, {"epoch": 4, "top_eigenvalues": [top_end]}],
    }
    if swa_top is not None:
        r["swa"] = {
            "averaged_iterates": 2,
            "train_loss": swa_loss,
            "last_train_loss": last_loss,
            "val_loss": 1.5,
            "val_acc": 0.6,
            "top_eigenvalues": [swa_top],
            "trace": 1.0,
        }
    return r


def test_swa_is_compared_with_the_last_iterate_of_the_same_runs():
    # seed 1 has no SWA average (its Hessian failed): its last iterate (sharp, 10) must not enter
    # the comparison, which would call the average (3) "flatter" than the mean last iterate (6.5)
    results = {"runs": [_swalp(0, 2.0, 3.0, 1.40, 1.30), _swalp(1, 10.0, None, None, None)]}
    text = " ".join(lowprec.report_section(results))
    assert "the SWA average of swalp's iterates is sharper than its last iterate (top eigenvalue 3 vs 2" in text


def test_swa_train_loss_is_compared_on_the_whole_training_set():
    # the history's last train loss (1.5) is the mean over the last epoch's batches; the average's
    # (1.40) is over the whole training set: the comparison takes the last iterate's there (1.30)
    results = {"runs": [_swalp(0, 2.0, 1.0, 1.40, 1.30)]}
    text = " ".join(lowprec.report_section(results))
    assert "1.4000 at the average, 1.3000 at the last iterate" in text
    assert "over the whole training set" in text


def test_a_failed_swa_hessian_is_not_reported_as_the_last_iterates(digits, monkeypatch):
    train, val = digits
    real = runner.curvature
    calls = []

    def third_fails(*a, **kw):  # epoch 0, epoch 4, then the SWA average
        calls.append(1)
        if len(calls) == 3:
            raise FloatingPointError("non-finite Hessian estimates")
        return real(*a, **kw)

    monkeypatch.setattr(runner, "curvature", third_fails)
    rec: dict = {}
    runner.train_run("swalp", "none", train, val, _cfg(["swalp"], epochs=4), rec, progress=False)
    assert len(calls) == 3
    assert "curvature_failed" not in rec and [c["epoch"] for c in rec["curvature"]] == [0, 4]
    assert [f["epoch"] for f in rec["swa"]["curvature_failed"]] == [4] and rec["swa"]["top_eigenvalues"] is None
    assert math.isfinite(rec["swa"]["last_train_loss"])


@pytest.mark.parametrize(("k", "said"), [(1, "SWA average of 1 iterate)"), (2, "SWA average of 2 iterates)")])
def test_swa_row_counts_its_iterates_in_words(k, said):
    run = _swalp(0, 2.0, 1.0, 1.40, 1.30)
    run["swa"]["averaged_iterates"] = k
    assert said in "\n".join(lowprec.report_section({"runs": [run]}))
