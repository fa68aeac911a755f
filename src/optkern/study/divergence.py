"""When a study run has diverged, from its training loss per epoch.

The rule was "not finite, or above 1000x the start": a run that ended at 869x its start loss (a
10-class cross-entropy of ~2000 nats, far worse than the initial weights' guess) was reported
"done", its final loss and accuracy averaged with the healthy runs'. Now the loss must stay
within ``FACTOR`` x the start (4x, the threshold PyTorch Lightning's and fastai's learning-rate
finders stop at); a healthy run may spike past it for fewer than ``PATIENCE`` epochs in a row
(a warmup's or a large step's transient), but not at its last epoch, which is the result the
report gives. A loss that is not finite, or above ``CEILING`` x the start, ends the run at once
(no healthy run comes back from there, and more epochs only overflow).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

FACTOR = 4.0
PATIENCE = 2
CEILING = 1e3


def diverged_at(losses: Sequence[float], last: bool) -> int | None:
    """The epoch a run diverged at, or None while it has not.

    Args:
      losses: the training loss of epochs ``0..e`` (``losses[0]``: the start's), ``e`` the epoch
        just trained.
      last: whether epoch ``e`` is the run's last.

    Returns the first epoch of the run's closing streak above ``FACTOR`` x the start, once that
    streak is ``PATIENCE`` epochs long or reaches the last epoch; ``e`` for a loss that is not
    finite or above ``CEILING`` x the start.
    """
    start, e = float(losses[0]), len(losses) - 1
    x = float(losses[e])
    if not math.isfinite(x) or x > CEILING * start:
        return e
    streak = 0
    while streak < e and float(losses[e - streak]) > FACTOR * start:
        streak += 1
    if streak and (streak >= PATIENCE or last):
        return e - streak + 1
    return None


def cut_at(record: dict, epoch: int) -> None:
    """Drop a run ``record``'s measurements of epochs ``>= epoch``, in place: a run found diverged
    after ``PATIENCE`` epochs above its bound has them logged, yet it diverged at the first of them
    (and the report reads a diverged run's history as ending at the epoch before it diverged)."""
    hist = record["history"]
    keep = sum(1 for e in hist["epoch"] if e < epoch)
    for k in hist:
        del hist[k][keep:]
    for key in ("curvature", "curvature_failed"):
        if key in record:
            record[key][:] = [c for c in record[key] if c["epoch"] < epoch]


def stuck(start, end) -> bool:
    """Whether a run that finished never moved its parameters: ``end`` (its final parameters) equal
    ``start`` (its initial ones) element for element. Newton-CG with a step too long for its line
    search (``--lr newton-cg=1e6``) rejects every step: its final loss is the initial one, yet it
    was reported "done" and averaged with the runs that trained."""
    return bool((start == end).all())


#: How many binomial standard errors from chance a collapsed run's accuracy may lie: 3 keeps a
#: dead network on a validation set of a few hundred samples (whose accuracy is chance plus noise)
#: while any run that learned something (a few points above chance) is outside it.
CHANCE_SE = 3.0


def collapsed(final_loss: float, final_acc: float, num_classes: int, num_val: int, shares=None) -> bool:
    """Whether a run that finished (within the divergence bound) ended as a dead network.

    A high-learning-rate run can kill its network (every ReLU off, or the logits pinned) without
    its loss ever leaving ``FACTOR`` x the start: it ends at the uniform guess's loss, ln C, with
    chance accuracy 1 / C. Such a run is not "done" like a healthy one. It is collapsed when its
    final training loss is at or above ln C (no better than guessing: a live network below it has
    learned something) AND its final validation accuracy lies within ``CHANCE_SE`` binomial
    standard errors ``sqrt(p (1 - p) / num_val)`` of chance ``p = 1 / C`` or of one of ``shares``
    (each class's share of the validation set): a dead network predicts one class for every sample,
    whose accuracy is that class's share -- 1 / C on balanced classes only (on a user's unbalanced
    --data, a dead run was "done" at the majority class's accuracy, averaged with the healthy ones).
    """
    if num_classes < 2 or num_val < 1:
        return False
    loss, acc = float(final_loss), float(final_acc)
    if not (math.isfinite(loss) and math.isfinite(acc)):
        return False
    if loss < math.log(num_classes):
        return False
    chances = [1.0 / num_classes, *(float(p) for p in (shares if shares is not None else ()))]
    return any(abs(acc - p) <= CHANCE_SE * math.sqrt(p * (1.0 - p) / num_val) for p in chances)
