"""hessian.cg's per-iteration costs (issue 17: a CG iteration within 10 % of one curvature product).

The fused iteration's thread choice (cpp/cg_threads.hpp) replayed on known timings through
``_cpu.cg_thread_choice_trace``: it compared the path it runs, timed at every call (its last five),
with the other's last five re-timings, spread over up to 5 x 1024 calls. Timings taken at other
times: when the load rose, the fresh times of the right path lost to the stale quiet ones of the
wrong path (three calls of it in a row, each milliseconds under load); when the first timings were
disturbed, the wrong choice stood for 112 calls (three re-timings 16, 32 and 64 calls apart had to
outvote them)."""

import pytest

from optkern import _cpu

EXPLORE = 6  # the first calls: each path timed three times, in turn


def _trace(serial, parallel):
    return _cpu.cg_thread_choice_trace(serial, parallel)


def _runs(choice, value):
    """The lengths of the runs of consecutive calls that chose ``value``."""
    out, k = [], 0
    for c in choice + [not value]:
        if c == value:
            k += 1
        elif k:
            out.append(k)
            k = 0
    return out


def test_a_load_rise_does_not_switch_to_the_stale_faster_path():
    # quiet: one thread 100 us, two 140; then loaded: one thread 200, two 2000 (a worker descheduled)
    calls = 400
    serial = [100e3] * 20 + [200e3] * (calls - 20)
    parallel = [140e3] * 20 + [2000e3] * (calls - 20)
    choice = _trace(serial, parallel)
    assert choice[EXPLORE : EXPLORE + 14] == [False] * 14
    # after the exploration the other path only runs alone, once per re-timing
    assert _runs(choice[EXPLORE:], True) == [1] * sum(choice[EXPLORE:])
    assert sum(choice[EXPLORE:]) <= 6


def test_a_disturbed_first_timing_is_corrected_at_the_first_re_timing():
    # the one-thread path timed while something else ran (300 us), then 100 us; two threads 140 throughout
    calls = 300
    serial = [300e3] * EXPLORE + [100e3] * (calls - EXPLORE)
    parallel = [140e3] * calls
    choice = _trace(serial, parallel)
    assert choice[EXPLORE] is True  # (chosen on the disturbed timings)
    # the re-timing of one thread 16 calls later shows it faster: both timed afresh, in turn, and
    # one thread chosen; from then on two threads only at the re-timings
    assert sum(choice[40:]) <= 5
    assert _runs(choice[40:], True) == [1] * sum(choice[40:])


@pytest.mark.parametrize("faster", [False, True])
def test_the_faster_path_is_kept(faster):
    calls = 600
    fast, slow = [100e3] * calls, [150e3] * calls
    choice = _trace(slow if faster else fast, fast if faster else slow)
    rest = choice[EXPLORE:]
    # the slower path re-timed alone after 16, 32, ... calls: log2(600 / 16) + 1 times at most
    assert sum(c != faster for c in rest) <= 6
    assert _runs(rest, not faster) == [1] * sum(c != faster for c in rest)


def test_trace_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="serial_ns, parallel_ns"):
        _trace([1.0, 2.0], [1.0])
