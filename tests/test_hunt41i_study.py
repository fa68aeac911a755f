"""The study's report against its own numbers (41st hunt, i)."""

from __future__ import annotations

from pathlib import Path

import pytest

from optkern.study import summary as S


def _curv(epoch, top, conc=0.1, lo=-1.0):
    return {
        "epoch": epoch,
        "top_eigenvalues": [top],
        "grad_concentration": conc,
        "spectrum_min": lo,
        "spectrum_max": top,
        "trace": 1.0,
        "trace_stderr": 0.1,
    }


def _run(optimizer, seed, start, end=None, status="done"):
    curvature = [_curv(0, start, conc=start / 10, lo=-start)]
    if end is not None:
        curvature.append(_curv(2, end))
    return {
        "optimizer": optimizer,
        "norm": "none",
        "seed": seed,
        "status": status,
        "history": {"epoch": [0, 1, 2] if end else [0], "train_loss": [2.3, 1, 0.5], "val_acc": [0.1, 0.5, 0.9]},
        "curvature": curvature,
    }


def test_start_is_the_mean_over_seeds_not_over_runs():
    # An interrupted study (SIGTERM; --jobs 2 runs out of order): seed 0 has 3 runs, seed 1 only the
    # one in flight, stopped after its epoch-0 measurement. Every run of one seed starts from the same
    # weights, so the "mean over 2 seeds" of the start is (4 + 6) / 2 = 5; it said (3*4 + 6) / 4 = 4.5.
    runs = [_run(o, 0, 4.0, end=2.0) for o in ("sgd", "adam", "nadam")] + [_run("sgd", 1, 6.0, status="interrupted")]
    results = {"config": {"seeds": 2, "epochs": 2}, "checkpoint_epochs": [0, 2], "runs": runs, "interrupted": True}
    s = S.sharpness(results, "none")
    assert s["top_start"] == pytest.approx(5.0)
    assert s["conc_start"] == pytest.approx(0.5)
    assert s["lo_start"] == pytest.approx(-5.0)
    assert "largest Hessian eigenvalue is 5 at epoch 0 (mean over 2 seeds" in S.sharpness_sentences(results)[0]


def _lp_run(optimizer, seed, acc, loss, collapsed=False):
    return {
        "optimizer": optimizer,
        "norm": "none",
        "seed": seed,
        "status": "done",
        "collapsed": collapsed,
        "state_bytes_per_param": 2.0,
        "history": {"epoch": [0, 1], "train_loss": [2.3, loss], "val_acc": [0.1, acc]},
        "curvature": [_curv(0, 5.0), _curv(1, 1.0 if not collapsed else 9.0)],
    }


def test_lowprec_section_leaves_a_collapsed_run_out_of_its_means():
    # The summary says a run collapsed to chance is "left out of every mean below"; the low-precision
    # table averaged it in (accuracy (0.9 + 0.1) / 2 = 0.500, top eigenvalue 5) and compared that with
    # the float32 baseline ("-40.0 points").
    from optkern.study import lowprec

    runs = [
        _lp_run("adam", 0, 0.9, 0.5),
        _lp_run("adam", 1, 0.9, 0.5),
        _lp_run("adam-8bit", 0, 0.9, 0.5),
        _lp_run("adam-8bit", 1, 0.1, 2.31, collapsed=True),
    ]
    results = {"config": {"seeds": 2, "epochs": 1}, "checkpoint_epochs": [0, 1], "runs": runs}
    assert "adam-8bit without normalization seed 1" in S.failed_sentence(results)
    lines = lowprec.report_section(results)
    (row,) = [ln for ln in lines if ln.startswith("| adam-8bit")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2:5] == ["0.5000", "0.900", "1"], cells
    assert "collapsed" in cells[0], cells
    assert "+0.0 points" in lines[-2], lines[-2]


def test_a_small_nonzero_loss_is_not_printed_as_zero():
    # L-BFGS fits the digits to a training loss of ~3e-7 in two epochs: the table said "0.0000", a
    # cross-entropy no network reaches, and the low-precision table likewise.
    from optkern.study import lowprec, report

    run = _lp_run("adam-8bit", 0, 0.95, 3.3e-7)
    results = {"config": {"seeds": 1, "epochs": 1}, "checkpoint_epochs": [0, 1], "runs": [run]}
    (row,) = [ln for ln in report._table(results) if ln.startswith("| adam-8bit |")]
    assert row.split("|")[3].strip() == "3.3e-07", row
    (row,) = [ln for ln in lowprec.report_section(results) if ln.startswith("| adam-8bit")]
    assert row.split("|")[3].strip() == "3.3e-07", row
    assert report._fmt(0.0) == "0.0000" and report._fmt(0.12345) == "0.1235"  # (the rest as before)
    assert report._fmt(-2e-9, ".2f") == "-2e-09"


