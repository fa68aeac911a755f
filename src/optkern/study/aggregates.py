"""Per-configuration aggregates of a study's runs: each run's final numbers (``run_row``), the
rows whose Hessian numbers a mean over seeds may pool, and a ``Stat`` per metric over the seeds of
each (optimizer, norm) group. summary.py, which words them, re-exports every name here."""

from __future__ import annotations

import math
import statistics
from typing import NamedTuple


class Stat(NamedTuple):
    """Mean and sample standard deviation over seeds (sd 0 for one seed), with the range."""

    mean: float
    sd: float
    lo: float
    hi: float
    n: int


def stat(values) -> Stat | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None
    return Stat(statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, min(v), max(v), len(v))


def run_row(r: dict) -> dict:
    """One run's final numbers (None where it has none: diverged, interrupted)."""
    h = r.get("history", {})
    c = r.get("curvature", [])
    last = c[-1] if c else {}
    diverged = r.get("status") == "diverged"
    steps = r.get("steps") or 0
    return {
        "optimizer": r.get("optimizer", "?"),
        "norm": r.get("norm", "?"),
        "seed": r.get("seed"),
        "status": r.get("status", "?"),
        "diverged_epoch": r.get("diverged_epoch"),
        "collapsed": bool(r.get("collapsed")),  # finished as a dead network (divergence.collapsed)
        "stuck": bool(r.get("stuck")),  # finished with its initial parameters (divergence.stuck)
        "curvature_failed": [f["epoch"] for f in r.get("curvature_failed", [])],
        "last_epoch": r.get("diverged_epoch") if diverged else h["epoch"][-1] if h.get("epoch") else None,
        "final_train_loss": h["train_loss"][-1] if h.get("train_loss") and not diverged else None,
        "final_val_acc": h["val_acc"][-1] if h.get("val_acc") and not diverged else None,
        "time_s": r.get("time_s"),
        "train_time_s": r.get("train_time_s"),
        "step_ms": 1e3 * r["train_time_s"] / steps if steps and r.get("train_time_s") is not None else None,
        "curvature_time_s": r.get("curvature_time_s"),
        "top_eigenvalue": last["top_eigenvalues"][0] if last.get("top_eigenvalues") else None,
        "converged": last.get("lanczos_converged", True),
        "trace": last.get("trace"),
        "trace_stderr": last.get("trace_stderr"),
        "grad_concentration": last.get("grad_concentration"),
        "curvature_epoch": last.get("epoch"),
    }


#: The run_row fields measured on the Hessian: a group's are averaged over ``curvature_rows`` only.
CURVATURE_METRICS = ("top_eigenvalue", "trace", "trace_stderr", "grad_concentration")


def curvature_rows(rows: list) -> list:
    """The rows (:func:`run_row`) whose last Hessian measurement is at the latest epoch any of them
    has: the ones a mean over seeds may pool. A diverged seed's last one is older (epoch 0 when it
    diverged in epoch 1); averaging it with the other seeds' last ones mixed epochs in one number."""
    epochs = [r["curvature_epoch"] for r in rows if r["curvature_epoch"] is not None]
    if not epochs:
        return []
    return [r for r in rows if r["curvature_epoch"] == max(epochs)]


#: The run_row fields of a run's last epoch (and the seconds it took to get there): a group's are
#: averaged over ``epoch_rows`` only.
LAST_EPOCH_METRICS = ("final_train_loss", "final_val_acc", "train_time_s", "curvature_time_s")


def epoch_rows(rows: list) -> list:
    """The rows (:func:`run_row`) whose last epoch is the latest any of them reached: the ones a
    mean of final numbers may pool. An interrupted seed's last epoch is an earlier one (the run in
    flight at a SIGTERM); averaging its loss with the finished seeds' mixed epochs in one number."""
    epochs = [r["last_epoch"] for r in rows if r["last_epoch"] is not None]
    return [r for r in rows if r["last_epoch"] == max(epochs)] if epochs else []


def final_epoch(rows: list) -> int | None:
    """The epoch the final numbers of the rows (:func:`run_row`) that ``epoch_rows`` keeps are of:
    the study's last, or an earlier one where every seed was interrupted before it; None: none."""
    used = epoch_rows(rows)
    return used[0]["last_epoch"] if used else None


