"""The report of a study that measures the Hessian once (``--checkpoints 1``: "the last epoch only",
as its help says) or whose runs all failed before the last checkpoint (54th hunt, c).

Such a study has runs without and with batch norm, but ``sharpness`` (first and last checkpoint)
has nothing to give: the comparison with Ghorbani et al. then said "This run has no pair of runs
without and with batch norm to compare" beside a table holding both, and the top-eigenvalue
figure's caption spoke of "epoch 0 ... (black)", a point the figure does not draw."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.datasets import load_digits
from optkern.study import StudyConfig, run_study
from optkern.study import summary as S
from optkern.study.__init__ import captions


@pytest.fixture(scope="module")
def one_checkpoint():
    """A tiny study (2 optimizers x none, batch) measured at its last epoch only."""
    train, val = load_digits().split(val_fraction=0.2, seed=0)
    cfg = StudyConfig.quick(
        optimizers=["sgd", "adam"], norms=["none", "batch"], hidden=(8,), epochs=1, checkpoints=1, jobs=1
    )
    return run_study(train, val, cfg, progress=False)


def _ends(results, norm):
    return {r["optimizer"]: r["curvature"][-1]["top_eigenvalues"][0] for r in results["runs"] if r["norm"] == norm}


def test_one_checkpoint_comparison_does_not_deny_the_pair_it_has(one_checkpoint):
    res = one_checkpoint
    assert res["checkpoint_epochs"] == [1]
    assert {r["norm"] for r in res["runs"]} == {"none", "batch"}
    claim, measured = S.ghorbani_comparison(res)
    assert "no pair" not in measured, measured
    assert "epoch 1 only" in measured, measured
    # the pair's numbers at that epoch: medians over the optimizers, as the two-checkpoint text gives them
    med0, med1 = (float(np.median(list(_ends(res, n).values()))) for n in ("none", "batch"))
    assert f"median {S.g(med1)} vs {S.g(med0)}" in measured, measured


def test_one_checkpoint_caption_names_no_epoch_0_it_did_not_draw(one_checkpoint):
    caption = captions(one_checkpoint)["top_eigenvalue.png"]
    assert "epoch 0" not in caption, caption
    assert caption == caption.strip(), repr(caption)


def test_two_checkpoints_caption_still_names_the_shared_start(one_checkpoint):
    res = {**one_checkpoint, "checkpoint_epochs": [0, 1]}
    assert "epoch 0 is the shared starting point" in S.top_eigenvalue_caption(res)


def test_no_batch_norm_runs_still_says_there_is_no_pair(one_checkpoint):
    res = {**one_checkpoint, "runs": [r for r in one_checkpoint["runs"] if r["norm"] == "none"]}
    assert "no pair of runs without and with batch norm" in S.ghorbani_comparison(res)[1]


def test_pair_without_last_measurements_says_why_not_no_pair(one_checkpoint):
    """Both norms trained, but every run diverged (no measurement at the last checkpoint)."""
    runs = [{**r, "curvature": [], "status": "diverged", "diverged_epoch": 1} for r in one_checkpoint["runs"]]
    res = {**one_checkpoint, "runs": runs, "checkpoint_epochs": [0, 1]}
    text = S.ghorbani_comparison(res)[1]
    assert "no pair" not in text, text
    assert "no Hessian measurement" in text, text