def _tiny():
    import numpy as np

    from optkern.datasets import Dataset

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return Dataset(x[:60], y[:60], 2, "t", ()), Dataset(x[60:], y[60:], 2, "v", ())


@pytest.mark.parametrize("seeds", [1, 2])
def test_optimizers_table_gives_swalps_averaging_window_as_run(seeds):
    # The report's optimizer table ("every hyper-parameter of each run; the rest are the class's
    # defaults") said swa_start=0, cycle=1, seed=0: SWALP's defaults, where the runs averaged from
    # step 3 x (steps per epoch) once per epoch, seeded by the run's seed.
    from optkern.study import report, runner

    cfg = runner.StudyConfig.quick(
        optimizers=["swalp"], norms=["none"], hidden=(4,), epochs=4, batch_size=16, seed=5, seeds=seeds, jobs=1
    )
    res = runner.run_study(*_tiny(), cfg, progress=False)
    table = res["optimizers"]["swalp"]
    for run in res["runs"]:
        for k in ("swa_start", "cycle"):
            assert table["hyperparameters"][k] == run["hyperparameters"][k] == {"swa_start": 12, "cycle": 4}[k]
            assert k in table["set"]
    seed = table["hyperparameters"]["seed"]
    assert seed == 5 if seeds == 1 else seed == "5..6 (the run's)", seed
    (row,) = [ln for ln in report._hyperparameters(res) if ln.startswith("| swalp |")]
    assert "**swa_start=12**" in row and "**cycle=4**" in row, row


def test_setup_gives_the_batch_of_the_runs_that_use_it():
    # A study of L-BFGS alone said "2 epochs, batch 64": no run used 64 rows (L-BFGS takes the
    # whole training set, as the optimizer table said); beside sgd it said nothing of L-BFGS's.
    from optkern.study import report

    def results(*names):
        table = {n: {"batch_size": 64 if n == "sgd" else 1438} for n in names}
        cfg = {
            "activation": "tanh",
            "hidden": [4],
            "epochs": 2,
            "batch_size": 64,
            "optimizers": list(names),
            "warmup_fraction": 0.05,
            "seed": 0,
            "device": "cpu",
            "curvature_batch": 256,
            "trace_matvecs": 1,
            "concentration_k": 1,
            "density_probes": 1,
            "density_steps": 1,
        }
        return {"config": cfg, "info": {}, "dataset": "d", "num_train": 1438, "num_val": 359, "optimizers": table}

    text = " ".join(report._setup(results("lbfgs")))
    assert "2 epochs, batch 1438 for lbfgs (the whole training set)," in text, text
    text = " ".join(report._setup(results("sgd", "lbfgs")))
    assert "2 epochs, batch 64 (lbfgs: 1438, the whole training set)," in text, text
    assert "2 epochs, batch 64, " in " ".join(report._setup(results("sgd")))


def test_report_md_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    # results.json was replaced atomically, report.md opened with "w": a Ctrl-C (or a full disk)
    # while writing it left half a report, the previous one ("Not finished") already gone.
    from optkern import _atomic
    from optkern.study import report

    results = {"config": {"seeds": 1, "epochs": 1}, "checkpoint_epochs": [0, 1], "runs": []}
    monkeypatch.setattr(report, "_setup", lambda r: ["## Setup", ""])
    (tmp_path / "report.md").write_text("previous\n")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_markdown(results, str(tmp_path), [], skipped="test")
    assert (tmp_path / "report.md").read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # (no temporary left)
    monkeypatch.undo()
    monkeypatch.setattr(report, "_setup", lambda r: ["## Setup", ""])
    path = report.write_markdown(results, str(tmp_path), [], skipped="test")
    assert Path(path).read_text().startswith("# optkern study")


