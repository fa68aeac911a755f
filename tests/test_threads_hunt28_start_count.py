"""optkern's thread count at import (defect hunt 28).

The count started at the OpenMP ICV of whichever Python thread first asked for it, and torch's CPU
wheel shares optkern's libgomp: ``torch.set_num_threads(1)`` before ``import optkern`` left optkern
on 1 thread for good, the count depended on the Python thread that imported it, and a CPU mask
narrowed after torch had loaded libgomp was not seen. It is now fixed at import from the
environment alone: the first value of ``OMP_NUM_THREADS`` if set (validated), else the CPUs in
the process's affinity mask, capped at ``MAX_THREADS``. Each scenario runs in a fresh interpreter.
"""

import os
import subprocess
import sys

import pytest

import optkern
from optkern import threads

pytest.importorskip("torch")  # (the defect is torch's setting leaking into optkern's)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# Printed by every scenario: optkern's count, torch's, and the default the rule gives, computed
# here independently of optkern (the main thread's mask: the one taskset sets).
_REPORT = f"""
import os, sys
def default():
    return min(len(os.sched_getaffinity(os.getpid())), {threads.MAX_THREADS})
def report(n):
    torch = sys.modules.get("torch")
    print(n, torch.get_num_threads() if torch else 0, default())
"""


def _python(code, **env_set):
    """stdout's words of ``code`` run in a fresh interpreter (after _REPORT) with ``env_set``;
    any warning is an error there, as here."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPTKERN_SERIAL_BELOW")}
    env.update(PYTHONPATH=ROOT, OPTKERN_SERIAL_BELOW="0", **env_set)
    r = subprocess.run(
        [sys.executable, "-W", "error", "-c", _REPORT + code], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def _other_than_default():
    """A torch count that differs from the default (1, unless the default is 1)."""
    return 1 if min(len(os.sched_getaffinity(0)), threads.MAX_THREADS) > 1 else 2


def test_torch_set_num_threads_before_the_import_does_not_set_optkerns_count():
    k = _other_than_default()
    out = _python(f"import torch; torch.set_num_threads({k}); import optkern; report(optkern.get_num_threads())")
    n, t, default = map(int, out)
    assert t == k
    assert n == default  # (was k: the main thread's ICV, which torch had set)


_INDEPENDENT = """
import torch
torch.set_num_threads({k})
import optkern
from optkern import _cpu
start = optkern.get_num_threads()
optkern.set_num_threads(3)
after_optkern = torch.get_num_threads()
torch.set_num_threads(2)
torch.ones(1 << 22).sum()  # a parallel torch region on its count
# the team an optkern region starts: one entry per thread that ran a chunk
team = len(set(_cpu.chunk_threads([1 << 20], 1 << 30)))
print(start, after_optkern, optkern.get_num_threads(), team, torch.get_num_threads())
"""


def test_optkern_and_torch_counts_are_independent_both_ways():
    k = _other_than_default()
    start, torch_after_optkern_set, optkern_after_torch_set, team, torch_end = map(
        int, _python(_INDEPENDENT.format(k=k))
    )
    assert start == min(len(os.sched_getaffinity(0)), threads.MAX_THREADS)  # (was k)
    assert torch_after_optkern_set == k
    assert optkern_after_torch_set == 3 and team == 3  # optkern's regions run its count
    assert torch_end == 2


@pytest.mark.parametrize("torch_count", [1, 2])
def test_omp_num_threads_sets_the_count_whatever_torch_was_set_to(torch_count):
    code = f"import torch; torch.set_num_threads({torch_count}); import optkern; report(optkern.get_num_threads())"
    n, t, _ = map(int, _python(code, OMP_NUM_THREADS="3"))
    assert (n, t) == (3, torch_count)  # (was torch_count)


_FROM_A_THREAD = """
import threading
import torch
def run():
    torch.set_num_threads({k})  # this thread's ICV only
    import optkern
    box.append(optkern.get_num_threads())
box = []
t = threading.Thread(target=run)
t.start()
t.join()
import optkern
box.append(optkern.get_num_threads())
print(*box, default())
"""


def test_an_import_from_another_python_thread_gives_the_same_count():
    k = _other_than_default()
    in_thread, in_main, default = map(int, _python(_FROM_A_THREAD.format(k=k)))
    assert in_thread == in_main == default  # (was k in both: first asked in the thread torch had set)


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to narrow"
)
@pytest.mark.parametrize("torch_first", [False, True])
def test_a_narrowed_affinity_mask_before_the_import_sets_the_count(torch_first):
    cpu = min(os.sched_getaffinity(0))
    code = f"""
import torch  # libgomp loaded (torch_first: it counted the CPUs already)
if {torch_first}:
    torch.ones(1 << 22).sum()
os.sched_setaffinity(0, {{{cpu}}})
import optkern
report(optkern.get_num_threads())
"""
    n, _, default = map(int, _python(code))
    assert n == default == 1  # (was the CPU count libgomp had seen when loaded with torch)


def test_a_narrowed_mask_of_the_importing_thread_alone_does_not_set_the_count():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs to narrow")
    code = """
import threading
def run():
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # this thread's mask only
    import optkern
    box.append(optkern.get_num_threads())
box = []
t = threading.Thread(target=run)
t.start()
t.join()
report(box[0])
"""
    n, _, default = map(int, _python(code))
    assert n == default > 1  # (was 1: libgomp, loaded by this import, counted the thread's mask)


_WARNED = """
import warnings
if {k}:
    import torch
    torch.set_num_threads({k})
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import optkern
for x in w:
    print("warned", x.category.__name__, repr(str(x.message)).replace(" ", "_"))
report(optkern.get_num_threads())
"""


@pytest.mark.parametrize("value", ["abc", "0", "-1", "3abc", "", "3,x", "2.5"])
def test_an_invalid_omp_num_threads_warns_and_gives_the_default(value):
    *warned, n, _, default = _python(_WARNED.format(k=0), OMP_NUM_THREADS=value)
    assert int(n) == int(default)
    assert len(warned) == 3 and warned[:2] == ["warned", "RuntimeWarning"], warned  # (was no warning)
    assert f"OMP_NUM_THREADS={value!r}".replace(" ", "_") in warned[2]


@pytest.mark.parametrize("value, want", [(" 3 ", 3), ("+3", 3), ("4, 2", 4), ("1", 1)])
def test_a_valid_omp_num_threads_is_read_as_libgomp_reads_it(value, want):
    k = 2 if want == 1 else 1
    out = _python(_WARNED.format(k=k), OMP_NUM_THREADS=value)
    assert out[:2] == [str(want), str(k)], out  # no warning; (was k: torch's setting)
