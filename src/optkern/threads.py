"""Thread counts of optkern's OpenMP kernels and of NumPy's OpenBLAS.

Small arrays (an MLP 64-512 wide, batches of a few hundred rows) make each
kernel or BLAS call last micro- to milliseconds. Two thread pools in one
process, optkern's OpenMP team and OpenBLAS's pthreads, then compete for the
cores, and on a busy machine every parallel call waits for its slowest,
descheduled thread. optkern's workers sleep between regions by default (see
``_backend``), which removes most of the cost; ``limit_threads(1)`` removes
the rest and makes timings steady (the study runs that way). Large optimizer
steps and normalizations want all threads.

optkern's count is its own, like torch's, and fixed at ``import optkern`` from
the environment alone, whichever Python thread imports it: the first value of
``OMP_NUM_THREADS`` if set (a value that is not a list of positive integers
warns and is ignored, as libgomp and torch ignore it; one above ``MAX_THREADS``
warns and runs ``MAX_THREADS``), else the CPUs in the process's affinity mask
(``os.sched_getaffinity``: logical CPUs, ``taskset`` counts) and at most a
cgroup CPU quota (v2's ``cpu.max`` or v1's ``cpu.cfs_quota_us``) rounded up (a
container's ``--cpus``), capped at ``MAX_THREADS``. Other libraries' settings do not move it:
``torch.set_num_threads`` (before or after the import) leaves it alone, and
``set_num_threads`` leaves torch's. A forked child starts at 1 (see below).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import warnings

from . import _backend

# (``import *`` brought contextlib, ctypes, os, threading and warnings without it)
__all__ = ["MAX_THREADS", "blas_threads", "get_num_threads", "limit_threads", "set_num_threads"]

#: The most threads ``set_num_threads`` / ``limit_threads`` take (the study's ``--threads`` bound
#: too). OpenMP accepts any count but creates the team only at the next parallel region, and a
#: count it cannot create ends the process there (a segfault, not an error): with Linux's default
#: vm.max_map_count (65530; two maps per thread stack) 65536 threads crash, 16384 ran here. 4096
#: stays well inside those limits (8 MiB default stacks: 32 GiB of address space, ~8k maps) and
#: above the logical CPU count of any one host today, so no useful setting is refused. A fixed
#: bound, not one from ``os.cpu_count()``: a script valid on one machine stays valid on another.
MAX_THREADS = 4096

# (getter, setter) names across OpenBLAS builds: plain, 64-bit-integer and the NumPy / SciPy wheels' copies.
_OPENBLAS_SYMBOLS = (
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
)


def _openblas_libs() -> list:
    """(path, get, set) of every OpenBLAS library loaded in this process."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ln.split()[-1].startswith("/")})
    except OSError:  # not Linux: leave BLAS alone
        return []
    libs = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _OPENBLAS_SYMBOLS:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                libs.append((path, get, set_))
                break
    return libs


def _loaded_openblas() -> list:
    """(get, set) function pairs of every OpenBLAS library loaded in this process."""
    return [(get, set_) for _, get, set_ in _openblas_libs()]


def get_num_threads() -> int:
    """OpenMP threads optkern's CPU kernels use."""
    return int(_backend.cpu.get_num_threads())


def set_num_threads(n: int) -> None:
    """Use ``n`` OpenMP threads (1 to ``MAX_THREADS``) in optkern's CPU kernels (like ``torch.set_num_threads``)."""
    n = _count(n)
    _warn_if_forked(n)
    _backend.cpu.set_num_threads(n)


def _count(n) -> int:
    """``n`` checked as a thread count: an integer in [1, MAX_THREADS] (TypeError / ValueError naming ``n``)."""
    return _backend.integer("n", n, 1, MAX_THREADS)


