"""Curvature estimators against their own products (rows of ``optkern bench hvp``).

* Lanczos step / HVP: one SLQ run (1 probe x ``steps``) per reorthogonalization
  mode, with the time spent inside the products accumulated in the same loop;
  the ratio is (whole run) / (time in products), so the load of a shared
  machine hits both alike. Target <= 1.15.
* Block HVP: ``k = 8`` directions through one forward pass (``MLP.hvp_block``)
  against 8 single HVPs, alternated in one loop; the ratio is the median of
  (8 singles) / (one block). Target >= 2.

On the CPU each row also carries the process CPU time of the same runs (``timing.clocked``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import numpy as np

from .timing import Row, Timing, _stats, clocked


def _sync(device):
    if device == "cuda":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


class _Timed:
    """An operator wrapper that accumulates the wall time spent inside products."""

    def __init__(self, op, device):
        from optkern import hessian

        self.inside = 0.0
        self.device = device

        def timed(f):
            def call(*args):
                _sync(device)
                t = time.perf_counter()
                r = f(*args)
                _sync(device)
                self.inside += time.perf_counter() - t
                return r

            return call

        def into(v, out):
            op.matvec(v, out=out)

        self.op = hessian.from_hvp(
            timed(op.matvec),
            op.shape[0],
            op.dtype,
            xp=op.xp,
            matmat=timed(op.matmat),
            into=timed(into) if op.writes_into else None,
        )


def _timing(samples, device) -> Timing:
    """Timing of (wall ms, CPU ms) samples; the CPU time on the CPU only (a GPU run's is the host's
    launch and wait work)."""
    wall, cpu = zip(*samples)
    t = _stats(list(wall))
    return replace(t, cpu=_stats(list(cpu))) if device == "cpu" else t


def _synced(fn, device):
    """``fn`` run between two synchronizations of the current stream (GPU), so that its clocks cover its work."""

    def call():
        _sync(device)
        fn()
        _sync(device)

    return call


def lanczos_overhead(op, steps, device, repeats, modes=("partial", "full", "none")):
    """{mode: (Timing of one run, list of run/product ratios)} for one SLQ probe of ``steps``."""
    from optkern import hessian

    out = {}
    for mode in modes:
        totals, ratios = [], []
        for _ in range(repeats):
            t = _Timed(op, device)
            wall, cpu = clocked(
                _synced(
                    lambda t=t, mode=mode: hessian.spectral_density(
                        t.op, num_probes=1, steps=steps, grid=1000, reorthogonalize=mode
                    ),
                    device,
                )
            )
            totals.append((wall, cpu))
            ratios.append(wall / 1e3 / t.inside)
        out[mode] = (_timing(totals, device), ratios)
    return out


def block_speedup(model, params, x, y, k, device, repeats):
    """(Timing of one k-block, Timing of k singles, list of singles/block ratios)."""
    xp = __import__("cupy") if device == "cuda" else np
    rng = np.random.default_rng(1)
    V = xp.asarray(rng.standard_normal((k, model.num_params)).astype(model.dtype))
    rows = [xp.ascontiguousarray(V[i]) for i in range(k)]
    model.hvp_block(params, x, y, V)  # warm-up
    model.hvp(params, x, y, rows[0])
    block = _synced(lambda: model.hvp_block(params, x, y, V), device)

    def eight():
        for r in rows:
            model.hvp(params, x, y, r)

    eight_synced = _synced(eight, device)
    blocks, singles = [], []
    for _ in range(repeats):
        blocks.append(clocked(block))
        singles.append(clocked(eight_synced))
    ratios = [s[0] / b[0] for s, b in zip(singles, blocks)]
    return _timing(blocks, device), _timing(singles, device), ratios


def _spread(xs):
    return f"{statistics.median(xs):.2f} (range {min(xs):.2f}-{max(xs):.2f}, n={len(xs)})"


def rows(suite, name, model, params, x, y, op, device, quick) -> list:
    """The Lanczos-overhead and block-product rows of one model."""
    steps = 5 if quick else 80
    repeats = 1 if quick else 3
    out = []
    modes = ("partial",) if quick else ("partial", "full", "none")
    for mode, (t, ratios) in lanczos_overhead(op, steps, device, repeats, modes).items():
        out.append(
            Row(
                suite,
                f"{name} SLQ 1x{steps} reorth={mode}",
                t,
                note=f"run / time in HVPs {_spread(ratios)} (target <= 1.15)",
            )
        )
    for batch in sorted({x.shape[0], min(128, x.shape[0])}, reverse=True):
        tb, ts, ratios = block_speedup(model, params, x[:batch], y[:batch], 8, device, 1 if quick else 5)
        out.append(
            Row(
                suite,
                f"{name} block HVP k=8 b{batch}",
                tb,
                note=f"8 single HVPs {ts.median_ms:.1f} ms; speed-up {_spread(ratios)} (target >= 2)",
            )
        )
    return out
