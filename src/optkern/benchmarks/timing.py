"""Timing and reporting shared by the benchmark suites.

CPU: wall clock around each call, warm-up, then repeats until a time budget;
median and inter-quartile spread; and the process CPU time of the same calls
(every thread of the process, user + system), the same statistics. On a shared
2-vCPU host the wall clock also measures whether a call's threads got both CPUs
(bench/RESULTS.md, 54th session, h320: 404-803 ms wall at a constant ~600 ms of
CPU); the CPU time does not. GPU: CUDA events on the current stream (CuPy's, or
torch's for torch code), the same statistics, no CPU time.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace

from .._atomic import replace_atomically


@dataclass
class Timing:
    """Median and quartiles (ms) of ``repeats`` timed calls; ``cpu``: the process CPU time of the
    same calls (``time_cpu``; None from CUDA events)."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int
    cpu: Timing | None = None

    def per(self, k: int) -> Timing:
        """The time of one of ``k`` equal parts of each call (its CPU time too)."""
        cpu = self.cpu.per(k) if self.cpu is not None else None
        return Timing(self.median_ms / k, self.q1_ms / k, self.q3_ms / k, self.repeats, cpu)

    @property
    def spread(self) -> float:
        """Inter-quartile range relative to the median."""
        return (self.q3_ms - self.q1_ms) / self.median_ms if self.median_ms > 0 else 0.0


@dataclass(frozen=True)
class Plan:
    """How often to call: ``warmup`` untimed calls, then at least ``min_repeats`` and at most
    ``max_repeats`` timed calls, stopping once ``budget_s`` seconds have passed. ``collect``:
    run the garbage collector between implementations (frees big arrays held in cycles)."""

    warmup: int
    min_repeats: int
    max_repeats: int
    budget_s: float
    collect: bool = True


QUICK = Plan(warmup=1, min_repeats=3, max_repeats=5, budget_s=0.02, collect=False)
FULL = Plan(warmup=3, min_repeats=10, max_repeats=50, budget_s=1.0)


def plan_for(quick: bool) -> Plan:
    return QUICK if quick else FULL


def _stats(samples_ms: list) -> Timing:
    s = sorted(samples_ms)
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) >= 2 else [s[0], s[0], s[0]]
    return Timing(statistics.median(s), q[0], q[2], len(s))


def _repeat(plan: Plan, timed_call) -> list:
    """The results of ``timed_call()``, called as often as ``plan`` says."""
    out: list = []
    t_end = time.perf_counter() + plan.budget_s
    while len(out) < plan.max_repeats and (len(out) < plan.min_repeats or time.perf_counter() < t_end):
        out.append(timed_call())
    return out


def clocked(fn) -> tuple:
    """(wall ms, process CPU ms) of one call of ``fn()``. The CPU clock counts every thread of the
    process (optkern's OpenMP workers, torch's, BLAS's; user + system time), so a call on 2 busy
    threads shows about twice its wall time. It is read outside the wall interval: its system call
    (~1 us here) does not add to the wall time of a call of tens of microseconds."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    t1 = time.perf_counter()
    c1 = time.process_time()
    return (t1 - t0) * 1e3, (c1 - c0) * 1e3


def time_cpu(fn, plan: Plan = FULL) -> Timing:
    """Median wall time of ``fn()`` in ms, with the process CPU time of the same calls (``.cpu``)."""
    for _ in range(plan.warmup):
        fn()
    wall, cpu = zip(*_repeat(plan, lambda: clocked(fn)))
    return replace(_stats(list(wall)), cpu=_stats(list(cpu)))


def time_cuda(fn, plan: Plan = FULL, framework: str = "cupy") -> Timing:
    """Median GPU time of ``fn()`` in ms between CUDA events recorded on the current stream of
    ``framework`` ("cupy" or "torch")."""
    if framework == "torch":
        import torch

        make = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
        sync = torch.cuda.synchronize
        elapsed = lambda a, b: a.elapsed_time(b)  # noqa: E731
    else:
        import cupy

        make = cupy.cuda.Event
        sync = cupy.cuda.Device().synchronize
        elapsed = cupy.cuda.get_elapsed_time
    for _ in range(plan.warmup):
        fn()
    sync()

    def once():
        a, b = make(), make()
        a.record()
        fn()
        b.record()
        b.synchronize()
        return float(elapsed(a, b))

    return _stats(_repeat(plan, once))


def paired(a, b, plan: Plan):
    """(median, q1, q3) of time(a) / time(b) over pairs of calls made back to back (CPU), the order
    within a pair alternating (so neither call always runs on the other's cache or clock state):
    a ratio that survives the shared VM's swings, which move both calls of a pair alike."""
    import statistics
    import time

    for _ in range(plan.warmup):
        a(), b()
    ratios: list = []
    t_end = time.perf_counter() + 2 * plan.budget_s
    while len(ratios) < plan.max_repeats and (len(ratios) < plan.min_repeats or time.perf_counter() < t_end):
        first, second = (a, b) if len(ratios) % 2 == 0 else (b, a)
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        ta, tb = (t1 - t0, t2 - t1) if first is a else (t2 - t1, t1 - t0)
        ratios.append(ta / tb)
    q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) >= 2 else [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2]


def measure(fn, device: str, plan: Plan, framework: str = "cupy") -> Timing:
    """``time_cuda`` on ``device == "cuda"``, else ``time_cpu``."""
    return time_cuda(fn, plan, framework) if device == "cuda" else time_cpu(fn, plan)