def blas_threads(n: int) -> int:
    """The OpenBLAS threads ``limit_threads(n)`` sets: ``n``, at most the CPUs of this process: the
    logical CPUs of its affinity mask (not cores: two per core with SMT), and at most its cgroup (v2 or
    v1) quota (``_cpus_of_process``).

    OpenBLAS's threads busy-wait, between calls (its idle workers spin ~0.1 s before they sleep)
    and inside one (a GEMM's threads spin on each other's panels): one more thread than cores
    spins while the thread it waits for is descheduled. ``optkern study --quick --jobs 1 --threads
    3`` on the loaded 2-core VM had not finished after 19 min (killed), against 9 s at 1 thread and
    149 s at 2 (98 % of its samples in OpenBLAS's spin loops, perf), where optkern's own OpenMP
    workers, which sleep when idle and whose libgomp throttles its spin once threads exceed CPUs,
    lose little (an Adam step's CPU time stays flat from 1 to 4 threads: bench/threads_oversub.py). So optkern's count
    stays ``n`` and BLAS takes what the cores hold (OpenBLAS's own default, its count of them)."""
    return max(1, min(_count(n), _cpus_of_process()))


class _Scope:
    """An open ``limit_threads`` block: the counts to put back when it ends (OpenMP's, and per
    OpenBLAS library path its (setter, count))."""

    __slots__ = ("omp", "blas")

    def __init__(self, omp: int, blas: dict):
        self.omp, self.blas = omp, blas


# The open limit_threads blocks of every Python thread, oldest first, and the lock that orders
# their entries and exits. The counts are process-wide, so blocks of two threads can overlap
# without nesting (A enters, B enters, A leaves, B leaves): each putting back what it found made
# the last one to leave restore the other's limit, and the process stayed on it for good (A at
# 1 thread, B at 3: 1 thread after both). A block that leaves while a later one is still open
# now leaves the count alone (the later block's limit holds) and hands what it found to that
# block, which puts it back when it leaves; blocks that nest leave as before.
_scopes_lock = threading.Lock()
_scopes: list = []


class limit_threads(contextlib.ContextDecorator):
    """Run the block with ``n`` optkern OpenMP threads and ``blas_threads(n)`` OpenBLAS threads
    (``n``, at most the process's CPUs: OpenBLAS's spinning threads stall past them), restoring
    the previous counts afterwards (best effort: a BLAS that is not OpenBLAS keeps its own
    setting). The counts are process-wide: while blocks of several Python threads are open, the
    last one entered sets them, and the counts from before the first are back once all have
    ended. One object runs any number of blocks, nested or in several threads, and decorates a
    function (each call a block)."""

    def __init__(self, n: int):
        self.n = _count(n)  # (checked at the call: before anything changes)
        # each Python thread's open blocks of this object, innermost last: a thread's blocks nest
        # (a generator context manager ran one block only; the second raised contextlib's AttributeError)
        self._open = threading.local()

    def __repr__(self) -> str:
        return f"limit_threads({self.n})"

    def __enter__(self) -> None:
        _warn_if_forked(self.n)
        libs = _openblas_libs()
        with _scopes_lock:
            scope = _Scope(int(_backend.cpu.get_num_threads()), {path: (set_, int(get())) for path, get, set_ in libs})
            _scopes.append(scope)
            try:
                _backend.cpu.set_num_threads(self.n)
                blas = blas_threads(self.n)
                for _, _, set_ in libs:
                    set_(blas)
            except BaseException:
                _leave(scope)
                raise
        stack = getattr(self._open, "scopes", None)
        if stack is None:
            stack = self._open.scopes = []
        stack.append(scope)

    def __exit__(self, *exc) -> None:
        stack = getattr(self._open, "scopes", None)
        if not stack:
            raise RuntimeError("limit_threads: __exit__ without a block of this object entered on this thread")
        scope = stack.pop()
        with _scopes_lock:
            _leave(scope)


def _leave(scope: _Scope) -> None:
    """End ``scope`` (the caller holds ``_scopes_lock``)."""
    i = next((k for k, s in enumerate(_scopes) if s is scope), None)
    if i is None:  # dropped by a fork (_after_fork_in_child): the child keeps its own count
        return
    del _scopes[i]
    if i < len(_scopes):  # a block entered later is still open: it puts back what this one found
        later = _scopes[i]
        later.omp = scope.omp
        later.blas.update(scope.blas)
        return
    _backend.cpu.set_num_threads(scope.omp)
    for set_, k in scope.blas.values():
        set_(k)


