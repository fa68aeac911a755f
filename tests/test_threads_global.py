"""set_num_threads is process-wide: a Python thread started later runs optkern's kernels with the
count set in another thread (torch.set_num_threads semantics), not OpenMP's per-thread default."""

import os
import threading

import numpy as np
import pytest

import optkern


def _in_new_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except Exception as e:
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def restore_threads():
    before = optkern.get_num_threads()
    yield
    optkern.set_num_threads(before)


@pytest.mark.parametrize("n", [1, 3])
def test_setting_is_seen_by_a_new_python_thread(restore_threads, n):
    optkern.set_num_threads(n)
    assert _in_new_thread(optkern.get_num_threads) == n


def test_setting_made_in_a_second_thread_is_seen_by_the_main_thread(restore_threads):
    _in_new_thread(lambda: optkern.set_num_threads(3))
    assert optkern.get_num_threads() == 3


def _os_threads():
    """The process's OS thread ids (a set: workers of an earlier team may still be exiting, so a
    count's difference can miss a new thread)."""
    return set(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts OS threads through Linux /proc")
@pytest.mark.parametrize("n", [1, 4])
def test_kernels_of_a_new_thread_start_the_set_number_of_workers(restore_threads, n):
    """A fresh Python thread's first parallel region starts its own OpenMP team: n - 1 new OS threads.

    With the old per-thread omp_set_num_threads the team had OpenMP's default size instead.
    """
    optkern.set_num_threads(n)
    p = np.zeros(1 << 20, dtype=np.float32)
    g = np.ones_like(p)

    def step():
        before = _os_threads()
        optkern.optim.SGD([p], lr=0.1).step([g])  # large enough to run in parallel
        return len(_os_threads() - before)

    assert _in_new_thread(step) == n - 1
    assert np.all(p == np.float32(-0.1))