@dataclass
class Row:
    """One benchmark case (or, with ``kind="probe"``, one bandwidth probe of the same run)."""

    suite: str
    case: str
    ours: Timing
    bytes_moved: float = 0.0  # bytes optkern's kernel must move (0: not bandwidth-bound)
    torch: dict = field(default_factory=dict)  # PyTorch implementation name -> Timing
    probe_gbs: float = 0.0  # the bandwidth probe this case is compared with
    note: str = ""
    kind: str = "case"

    @property
    def best_torch(self):
        """(name, Timing) of the fastest PyTorch implementation, or (None, None)."""
        if not self.torch:
            return None, None
        name = min(self.torch, key=lambda k: self.torch[k].median_ms)
        return name, self.torch[name]

    @property
    def gbs(self) -> float:
        return self.bytes_moved / (self.ours.median_ms * 1e-3) / 1e9 if self.bytes_moved else float("nan")

    @property
    def pct_probe(self) -> float:
        return 100 * self.gbs / self.probe_gbs if self.probe_gbs and self.bytes_moved else float("nan")

    @property
    def ratio(self) -> float:
        """best PyTorch time / optkern time (> 1: optkern is faster)."""
        _, t = self.best_torch
        return t.median_ms / self.ours.median_ms if t else float("nan")

    @property
    def cpu_ratio(self) -> float:
        """The process CPU time of the PyTorch implementation of ``ratio`` / optkern's (> 1: optkern
        spends less CPU); NaN without CPU times (GPU rows) or without torch."""
        _, t = self.best_torch
        mine = self.ours.cpu
        if t is None or t.cpu is None or mine is None or mine.median_ms <= 0:
            return float("nan")
        return t.cpu.median_ms / mine.median_ms

    def as_dict(self) -> dict:
        """JSON-ready: every float finite or None."""
        d = asdict(self)
        name, t = self.best_torch
        d.update(
            best_torch_impl=name,
            best_torch_ms=t.median_ms if t else None,
            ratio=_finite(self.ratio),
            cpu_ratio=_finite(self.cpu_ratio),
            gbs=_finite(self.gbs),
            pct_probe=_finite(self.pct_probe),
        )
        return d


def _finite(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _f(v, spec):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _ms(t: Timing | None) -> str:
    return "—" if t is None else f"{t.median_ms:.3f} ±{100 * t.spread:.0f}%"


def format_table(rows: list) -> str:
    """case | optkern ms ±spread | best PyTorch ms ±spread (impl) | ratio | optkern CPU ms ±spread |
    CPU ratio | GB/s | % probe | note. (The torch CPU time is the CPU ratio times optkern's; the
    JSON has it.)"""
    w = max([44] + [len(r.suite) + 2 + len(r.case) for r in rows])
    head = (
        f"{'case':<{w}} {'optkern ms':>15} {'best torch ms':>27} {'torch/ok':>8} {'CPU ms':>15} {'CPU t/ok':>8} "
        f"{'GB/s':>7} {'%probe':>6}  note"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        name, t = r.best_torch
        theirs = f"{_ms(t)} ({name})" if t else "—"
        lines.append(
            f"{r.suite + ': ' + r.case:<{w}} {_ms(r.ours):>15} {theirs:>27} {_f(r.ratio, '.2f'):>8} "
            f"{_ms(r.ours.cpu):>15} {_f(r.cpu_ratio, '.2f'):>8} "
            f"{_f(r.gbs, '.1f'):>7} {_f(r.pct_probe, '.0f'):>6}  {r.note}".rstrip()
        )
    return "\n".join(lines)


def write_json(rows: list, path: str, meta: dict) -> None:
    """``{"meta": meta, "rows": [Row.as_dict(), ...]}`` to ``path`` (strict JSON: no NaN), whole or
    not at all: a Ctrl-C while writing left a truncated file in place of the last run's."""
    with replace_atomically(path) as f:
        json.dump({"meta": meta, "rows": [r.as_dict() for r in rows]}, f, indent=1, allow_nan=False)


def compare(
    suite: str,
    case: str,
    ours,
    theirs: dict,
    device: str,
    plan: Plan,
    bytes_moved: float = 0.0,
    probe_gbs: float = 0.0,
    note: str = "",
) -> Row:
    """Time optkern and each PyTorch implementation of one case into a Row.

    ``ours`` and the values of ``theirs`` (implementation name -> factory) are factories
    returning the zero-argument call to time, so that only one implementation's arrays
    are alive at a time; a torch factory returns None where the implementation does not
    exist (noted in the row). On the GPU optkern is timed on CuPy's stream, torch on torch's.
    """
    fn = ours()
    row = Row(suite, case, measure(fn, device, plan, "cupy"), bytes_moved, probe_gbs=probe_gbs, note=note)
    del fn
    release(device, plan.collect)
    missing = []
    for name, make in theirs.items():
        fn = make()
        if fn is None:
            missing.append(name)
            continue
        row.torch[name] = measure(fn, device, plan, "torch")
        del fn
        release(device, plan.collect)
    if missing:
        row.note = "; ".join(filter(None, [row.note, "no torch " + "/".join(missing)]))
    return row


def release(device: str, collect: bool = True) -> None:
    """Free the arrays of the implementation just timed (and, on the GPU, CuPy's and torch's caches)."""
    import gc

    if collect or device == "cuda":
        gc.collect()
    if device == "cuda":
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
