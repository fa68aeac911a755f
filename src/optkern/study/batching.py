"""A study run's batches: the rows per step of each optimizer, the slices of an epoch, and the
loss and accuracy over a dataset in batches (runner.py re-exports them)."""

from __future__ import annotations

from .config import StudyConfig
from .methods import OPTIMIZERS


def batch_rows(name: str, cfg: StudyConfig, n: int) -> int:
    """Rows per step of ``name``'s runs on ``n`` training rows."""
    kind = OPTIMIZERS[name].batch
    return n if kind == "full" else min(cfg.large_batch if kind == "large" else cfg.batch_size, n)


def batches(n: int, size: int) -> list:
    """Slices of at most ``size`` rows covering ``range(n)``. A trailing batch
    of one row joins the one before it: batch norm cannot normalize a single
    row, and dropping it would lose a sample."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [n])]


def warmup_steps(fraction: float, total: int) -> int | None:
    """Warm-up steps of a scheduled run of ``total`` steps: ``fraction`` of them, at least one and
    short of the total; None for a run of one step, which takes no schedule (it steps at the peak
    learning rate). The runs (runner.train_run) and report.md's words (report._schedule) read it."""
    if total <= 1:
        return None
    return min(max(1, int(fraction * total)), total - 1)


def evaluate(model, params, x, y, batch: int = 1024):
    """Mean loss and accuracy over (x, y), in batches (eval-free: the model has
    no dropout and batch norm uses the batch's statistics)."""
    n = x.shape[0]
    tot_loss = 0.0
    correct = 0.0
    for sl in batches(n, batch):
        xb, yb = x[sl], y[sl]
        m = xb.shape[0]
        tot_loss += float(model.loss(params, xb, yb)) * m
        correct += float(model.accuracy(params, xb, yb)) * m
    return tot_loss / n, correct / n
