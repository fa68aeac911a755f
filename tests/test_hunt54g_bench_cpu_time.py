"""`bench second`'s L-BFGS rows give the process CPU time per step of optkern and torch next to the
wall clock (on a 2-vCPU shared host the wall clock also measures whether a step's threads got both
CPUs: bench/RESULTS.md, 54th session, h320). Since the 55th session (h327) every CPU row carries it
(``Timing.cpu``, the table's CPU columns): the figures are those of the timed calls only (not the
warm-up ones), and a call that burns CPU shows it."""

import time

import pytest

from optkern.benchmarks import second_order as so
from optkern.benchmarks.timing import Plan, compare


def _burn(ms, warmup_ms=None, warmups=0):
    """A factory of a call burning ``ms`` of process CPU time (``warmup_ms`` in its first ``warmups`` calls)."""

    def make():
        calls = []

        def call():
            calls.append(None)
            spend = warmup_ms if len(calls) <= warmups else ms
            t_end = time.process_time() + spend / 1e3
            while time.process_time() < t_end:
                pass

        return call

    return make


def test_cpu_columns_are_the_timed_calls_medians_and_their_ratio():
    plan = Plan(warmup=2, min_repeats=5, max_repeats=5, budget_s=0.0)
    # the warm-up calls burn 40 ms: counted, they would lift the quartiles to 40 ms
    row = compare("t", "case", _burn(4, 40, 2), {"x": _burn(12, 40, 2)}, "cpu", plan, note="n")
    mine, other = row.ours.cpu, row.torch["x"].cpu
    assert mine.repeats == other.repeats == 5
    assert mine.median_ms == pytest.approx(4, abs=1.5) and other.median_ms == pytest.approx(12, abs=1.5)
    assert mine.q3_ms < 10 and other.q3_ms < 20, (mine, other)
    assert row.cpu_ratio == pytest.approx(other.median_ms / mine.median_ms, rel=1e-12)
    assert row.note == "n"


def test_no_torch_no_cpu_ratio():
    plan = Plan(warmup=0, min_repeats=2, max_repeats=2, budget_s=0.0)
    row = compare("t", "case", _burn(1), {}, "cpu", plan, note="n")
    assert row.ours.cpu is not None and row.ours.cpu.median_ms == pytest.approx(1, abs=1)
    assert row.as_dict()["cpu_ratio"] is None and row.note == "n"


def test_lbfgs_rows_carry_the_cpu_columns():
    torch = pytest.importorskip("torch")
    plan = Plan(warmup=1, min_repeats=2, max_repeats=2, budget_s=0.0, collect=False)
    rows = so._lbfgs_rows(torch, True, plan)
    steps = [r for r in rows if r.case.startswith("L-BFGS step, history")]
    assert len(steps) == 2
    for r in steps:
        assert r.ours.cpu.median_ms > 0 and r.torch["LBFGS"].cpu.median_ms > 0, r
        assert r.cpu_ratio == pytest.approx(r.torch["LBFGS"].cpu.median_ms / r.ours.cpu.median_ms)