def trained_to(rows: list) -> str:
    """ " (k of n seeds)" when ``epoch_rows`` keeps only k of the n rows, else ""."""
    used = epoch_rows(rows)
    return f" ({len(used)} of {len(rows)} seeds)" if used and len(used) < len(rows) else ""


def measured_at(rows: list, epochs: int | None = None) -> str:
    """ " (epoch N)" when the last Hessian measurement of the rows (:func:`run_row`) that
    ``curvature_rows`` keeps is older than their last epoch (a diverged run's: its last one before
    diverging) or than the study's last, ``epochs`` (an interrupted run's), and " (k of n seeds)"
    when it keeps only k of the n rows, so a table shows where its Hessian numbers come from."""
    used = curvature_rows(rows)
    notes = []
    e = used[0]["curvature_epoch"] if used else None
    if any(e != r["last_epoch"] for r in used) or (used and epochs is not None and e != epochs):
        notes.append(f"epoch {e}")
    if used and len(used) < len(rows):
        notes.append(f"{len(used)} of {len(rows)} seeds")
    return f" ({', '.join(notes)})" if notes else ""


METRICS = (
    "final_train_loss",
    "final_val_acc",
    "top_eigenvalue",
    "trace",
    "trace_stderr",
    "grad_concentration",
    "train_time_s",
    "step_ms",
    "curvature_time_s",
)


#: The run_row fields averaged over every run, whatever its outcome: the cost of a step is measured
#: the same in a run that diverged or collapsed as in a healthy one.
COST_METRICS = ("step_ms",)


#: The :func:`failed` outcomes, in the order a cell's count names them ("stuck": no step accepted).
FAILED_SAID = {"collapsed": "collapsed", "stuck": "stuck", "diverged": "diverged"}


def failed(row: dict) -> str | None:
    """ "diverged", "stuck" or "collapsed" for a run (:func:`run_row`) whose numbers are not a
    result -- a diverged run's last ones are from before it diverged, a stuck run's are its initial
    weights' (every step rejected: "stuck" before "collapsed", which those weights may look like), a
    collapsed run's loss and accuracy are the uniform guess's -- else None."""
    if row["status"] == "diverged":
        return "diverged"
    return "stuck" if row.get("stuck") else "collapsed" if row.get("collapsed") else None


def kept(rows: list) -> list:
    """The rows a group's means pool: not :func:`failed`. A collapsed seed's chance accuracy and
    ln C loss averaged with the healthy seeds' made a mean no run had, unremarked."""
    return [r for r in rows if failed(r) is None]


def excluded_note(grp: dict) -> str:
    """' (1 collapsed, 2 diverged excluded)' for a group (:func:`groups`) whose means leave runs out, else ''."""
    ex = grp["excluded"]
    parts = [f"{n} {FAILED_SAID[what]}" for what, n in ex.items() if n]
    return f" ({', '.join(parts)} excluded)" if parts else ""


def groups(results: dict) -> list:
    """One entry per (optimizer, norm), in run order: its per-seed rows, a ``Stat`` per metric over
    the seeds that have it -- runs that diverged or collapsed (:func:`failed`) left out of all but
    ``COST_METRICS`` -- and ``excluded``: how many were left out, by outcome."""
    out: dict = {}
    for r in results["runs"]:
        row = run_row(r)
        out.setdefault((row["optimizer"], row["norm"]), []).append(row)
    res = []
    for (name, norm), rows in out.items():
        good = kept(rows)
        used, latest = curvature_rows(good), epoch_rows(good)  # (Hessian numbers / final ones of one epoch)
        pick = {
            m: used
            if m in CURVATURE_METRICS
            else latest
            if m in LAST_EPOCH_METRICS
            else rows
            if m in COST_METRICS
            else good
            for m in METRICS
        }
        stats = {m: stat(row[m] for row in pick[m]) for m in METRICS}
        excluded = {what: sum(failed(r) == what for r in rows) for what in FAILED_SAID}
        res.append({"optimizer": name, "norm": norm, "rows": rows, "stats": stats, "excluded": excluded})
    return res
