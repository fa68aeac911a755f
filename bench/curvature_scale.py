"""Curvature of a >= 50M-parameter MLP within a bounded memory: SLQ (1 probe x 80 steps, no
stored basis) and the top-5 eigenvalues (block-free Lanczos with thick restart, bounded basis).

    python bench/curvature_scale.py [--sizes 1024,5120,5120,5120,10] [--batch 16] [--device cpu|cuda]
                                    [--max-basis 12] [--max-steps 300] [--phases slq,top] [--json FILE]

Reports, per phase: wall time, time per Lanczos step / time of one HVP (the products are timed
inside the same run), and the peak of the memory allocated during the phase beyond what was alive
before it (NumPy allocations via tracemalloc on the CPU; CuPy's pool high-water mark on the GPU),
in bytes and in parameter vectors' worth. The model, its data and one forward pass' activations
are the baseline. Run it alone: it needs (max_basis + 4) vectors of float32 plus the model.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc

import numpy as np


def _sync(xp):
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


class Peak:
    """Peak bytes allocated while the block runs, beyond those alive when it starts."""

    def __init__(self, xp):
        self.xp = xp

    def __enter__(self):
        if self.xp is np:
            tracemalloc.reset_peak()
            self.base = tracemalloc.get_traced_memory()[0]
        else:
            self.pool = self.xp.get_default_memory_pool()
            self.base = self.pool.used_bytes()
            self.peak = self.base
        return self

    def sample(self):
        if self.xp is not np:
            self.peak = max(self.peak, self.pool.used_bytes())

    def __exit__(self, *exc):
        if self.xp is np:
            self.bytes = tracemalloc.get_traced_memory()[1] - self.base
        else:
            self.bytes = self.peak - self.base


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,5120,5120,5120,10")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--max-basis", type=int, default=12)
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--phases", default="slq,top", help="comma-separated: slq, top")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    from optkern import hessian
    from optkern.nn import MLP

    xp = np
    if a.device == "cuda":
        import cupy as xp
    else:
        tracemalloc.start()
    sizes = [int(s) for s in a.sizes.split(",")]
    model = MLP(sizes, activation="tanh", dtype=np.float32)
    rng = np.random.default_rng(0)
    params = xp.asarray(model.init_params(0))
    x = xp.asarray(rng.standard_normal((a.batch, sizes[0]), np.float32))
    y = xp.asarray(rng.integers(0, sizes[-1], a.batch))
    n = model.num_params
    vec = 4 * n
    op0 = hessian.from_mlp(model, params, x, y)
    timing = {"products": 0.0, "count": 0}

    def matvec(v, out=None):
        _sync(xp)
        t = time.perf_counter()
        r = op0.matvec(v, out=out)
        _sync(xp)
        timing["products"] += time.perf_counter() - t
        timing["count"] += 1
        if state["peak"] is not None:
            state["peak"].sample()
        return r

    op = hessian.from_hvp(matvec, n, np.float32, xp=xp, into=lambda v, out: matvec(v, out))
    state = {"peak": None}
    op.matvec(xp.ones(n, np.float32))  # warm-up (and one HVP's temporaries)
    hvp_s = timing["products"]
    out = {"sizes": sizes, "num_params": n, "batch": a.batch, "device": a.device, "hvp_s_first": hvp_s}
    print(f"MLP {a.sizes}: {n / 1e6:.1f}M parameters, batch {a.batch}, one vector = {vec / 2**20:.0f} MiB", flush=True)

    for phase in a.phases.split(","):
        timing.update(products=0.0, count=0)
        _sync(xp)
        t0 = time.perf_counter()
        with Peak(xp) as p:
            state["peak"] = p
            if phase == "slq":
                d = hessian.spectral_density(op, num_probes=1, steps=a.steps, grid=2000, reorthogonalize="none")
                info = {"range": [float(d.nodes.min()), float(d.nodes.max())], "mean": d.mean()}
            else:
                r = hessian.top_eigenvalues(op, a.k, max_basis=a.max_basis, max_steps=a.max_steps)
                info = {
                    "eigenvalues": r.eigenvalues.tolist(),
                    "residuals": r.residuals.tolist(),
                    "converged": r.converged,
                }
            _sync(xp)
        total = time.perf_counter() - t0
        state["peak"] = None
        steps = timing["count"]
        row = dict(
            info,
            wall_s=total,
            products=steps,
            s_per_step=total / steps,
            s_per_hvp=timing["products"] / steps,
            step_over_hvp=total / timing["products"],
            peak_bytes=p.bytes,
            peak_vectors=p.bytes / vec,
        )
        out[phase] = row
        print(
            f"{phase}: {steps} products in {total:.1f} s; step / HVP {row['step_over_hvp']:.3f} "
            f"({row['s_per_step']:.3f} s / {row['s_per_hvp']:.3f} s); peak beyond the model "
            f"{p.bytes / 2**20:.0f} MiB = {row['peak_vectors']:.2f} vectors; {info}",
            flush=True,
        )
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {out['max_rss_mib']:.0f} MiB", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