# ---- fork ---------------------------------------------------------------------------------------

# GNU libgomp does not survive fork: a child forked (os.fork, multiprocessing's "fork" start
# method, Python 3.11's default on Linux) after the forking thread ran a parallel region inherits
# a thread pool whose workers do not exist in it, and its first parallel region waits for them
# forever (measured: an SGD step of 4M floats hung the child, os.fork and a fork Pool alike). A
# region of one thread never reaches the pool, so a forked child runs optkern's kernels on one
# thread, as PyTorch's DataLoader workers do; "spawn" and "forkserver" children start a fresh
# runtime and keep the default. Which thread ran what cannot be told from here, so a child of a
# parent that never ran a parallel kernel gets one thread too, and asking for more warns.
_forked = False

_FORK_WARNING = (
    "optkern: this process was forked from one that had loaded optkern's OpenMP runtime; if the "
    "forking thread had run a parallel optkern kernel, libgomp cannot start worker threads here and the "
    "next parallel kernel hangs. A forked child runs optkern on 1 thread; for more, start workers with "
    "multiprocessing's 'spawn' or 'forkserver' method."
)


def _warn_if_forked(n: int) -> None:
    # (_cpu.forked: a fork() called from C runs no Python hook, only the module's pthread_atfork one)
    if (_forked or _backend.cpu.forked()) and n > 1:
        warnings.warn(_FORK_WARNING, RuntimeWarning, stacklevel=3)


def _after_fork_in_child() -> None:
    global _forked, _scopes_lock, _scopes
    _forked = True
    # (another thread may have held the lock at the fork; blocks of threads the child does not
    # have never end, and the forking thread's own block must not bring back the parent's count)
    _scopes_lock = threading.Lock()
    _scopes = []
    _backend.cpu.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- the count at import ----------------------------------------------------------------------

# optkern's count is its own, like torch's: fixed here, at import, from the environment alone. It
# used to start at the OpenMP ICV of whichever Python thread first asked for it, which other
# libraries change: torch (its CPU wheel shares this libgomp) had run omp_set_num_threads(1) in the
# main thread after torch.set_num_threads(1), and optkern then ran on one thread for good; the same
# import gave another count from another Python thread, and a CPU mask narrowed after libgomp had
# loaded was not seen. (The C++ setting never reads the ICV again; set_num_threads and fork move it.)

_WHITESPACE = " \t\n\v\f\r"


def _positive(item: str) -> int:
    """``item`` as a positive decimal integer (surrounding whitespace and a ``+`` allowed, as libgomp
    reads one), or 0 when it is not one."""
    item = item.strip(_WHITESPACE)
    digits = item[1:] if item.startswith("+") else item
    if not (digits.isascii() and digits.isdigit()):
        return 0
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 16 else 10**15  # (past MAX_THREADS; int() refuses 4301 digits)


def _omp_num_threads(value: str, default: int) -> int:
    """The count OMP_NUM_THREADS=``value`` asks for: the first item of its comma-separated list of
    positive integers (one per nesting level; optkern does not nest). A value that is not such a
    list warns and gives ``default``: libgomp and torch ignore it too, and an import that failed
    over a setting meant for every OpenMP program would help no one. Above MAX_THREADS: capped,
    with a warning (70000 ended the process with a segfault at the first parallel kernel)."""
    counts = [_positive(item) for item in value.split(",")]
    if min(counts) < 1:
        _start_warning(
            f"OMP_NUM_THREADS={value!r} is not a list of positive integers; optkern's kernels use {default} threads"
        )
        return default
    if counts[0] > MAX_THREADS:
        first = value.split(",")[0].strip(_WHITESPACE)
        _start_warning(
            f"OMP_NUM_THREADS={first} is above optkern.threads.MAX_THREADS; optkern's kernels use {MAX_THREADS} threads"
        )
        return MAX_THREADS
    return counts[0]


def _start_warning(message: str) -> None:
    # (stacklevel 4: the module line that sets the count, past _omp_num_threads and _start_count)
    warnings.warn(f"optkern: {message}", RuntimeWarning, stacklevel=4)


