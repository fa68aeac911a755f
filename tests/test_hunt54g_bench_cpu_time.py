"""`bench second`'s L-BFGS rows give the process CPU time per step of optkern and torch next to the
wall clock (on a 2-vCPU shared host the wall clock also measures whether a step's threads got both
CPUs: bench/RESULTS.md, 54th session, h320): the note's figures are the medians of the timed calls
only (not the warm-up ones), and a call that burns CPU shows it."""

import re
import time

import pytest

from optkern.benchmarks import second_order as so
from optkern.benchmarks.timing import Plan, compare


def _burn(ms):
    def make():
        def call():
            t_end = time.process_time() + ms / 1e3
            while time.process_time() < t_end:
                pass

        return call

    return make


def test_cpu_note_is_the_timed_calls_medians_and_their_ratio():
    ours, theirs = [], []
    plan = Plan(warmup=2, min_repeats=5, max_repeats=5, budget_s=0.0)
    row = compare(
        "t", "case", so._cpu_timed(_burn(4), ours), {"x": so._cpu_timed(_burn(12), theirs)}, "cpu", plan, note="n"
    )
    so._cpu_note(row, ours, theirs)
    assert len(ours) == len(theirs) == 7  # (2 warm-up + 5 timed calls each)
    m = re.fullmatch(r"n; CPU time a step ([\d.]+) vs ([\d.]+) ms = ([\d.]+)x", row.note)
    assert m, row.note
    mine, other, ratio = map(float, m.groups())
    assert mine == pytest.approx(4, abs=1.5) and other == pytest.approx(12, abs=1.5), row.note
    assert ratio == pytest.approx(other / mine, rel=0.02)


def test_no_torch_no_cpu_note():
    ours: list = []
    plan = Plan(warmup=0, min_repeats=2, max_repeats=2, budget_s=0.0)
    row = compare("t", "case", so._cpu_timed(_burn(1), ours), {}, "cpu", plan, note="n")
    so._cpu_note(row, ours, [])
    assert row.note == "n"


def test_lbfgs_rows_carry_the_cpu_note():
    torch = pytest.importorskip("torch")
    plan = Plan(warmup=1, min_repeats=2, max_repeats=2, budget_s=0.0, collect=False)
    rows = so._lbfgs_rows(torch, True, plan)
    steps = [r for r in rows if r.case.startswith("L-BFGS step, history")]
    assert len(steps) == 2
    for r in steps:
        assert re.search(r"CPU time a step [\d.]+ vs [\d.]+ ms = [\d.]+x$", r.note), r.note
