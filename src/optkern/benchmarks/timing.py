"""Timing and reporting shared by the benchmark suites.

CPU: wall clock around the call, warm-up, then repeats until a time budget;
median and inter-quartile spread. GPU: CUDA events on the current stream
(CuPy's, or torch's for torch code), the same statistics.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Timing:
    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int

    @property
    def spread(self) -> float:
        """Inter-quartile range relative to the median."""
        return (self.q3_ms - self.q1_ms) / self.median_ms if self.median_ms > 0 else 0.0


def _stats(samples_ms: list) -> Timing:
    s = sorted(samples_ms)
    q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0], s[0], s[0]]
    return Timing(statistics.median(s), q[0], q[2], len(s))


def time_cpu(fn, warmup: int = 3, min_repeats: int = 5, max_repeats: int = 50, budget_s: float = 1.0) -> Timing:
    """Median wall time of ``fn()`` in ms."""
    for _ in range(warmup):
        fn()
    out = []
    t_end = time.perf_counter() + budget_s
    while len(out) < max_repeats and (len(out) < min_repeats or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return _stats(out)


def time_cuda(fn, warmup: int = 5, min_repeats: int = 10, max_repeats: int = 100, budget_s: float = 1.0,
              framework: str = "cupy") -> Timing:
    """Median GPU time of ``fn()`` in ms between CUDA events on the current
    stream of ``framework`` ("cupy" or "torch")."""
    if framework == "torch":
        import torch

        make = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
        sync = torch.cuda.synchronize
        elapsed = lambda a, b: a.elapsed_time(b)  # noqa: E731
        record = lambda e: e.record()  # noqa: E731
    else:
        import cupy

        make = cupy.cuda.Event
        sync = cupy.cuda.get_current_stream().synchronize
        elapsed = cupy.cuda.get_elapsed_time
        record = lambda e: e.record()  # noqa: E731
    for _ in range(warmup):
        fn()
    sync()
    out = []
    t_end = time.perf_counter() + budget_s
    while len(out) < max_repeats and (len(out) < min_repeats or time.perf_counter() < t_end):
        a, b = make(), make()
        record(a)
        fn()
        record(b)
        b.synchronize()
        out.append(float(elapsed(a, b)))
    return _stats(out)


@dataclass
class Row:
    """One benchmark case."""
    suite: str
    case: str
    ours: Timing
    bytes_moved: float = 0.0                    # bytes optkern's kernel must move (0: not bandwidth-bound)
    torch: dict = field(default_factory=dict)   # implementation name -> Timing
    probe_gbs: float = 0.0                      # bandwidth probe of the same run

    @property
    def best_torch(self):
        if not self.torch:
            return None, None
        name = min(self.torch, key=lambda k: self.torch[k].median_ms)
        return name, self.torch[name]

    @property
    def gbs(self) -> float:
        return self.bytes_moved / (self.ours.median_ms * 1e-3) / 1e9 if self.bytes_moved else float("nan")

    @property
    def ratio(self) -> float:
        """best PyTorch time / optkern time (> 1: optkern is faster)."""
        _, t = self.best_torch
        return t.median_ms / self.ours.median_ms if t else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        name, t = self.best_torch
        d.update(best_torch_impl=name, best_torch_ms=t.median_ms if t else None, ratio=self.ratio,
                 gbs=self.gbs, pct_probe=100 * self.gbs / self.probe_gbs if self.probe_gbs and self.bytes_moved
                 else None)
        return d


def _f(v, spec):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_table(rows: list) -> str:
    """case | optkern ms (±spread) | best PyTorch ms (impl) | ratio | GB/s | % probe."""
    head = f"{'case':<44} {'optkern ms':>16} {'best torch ms':>22} {'torch/ok':>8} {'GB/s':>7} {'%probe':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        name, t = r.best_torch
        ours = f"{r.ours.median_ms:.3f} ±{100 * r.ours.spread:.0f}%"
        theirs = f"{t.median_ms:.3f} ({name})" if t else "—"
        pct = 100 * r.gbs / r.probe_gbs if r.probe_gbs and r.bytes_moved else None
        lines.append(f"{r.suite + ': ' + r.case:<44} {ours:>16} {theirs:>22} {_f(r.ratio, '.2f'):>8} "
                     f"{_f(r.gbs, '.1f'):>7} {_f(pct, '.0f'):>7}")
    return "\n".join(lines)


def write_json(rows: list, path: str, meta: dict) -> None:
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": [r.as_dict() for r in rows]}, f, indent=1)
