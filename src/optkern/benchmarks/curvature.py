"""Curvature estimators against their own products (rows of ``optkern bench hvp``).

* Lanczos step / HVP: one SLQ run (1 probe x ``steps``) per reorthogonalization
  mode, with the time spent inside the products accumulated in the same loop;
  the ratio is (whole run) / (time in products), so the load of a shared
  machine hits both alike. Target <= 1.15.
* Block HVP: ``k = 8`` directions through one forward pass (``MLP.hvp_block``)
  against 8 single HVPs, alternated in one loop; the ratio is the median of
  (8 singles) / (one block). Target >= 2.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .timing import Row, Timing


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


def _timing(samples_ms):
    q = statistics.quantiles(samples_ms, n=4, method="inclusive") if len(samples_ms) > 1 else [samples_ms[0]] * 3
    return Timing(statistics.median(samples_ms), q[0], q[2], len(samples_ms))


def lanczos_overhead(op, steps, device, repeats, modes=("partial", "full", "none")):
    """{mode: (Timing of one run, list of run/product ratios)} for one SLQ probe of ``steps``."""
    from optkern import hessian

    out = {}
    for mode in modes:
        totals, ratios = [], []
        for _ in range(repeats):
            t = _Timed(op, device)
            _sync(device)
            t0 = time.perf_counter()
            hessian.spectral_density(t.op, num_probes=1, steps=steps, grid=1000, reorthogonalize=mode)
            _sync(device)
            total = time.perf_counter() - t0
            totals.append(total * 1e3)
            ratios.append(total / t.inside)
        out[mode] = (_timing(totals), ratios)
    return out


def block_speedup(model, params, x, y, k, device, repeats):
    """(Timing of one k-block, Timing of k singles, list of singles/block ratios)."""
    xp = __import__("cupy") if device == "cuda" else np
    rng = np.random.default_rng(1)
    V = xp.asarray(rng.standard_normal((k, model.num_params)).astype(model.dtype))
    rows = [xp.ascontiguousarray(V[i]) for i in range(k)]
    model.hvp_block(params, x, y, V)  # warm-up
    model.hvp(params, x, y, rows[0])
    blocks, singles = [], []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        model.hvp_block(params, x, y, V)
        _sync(device)
        t1 = time.perf_counter()
        for r in rows:
            model.hvp(params, x, y, r)
        _sync(device)
        t2 = time.perf_counter()
        blocks.append((t1 - t0) * 1e3)
        singles.append((t2 - t1) * 1e3)
    return _timing(blocks), _timing(singles), [s / b for s, b in zip(singles, blocks)]


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
