"""A study's sharpness numbers: the top Hessian eigenvalue, the spectrum's ends and the
gradient's concentration of one normalization's runs at the first and the last checkpoint, means
over seeds (summary.py words them)."""

from __future__ import annotations

import math
import statistics

from .methods import OPTIMIZERS


def _half(r: dict) -> bool:
    """Whether ``r`` is a half-precision run (``Method.precision``): it starts from the shared
    weights rounded to its format, so its epoch-0 measurement is not the shared one."""
    m = OPTIMIZERS.get(r.get("optimizer", ""))
    return bool(m is not None and m.precision)


def _curv(results: dict, norm: str, epoch: int) -> dict:
    """Every curvature record of ``norm``'s runs at ``epoch``, by seed: of the full-precision runs
    where there are any (the shared starting point; a half-precision run starts from it rounded)."""
    runs = [r for r in results["runs"] if r.get("norm") == norm]
    full = [r for r in runs if not _half(r)]
    out: dict = {}
    for r in full or runs:
        out.setdefault(r.get("seed"), []).extend(c for c in r.get("curvature", []) if c["epoch"] == epoch)
    return {seed: cs for seed, cs in out.items() if cs}


def _seed_mean(by_seed: dict, f) -> float:
    """The mean over seeds of ``f`` of each seed's records (averaged within the seed first): a mean
    over the records weighted each seed by its runs, so an interrupted study, whose last seed had
    fewer runs, gave a "mean over 2 seeds" that was neither seed's value nor their mean."""
    return statistics.fmean(statistics.fmean(f(c) for c in cs) for cs in by_seed.values())


def _norms(results: dict) -> list:
    return list(dict.fromkeys(r["norm"] for r in results["runs"] if r.get("norm")))


def end_records(results: dict, norm: str, last: int) -> dict:
    """{optimizer: its runs' curvature records at epoch ``last``} of ``norm``'s runs."""
    ends: dict = {}
    for r in results["runs"]:
        if r.get("norm") == norm:
            # (a collapsed run's end is a dead network's, left out as from the table's means; a
            # diverged run has no measurement at the last checkpoint)
            c = (
                None
                if r.get("collapsed") or r.get("stuck")
                else next((c for c in r.get("curvature", []) if c["epoch"] == last), None)
            )
            if c is not None:
                ends.setdefault(r["optimizer"], []).append(c)
    return ends


def top_end_median(results: dict, norm: str, last: int) -> float | None:
    """The median over optimizers (each the mean over its seeds) of the top eigenvalue of ``norm``'s
    runs at epoch ``last``, as ``sharpness`` gives it; None where no run was measured there."""
    ends = end_records(results, norm, last)
    if not ends:
        return None
    return statistics.median(statistics.fmean(c["top_eigenvalues"][0] for c in cs) for cs in ends.values())


def sharpness(results: dict, norm: str) -> dict | None:
    """Top eigenvalue, spectrum ends and gradient concentration of ``norm``'s
    runs at the first and the last checkpoint: the start is shared by every
    optimizer (mean over seeds); the end is per optimizer (mean over seeds),
    summarized by median and range over optimizers."""
    epochs = results.get("checkpoint_epochs") or []
    if len(epochs) < 2:
        return None
    first, last = epochs[0], epochs[-1]
    start = _curv(results, norm, first)
    ends = end_records(results, norm, last)
    if not start or not ends:
        return None

    def per_opt(f) -> dict:
        return {o: statistics.fmean(f(c) for c in cs) for o, cs in ends.items()}

    def median(d: dict) -> float:
        return statistics.median(d.values())

    return {
        "first": first,
        "last": last,
        "optimizers": len(ends),
        "end_seeds": {o: len(cs) for o, cs in ends.items()},  # (a seed that diverged or collapsed has no end)
        "top_start": _seed_mean(start, lambda c: c["top_eigenvalues"][0]),
        "top_end": per_opt(lambda c: c["top_eigenvalues"][0]),
        "lo_start": _seed_mean(start, lambda c: c.get("spectrum_min", math.nan)),
        "hi_start": _seed_mean(start, lambda c: c.get("spectrum_max", math.nan)),
        "lo_end": median(per_opt(lambda c: c.get("spectrum_min", math.nan))),
        "hi_end": median(per_opt(lambda c: c.get("spectrum_max", math.nan))),
        "conc_start": _seed_mean(start, lambda c: c["grad_concentration"]),
        "conc_end": median(per_opt(lambda c: c["grad_concentration"])),
    }
