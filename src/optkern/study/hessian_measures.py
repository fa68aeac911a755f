"""The loss-Hessian measurements of one checkpoint of a study run (Ghorbani, Krishnan & Xiao,
ICML 2019): top eigenvalues, trace, spectral density and gradient concentration. runner.py
re-exports ``curvature`` and calls it from there (its checkpoint guard, ``_safe_curvature``)."""

from __future__ import annotations

import math
import time

from .. import hessian
from .config import StudyConfig
from .parallel import loss_and_grad, shard


def curvature(model, params, xc, yc, cfg: StudyConfig, seed: int, comm=None) -> dict:
    """Ghorbani et al.'s measurements of the loss Hessian at ``params`` on the
    batch ``(xc, yc)``. One Lanczos run gives both the top eigenvalues and the
    eigenvectors the gradient concentration projects on.

    With ``comm`` (data-parallel), each rank multiplies on its shard of the batch and the
    products are summed in rank order: every rank gets the same numbers, those of one process
    up to rounding. (Not with batch norm: its statistics span the whole batch, so each rank
    then measures the whole batch itself.)"""
    t0 = time.perf_counter()
    if comm is not None and model.norm == "batch":
        comm = None
    sl = shard(int(xc.shape[0]), comm)
    xl, yl = xc[sl], yc[sl]
    op = hessian.from_mlp(model, params, xl, yl, comm=comm, fixed=True)  # (params stay put meanwhile)
    k = max(cfg.top_k, cfg.concentration_k)
    top = hessian.top_eigenvalues(
        op,
        k=k,
        which="LA",
        tol=cfg.lanczos_tol,
        max_steps=max(cfg.lanczos_steps, k),
        seed=seed,
        return_eigenvectors=True,
    )
    _, (g,) = loss_and_grad(model, params, xl, yl, comm, (sl.stop - sl.start) / max(int(xc.shape[0]), 1))
    conc = hessian.gradient_concentration(op, g, cfg.concentration_k, eigenvectors=top.eigenvectors)
    tr = hessian.trace(op, method="hutch++", num_matvecs=cfg.trace_matvecs, seed=seed)
    dens = hessian.spectral_density(
        op, num_probes=cfg.density_probes, steps=cfg.density_steps, grid=cfg.density_grid, seed=seed
    )
    return {
        "top_eigenvalues": [float(v) for v in top.eigenvalues[: cfg.top_k]],
        "top_residuals": [float(v) for v in top.residuals[: cfg.top_k]],
        "lanczos_steps": int(top.steps),
        "lanczos_converged": bool(top.converged),
        "trace": float(tr.estimate),
        "trace_stderr": float(tr.stderr),
        "grad_concentration": float(conc),
        "grad_norm": math.sqrt(float(g @ g)),
        "density": {
            "grid": [float(v) for v in dens.grid],
            "density": [float(v) for v in dens.density],
            "sigma": float(dens.sigma),
        },
        # Extreme Ritz values of the SLQ runs: where the spectrum starts and ends.
        "spectrum_min": float(dens.nodes[dens.weights > 0].min()),
        "spectrum_max": max(float(dens.nodes[dens.weights > 0].max()), float(top.eigenvalues[0])),
        "hvps": int(op.num_matvecs),
        "time_s": time.perf_counter() - t0,
    }
