"""A study of L-BFGS and Newton-CG alone (they take no learning-rate schedule) was reported with
"linear warm-up (5 % of the steps) to each optimizer's learning rate, then cosine decay to 0" and
"`lr` is the schedule's peak": a schedule no run had. The setup now says which runs follow it."""

from __future__ import annotations

from optkern.study import report


def _cfg(names):
    return {"optimizers": names, "warmup_fraction": 0.05}


def test_a_study_of_schedule_free_optimizers_says_it_has_no_schedule():
    assert report._schedule(_cfg(["lbfgs"])) == "no learning-rate schedule (lbfgs sets its own steps)"
    said = report._schedule(_cfg(["lbfgs", "newton-cg"]))
    assert said == "no learning-rate schedule (lbfgs and newton-cg set their own steps)"
    assert not report._scheduled(["lbfgs", "newton-cg"])


def test_a_mixed_study_names_the_runs_without_the_schedule():
    said = report._schedule(_cfg(["adam", "lbfgs"]))
    assert said.startswith("linear warm-up (5% of the steps)") and said.endswith("(lbfgs: no schedule)")
    assert report._scheduled(["adam", "lbfgs"])


def test_the_first_order_default_is_worded_as_before():
    said = report._schedule(_cfg(["sgd", "adam"]))
    assert said == ("linear warm-up (5% of the steps) to each optimizer's learning rate, then cosine decay to 0")