def _cpus_of_process() -> int:
    """The logical CPUs this process may run on (hardware threads, not cores: two per core with
    SMT): the affinity mask of its main thread (what ``taskset`` sets and reports), not that of the
    importing thread, which may have a narrower one of its own; ``os.cpu_count()`` where the mask
    cannot be read (not Linux). At most its cgroup CPU quota (v2's, or v1's), rounded up
    (``_cgroup_cpus``: a container's ``--cpus``). The one count of them (the study's
    ``--jobs`` default too)."""
    mask = 0
    for pid in (os.getpid(), 0):
        try:
            mask = len(os.sched_getaffinity(pid))
            break
        except (AttributeError, OSError):  # no sched_getaffinity (not Linux), or no main thread to ask
            continue
    cpus = mask or os.cpu_count() or 1
    quota = _cgroup_cpus()
    return cpus if quota is None else max(1, min(cpus, quota))


def _cgroup_cpus(cgroups: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """The CPUs this process's cgroup quota allows, ``ceil(quota / period)``, or None: no quota, no
    group, or nothing readable (not Linux). ``cgroups`` is the process's cgroup list: its ``0::``
    line names its v2 group under ``root`` (``cpu.max``); where that group has no ``cpu.max`` (v1,
    or systemd's hybrid mode, whose cpu controller is v1's) the line listing the ``cpu`` controller
    names its v1 group (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``). The quota is CPU time per
    period, not a mask: threads beyond it are throttled, as spinning ones beyond the mask wait."""
    try:
        with open(cgroups) as f:
            groups = [g for g in (ln.rstrip("\n").split(":", 2) for ln in f) if len(g) == 3]
    except (OSError, ValueError):  # (ValueError: not text)
        return None
    for hierarchy, controllers, path in groups:
        if hierarchy == "0" and controllers == "":
            words = _words(os.path.join(root, path.lstrip("/"), "cpu.max"))
            if words is not None:
                return _quota_cpus(words[:2], "max")
    for _, controllers, path in groups:
        if "cpu" in controllers.split(","):
            for d in _v1_dirs(root, controllers, path):
                quota = _words(os.path.join(d, "cpu.cfs_quota_us"))
                period = _words(os.path.join(d, "cpu.cfs_period_us"))
                if quota is not None and period is not None:
                    return _quota_cpus(quota[:1] + period[:1], "-1")
    return None


def _v1_dirs(root: str, controllers: str, path: str) -> list[str]:
    """Where a v1 ``cpu`` group may be: under the controllers' mount (named as the cgroup list names
    them, or ``cpu``: systemd's link), at ``path``, or the mount itself -- a container without a
    cgroup namespace lists its host path but has its own group mounted as the root."""
    mounts = dict.fromkeys((os.path.join(root, controllers), os.path.join(root, "cpu")))
    return [d for m in mounts for d in (os.path.join(m, path.lstrip("/")), m)]


def _words(path: str) -> list[str] | None:
    """The whitespace-separated words of the file at ``path``, or None where it cannot be read."""
    try:
        with open(path) as f:
            return f.read().split()
    except (OSError, ValueError):
        return None


def _quota_cpus(words: list[str], unlimited: str) -> int | None:
    """``ceil(quota / period)`` of ``[quota, period]``, at least 1; None for ``unlimited`` (v2's
    ``max``, v1's ``-1``) or anything else that is not a quota and a positive period (a period of 0
    raised ZeroDivisionError at import)."""
    try:
        quota, period = words
        if quota == unlimited or int(period) <= 0 or int(quota) < 0:
            return None
        return max(1, -(-int(quota) // int(period)))
    except ValueError:
        return None


def _start_count() -> int:
    """optkern's thread count at import: OMP_NUM_THREADS if set, else the CPUs of this process
    (``_cpus_of_process``; capped at MAX_THREADS: a larger host is not refused, it runs the bound)."""
    default = min(_cpus_of_process(), MAX_THREADS)
    value = os.environ.get("OMP_NUM_THREADS")
    return default if value is None else _omp_num_threads(value, default)


_backend.cpu.set_num_threads(_start_count())
