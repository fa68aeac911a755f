"""The arguments of ``from_mlp``'s operators checked before a product is written: the batches as
``(x, y)`` pairs, every batch and ``out`` before the first batch's product lands in ``out``, and
the arrays ``out`` must not overlap -- quiet as the MLP's methods are (:func:`_ieee_quiet`)."""

from __future__ import annotations

import functools

import numpy as np

from .. import _backend
from .._overlap import shares


def _check_batches(batches: list) -> None:
    """Each of ``batches`` an ``(x, y)`` pair of arrays, or TypeError naming ``batches[i]`` --
    instead of an unnamed unpacking or attribute error. Their shapes, dtypes and labels are checked
    by :func:`_check_data`. Foreign arrays (torch tensors, DLPack / array-interface exporters) are
    replaced by their views, in ``batches``."""
    for i, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            what = f"{len(batch)} items" if isinstance(batch, (tuple, list)) else type(batch).__name__
            raise TypeError(f"batches[{i}]: expected an (x, y) pair, got {what}")
        if any(map(_backend.is_foreign, batch)):
            batches[i] = batch = tuple(_backend.as_array(a, f"batches[{i}][{j}]") for j, a in enumerate(batch))
        bx, by = batch
        if not (hasattr(bx, "shape") and getattr(bx, "ndim", 0) >= 1 and hasattr(by, "shape")):
            raise TypeError(
                f"batches[{i}]: expected an (x, y) pair of arrays, got ({type(bx).__name__}, {type(by).__name__})"
            )


def _ieee_quiet(fn):
    """``fn`` without NumPy's floating-point warnings, as the MLP's methods (``nn.mlp._ieee``): non-finite
    values propagate. Its checks too: a float64 ``x`` past float32's range is inf in a float32 model's
    copy (``MLP.hvp``'s result), where NumPy warned "overflow encountered in cast" -- an error under
    ``-W error`` -- in a ``fixed=True`` operator's first product."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return call


@_ieee_quiet
def _check_data(model, params, batches: list, pair: bool) -> None:
    """Each batch with rows checked as its products check it (``MLP._check``: x's shape and dtype,
    y's rows, dtype and labels), when the operator is built: x with the wrong feature count, y with
    other rows or a label past the classes was taken, and raised at the first product -- inside
    whichever estimator or solver the operator was handed to. The products check again (the
    arrays' values may change in place: ``fixed=False`` reads them at each product). ``pair``: given
    as ``x, y`` (errors name them so), else named ``batches[i]'s x``. Empty batches are dropped
    (a rank's share may be none) and not checked."""
    for i, (bx, by) in enumerate(batches):
        if not int(bx.shape[0]):
            continue
        try:
            model._check(params, bx, by)
        except (TypeError, ValueError) as e:
            if pair:
                raise
            raise type(e)(f"batches[{i}]'s {e}") from None


@_ieee_quiet
def _ready(model, params, batches: list, v, out) -> None:
    """Before a product over ``batches`` is written into ``out``: the arguments of every batch after
    the first checked (``MLP._check``, as its product will), and ``out`` sharing no memory with the
    arrays of any (read after the first batch's product is in ``out``). TypeError / ValueError."""
    for bx, by in batches[1:]:
        model._check(params, bx, by, v)
    _apart(out, batches)


def _callers(params, batches: list) -> dict:
    """The caller's arrays an ``out`` must not overlap, named as the full product's errors name them."""
    named = {"params": params}
    for i, (bx, by) in enumerate(batches):
        where = "" if i == 0 else f"batches[{i}]'s "
        named[f"{where}x"], named[f"{where}y"] = bx, by
    return named


def _apart(out, batches: list) -> None:
    """ValueError naming ``out`` when it shares memory with the x or y of any batch after the first
    (the first batch's are checked by its product, ``MLP._product_out``)."""
    for i, (bx, by) in enumerate(batches[1:], 1):
        for name, a in (("x", bx), ("y", by)):
            if shares(out, a):
                raise ValueError(f"out shares memory with batches[{i}]'s {name}")