def test_sigterm_while_results_json_is_written_still_writes_the_report(tmp_path, monkeypatch, capsys):
    # A SIGTERM (or Ctrl-C) after the last run, while results.json was being written, escaped the
    # study: no report (report.md still said "Not finished") and exit status 130, not SIGTERM's 143
    # (--help: "Ctrl-C (or SIGTERM) stops early and still writes a report of the runs so far").
    import json
    import os
    import signal

    from optkern import cli
    from optkern.study import report

    real = report.write_json

    def write_json(results, out_dir):
        if not results["interrupted"]:  # the final one (the checkpoints are marked interrupted)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(results, out_dir)

    monkeypatch.setattr(report, "write_json", write_json)
    argv = ["study", "--quick", "--optimizers", "sgd", "--norms", "none", "--hidden", "4", "--epochs", "1"]
    code = cli.main(
        [*argv, "--curvature-samples", "32", "--jobs", "1", "--no-plots", "--quiet", "--out", str(tmp_path)]
    )
    assert code == 128 + signal.SIGTERM, capsys.readouterr().err
    assert (tmp_path / "report.md").read_text().startswith("# optkern study\n\n**Interrupted**")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["interrupted"] is True and [r["status"] for r in saved["runs"]] == ["done"]


def test_a_dead_network_on_unbalanced_classes_is_collapsed():
    # A dead network (uniform logits: loss ln C) predicts one class for every sample: its accuracy
    # is that class's share of the validation set, 0.6 here, not 1 / C = 1/3, so on unbalanced data
    # (a user's --data file) it was "done", its loss and accuracy averaged with the healthy runs'.
    import math

    from optkern.study import divergence

    shares = [0.6, 0.3, 0.1]
    assert divergence.collapsed(math.log(3), 0.6, 3, 200, shares=shares)
    assert divergence.collapsed(math.log(3), 1 / 3, 3, 200, shares=shares)  # (as before)
    assert not divergence.collapsed(math.log(3), 0.75, 3, 200, shares=shares)  # learned something
    assert not divergence.collapsed(0.9, 0.6, 3, 200, shares=shares)  # below ln C: a live network
    assert not divergence.collapsed(math.log(3), 0.6, 3, 200)  # (no shares: 1 / C alone)


def test_study_run_flags_a_dead_network_by_the_validation_shares(monkeypatch):
    import numpy as np

    from optkern.datasets import Dataset
    from optkern.study import runner

    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = np.where(np.arange(100) % 5 < 3, 0, 1 + np.arange(100) % 2).astype(np.int64)  # shares 0.6 / 0.2 / 0.2
    train, val = Dataset(x[:50], y[:50], 3, "t", ()), Dataset(x[50:], y[50:], 3, "v", ())
    # a dead network: logits 0 (every weight 0), so its loss is ln 3 and it predicts class 0 (0.6)
    monkeypatch.setattr(runner.MLP, "init_params", lambda self, seed=0: np.zeros(self.num_params, np.float32))
    cfg = runner.StudyConfig.quick(optimizers=["sgd"], norms=["none"], hidden=(4,), epochs=1, jobs=1)
    cfg.overrides = {"sgd": {"lr": 1e-30}}
    rec: dict = {}
    runner.train_run("sgd", "none", train, val, cfg, rec, progress=False)
    assert rec["history"]["val_acc"][-1] == pytest.approx(0.6)
    assert rec["collapsed"] is True


def test_normalization_sentence_with_none_not_listed_first():
    # --norms batch,none: the sentence compared "none" with itself ("the largest eigenvalue without
    # normalization is smaller than without normalization for 0 of 2 optimizer(s) (median ratio
    # without/with 1)") and said nothing of batch norm.
    def run(optimizer, norm, start, end):
        return {**_run(optimizer, 0, start, end=end), "norm": norm}

    runs = [run(o, "batch", 3.0, 1.0) for o in ("sgd", "adam")] + [run(o, "none", 6.0, 4.0) for o in ("sgd", "adam")]
    results = {"config": {"seeds": 1, "epochs": 2}, "checkpoint_epochs": [0, 2], "runs": runs}
    text = S.normalization_sentence(results)
    assert text == (
        "At epoch 2 the largest eigenvalue with batch norm is smaller than without normalization for 2 of 2 "
        "optimizers (median ratio without/with 4); at epoch 0 it is 3 with batch norm vs 6 without."
    ), text


def test_time_plot_says_which_bars_are_hatched():
    from optkern.study import plots

    assert plots._hatched(["batch", "none"]) == "; hatched: batch norm"
    assert plots._hatched(["batch", "layer"]) == "; hatched: batch norm, layer norm"
    assert plots._hatched(["none"]) == ""
