"""``_cpu.cg_thread_choice_trace`` checks its timings before replaying any: an item that was not a
number (a str, None, a row of a 2-D array, a complex) raised pybind11's "RuntimeError: Unable to
cast ..." naming nothing -- and only when the replay reached it (the item of the path not taken
was never read: ``[None]`` passed); NaN or negative times were replayed as timings, a str or
bytes walked as its characters. Now: TypeError / ValueError naming the argument and the index."""

import numpy as np
import pytest

from optkern import _cpu


def _err(serial, parallel):
    with pytest.raises((TypeError, ValueError)) as e:
        _cpu.cg_thread_choice_trace(serial, parallel)
    return e.type, str(e.value)


@pytest.mark.parametrize(
    ("serial", "parallel", "kind", "start"),
    [
        (["a"], [1.0], TypeError, "serial_ns[0]: "),
        ([1.0, 2.0], [1.0, None], TypeError, "parallel_ns[1]: "),
        ([None], [1.0], TypeError, "serial_ns[0]: "),  # never read by the replay
        (np.ones((2, 2)), np.ones((2, 2)), TypeError, "serial_ns: "),
        (np.array(1.0), [1.0], TypeError, "serial_ns: "),
        ([[1.0]], [[1.0]], TypeError, "serial_ns[0]: "),
        ([1j], [1.0], TypeError, "serial_ns[0]: "),
        ([True], [1.0], TypeError, "serial_ns[0]: "),
        ([1.0], [np.bool_(True)], TypeError, "parallel_ns[0]: "),
        ([float("nan")], [1.0], ValueError, "serial_ns[0]: "),
        ([1.0, 2.0], [1.0, -3.0], ValueError, "parallel_ns[1]: "),
        ([1.0], [float("inf")], ValueError, "parallel_ns[0]: "),
        ([10**400], [1.0], ValueError, "serial_ns[0]: "),
        ("ab", "cd", TypeError, "serial_ns: "),
        (b"ab", b"cd", TypeError, "serial_ns: "),
        ([1.0], None, TypeError, "parallel_ns: "),
        (np.float64(1.0), [1.0], TypeError, "serial_ns: "),
        ({1: 2.0}, [1.0], TypeError, "serial_ns: "),
        ([1.0], [1.0, 2.0], ValueError, "serial_ns, parallel_ns: "),
    ],
)
def test_bad_timings_are_named(serial, parallel, kind, start):
    got = _err(serial, parallel)
    assert got[0] is kind, got
    assert got[1].startswith(start), got


def test_numbers_of_any_kind_replay_alike():
    serial = [5.0, 4.0, 6.0, 5.0, 4.0, 6.0, 5.0, 5.0]
    parallel = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.0]
    want = _cpu.cg_thread_choice_trace(serial, parallel)
    assert want[6:] == [True, True]  # all threads, the faster here
    for conv in (tuple, np.asarray, lambda v: np.asarray(v, np.float32), lambda v: [np.float64(x) for x in v]):
        assert _cpu.cg_thread_choice_trace(conv(serial), conv(parallel)) == want
    ints = [int(x) for x in serial], [int(x) for x in parallel]
    assert _cpu.cg_thread_choice_trace(*ints) == want
    assert _cpu.cg_thread_choice_trace([], ()) == []
    assert _cpu.cg_thread_choice_trace([0.0], [0.0]) == [True]
