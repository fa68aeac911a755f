"""Batch-norm running statistics recomputed for averaged weights (``optkern.swa.update_bn``).

An SWA or EMA average of the weights was never the model that produced the running
statistics its ``BatchNorm`` layers hold: they must be measured again on the training data
before evaluation (Izmailov et al. 2018, section 3.2). Same procedure as
``torch.optim.swa_utils.update_bn``: reset every layer's statistics, set its momentum to
None (the cumulative average over the batches), run the data through the model in training
mode, restore the momenta.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Callable

from .data import BatchLoader
from .norm.modules import BatchNorm

__all__ = ["update_bn"]


def _batch_norms(modules) -> list[BatchNorm]:
    mods = [modules] if isinstance(modules, BatchNorm) else modules
    if not isinstance(mods, (list, tuple)):
        raise TypeError(f"modules: expected a BatchNorm or a list of them, got {type(modules).__name__}")
    for i, m in enumerate(mods):
        if not isinstance(m, BatchNorm):
            raise TypeError(f"modules[{i}]: expected an optkern.norm.BatchNorm, got {type(m).__name__}")
    if len({id(m) for m in mods}) != len(mods):
        raise ValueError("modules: names a BatchNorm twice")
    return [m for m in mods if m.running_mean is not None]  # layers without running statistics: nothing to do


def _check_measured(modules) -> None:
    """ValueError naming the first layer (with running statistics) that counted no batch of a pass
    that read some: ``forward`` ran it in evaluation mode (``training=False``) or not at all. torch's
    update_bn puts the model in training mode itself; here ``forward`` picks the mode, and such a
    layer ended with the reset statistics (mean 0, variance 1), the ones it had lost without a word."""
    one = isinstance(modules, BatchNorm)
    for i, m in enumerate([modules] if one else modules):
        if m.running_mean is not None and m.num_batches_tracked == 0:
            raise ValueError(
                f"{'modules' if one else f'modules[{i}]'}: forward ran no batch through this BatchNorm in "
                "training mode (bn(h, training=True)); its statistics are left as they were"
            )


def update_bn(batches: Iterable, forward: Callable, modules) -> None:
    """Recompute the running statistics of ``modules`` over ``batches``.

    Args:
      batches: an iterable of inputs; an item that is a tuple or list gives its first element
        (a loader of ``(x, y)`` pairs works as is; an :class:`optkern.data.BatchLoader` gives its
        current epoch's batches, its epoch and position unchanged).
      forward: ``forward(x)`` runs the model on one input with its ``BatchNorm`` layers in
        training mode (``bn(h, training=True)``); its result is ignored.
      modules: the model's ``optkern.norm.BatchNorm`` layers (one or a list); layers built with
        ``track_running_stats=False`` are left alone; with none at all (``[]``) the batches are
        not read, as torch's update_bn returns for a model without BatchNorm layers.

    Each layer ends with the average of the per-batch statistics (mean, unbiased variance) and
    ``num_batches_tracked`` = the number of batches, its momentum as before. If ``forward`` or the
    iteration raises, every layer's statistics and momentum are restored and the error propagates;
    so they are when a layer counted no batch of a pass that read some (``forward`` ran it with
    ``training=False``, or not at all): ValueError naming it.

    ``optkern.nn.MLP`` normalizes with the statistics of the batch in hand, in training and
    evaluation alike: it holds no running statistics, so its averaged params need no update.
    """
    mods = _batch_norms(modules)
    if not callable(forward):
        raise TypeError(f"forward: expected a callable forward(x), got {type(forward).__name__}")
    if not hasattr(batches, "__iter__"):
        raise TypeError(f"batches: expected an iterable of inputs, got {type(batches).__name__}")
    if getattr(batches, "ndim", None) == 0:  # has __iter__, but iterating raised NumPy's unnamed TypeError
        raise TypeError(f"batches: expected an iterable of inputs, got a 0-d {type(batches).__name__}")
    if not isinstance(modules, BatchNorm) and len(modules) == 0:  # (a list or tuple: _batch_norms)
        # torch's update_bn returns before it reads the loader when the model has no BatchNorm
        # layer: a pass over the whole training set for nothing, otherwise. (Layers that keep no
        # running statistics still see the data, as torch's: it iterates for those too.)
        return
    saved = [(m.momentum, m.running_mean.copy(), m.running_var.copy(), m.num_batches_tracked) for m in mods]
    try:
        for m in mods:
            m.reset_running_stats()
            m.momentum = None
        read = False
        # a BatchLoader's epoch read without iterating the loader: that counted a training epoch (the
        # run's next shuffle another, a batch-size schedule's milestones early) and, inside the
        # training loop, went on from its position and ended its epoch (torch's DataLoader keeps none)
        for item in batches.batches() if isinstance(batches, BatchLoader) else batches:
            read = True
            forward(item[0] if isinstance(item, (tuple, list)) else item)
        if read:
            _check_measured(modules)
    except BaseException:
        for m, (_, mean, var, n) in zip(mods, saved):
            m.running_mean[...] = mean
            m.running_var[...] = var
            m.num_batches_tracked = n
        raise
    finally:
        for m, (momentum, *_) in zip(mods, saved):
            m.momentum = momentum
