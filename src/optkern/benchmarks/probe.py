"""Bandwidth probes: the ceiling each bandwidth-bound case is compared with, measured in the same run.

CPU: ``optkern._cpu.probe_rmw_`` (``w[k] += 0 * r`` over float32 arrays, all
threads): the traffic of an in-place optimizer step with no arithmetic. One
written array plus one read array is also the traffic of an out-of-place
``y = f(x)`` on a CPU (the write-allocate reads ``y``'s lines first), so it is
the normalization suite's ceiling too. In-place read-modify-write, not STREAM
copy, because in-place updates pay no write-allocate.

GPU: a device-to-device copy of a large float32 array (CuPy), counting the
bytes read and written.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .timing import Plan, Row, time_cpu, time_cuda

M = 1 << 20


def size_label(n: int) -> str:
    """16777216 -> "16M"; other counts with thousands separators."""
    return f"{n // M}M" if n >= M and n % M == 0 else f"{n:,}"


def _more(plan: Plan) -> Plan:
    """A probe is cheap and is the denominator of every %: give it more repeats."""
    return replace(
        plan, warmup=max(2, plan.warmup), min_repeats=max(10, plan.min_repeats), max_repeats=max(20, plan.max_repeats)
    )


def _probe_row(suite: str, case: str, timing, nbytes: float) -> Row:
    row = Row(suite, case, timing, bytes_moved=nbytes, kind="probe")
    row.probe_gbs = row.gbs  # a probe is 100% of itself
    return row


def cpu_rmw(suite: str, n: int, written: int, plan: Plan) -> Row:
    """Probe row: ``written`` float32 arrays of ``n`` elements updated in place from one read array.

    Bytes counted: (2 * written + 1) * 4 * n (each written array read and written, the read one read).
    """
    from .. import _cpu

    rng = np.random.default_rng(3)
    w = [rng.standard_normal(n, dtype=np.float32) for _ in range(written)]
    r = [rng.standard_normal(n, dtype=np.float32)]
    t = time_cpu(lambda: _cpu.probe_rmw_(w, r, 0.0), _more(plan))
    return _probe_row(suite, f"probe rmw {written}w+1r x {size_label(n)}", t, (2 * written + 1) * 4 * n)


def cpu_read(suite: str, n: int, arrays: int, plan: Plan) -> Row:
    """Probe row: ``arrays`` float32 arrays of ``n`` elements read once each, no writes
    (``optkern._cpu.probe_read``): the ceiling of read-dominated passes (L-BFGS's history).
    Bytes counted: ``arrays * 4 * n``."""
    from .. import _cpu

    rng = np.random.default_rng(4)
    a = [rng.standard_normal(n, dtype=np.float32) for _ in range(arrays)]
    t = time_cpu(lambda: _cpu.probe_read(a), _more(plan))
    return _probe_row(suite, f"probe read {arrays}r x {size_label(n)}", t, arrays * 4 * n)


def cuda_copy(suite: str, n: int, plan: Plan) -> Row:
    """Probe row: device-to-device copy of ``n`` float32 elements; bytes counted 2 * 4 * n."""
    import cupy

    src = cupy.ones(n, cupy.float32)
    dst = cupy.empty_like(src)
    t = time_cuda(lambda: cupy.copyto(dst, src), _more(plan))
    src = dst = None  # drop both before freeing the pool
    cupy.get_default_memory_pool().free_all_blocks()
    return _probe_row(suite, f"probe D2D copy x {size_label(n)}", t, 2 * 4 * n)


def faster(a: Row, b: Row) -> Row:
    """The faster of two measurements of one probe (measuring at the start and the end of a suite
    and keeping the better one lessens the bias of drifting machine load)."""
    return a if a.ours.median_ms <= b.ours.median_ms else b
