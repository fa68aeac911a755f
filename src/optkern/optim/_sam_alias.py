"""SAM's gradients in its params' memory (a closure of |w|^2 / 2 returning ``w`` itself), taken as
the reference SAM (davda54/sam) takes them: its ascent reads the gradients before any param moves
(``e_w = p.grad * scale`` before ``p.add_(e_w)``), and its return to ``w`` rebinds the params'
memory, the gradient keeping the ascent point's values for the wrapped optimizer. optkern's kernels
move and restore the params in place, so such a gradient is read through a copy."""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._array_checks import byte_span
from .._overlap import exact_for_numpy, in_spans


def root(a):
    """The object at the end of ``a``'s ``base`` chain: the array (or buffer) owning its memory.
    Arrays over one memory have one root, unless made over it separately (``np.frombuffer``)."""
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def copy_shared(grads: list, params: list, param_spans, roots) -> list:
    """``grads`` (checked; None: no gradient) with a copy of each one whose memory overlaps one of
    the ``params`` (``param_spans``: their non-empty ones' ``(first byte, end, name)``); ``grads``
    itself when none does. Spans that meet are decided by ``_overlap.shares``: exactly for NumPy
    arrays up to a work bound (a gradient interleaved with its param, ``a[1::2]`` beside ``a[::2]``,
    shares nothing; past the bound, shared), and as they are otherwise (CuPy: a copy too many, never
    one too few). ``roots``: ``id(root(p))`` of the
    params: a NumPy array over another memory (a fresh gradient) is not spanned (a byte span costs
    ~2 us an array); others (foreign arrays' views too) are."""
    at, spans, arrays = [], [], []
    for i, g in enumerate(grads):
        if g is None:
            continue
        a = _backend.as_array(g, "grads")
        if a.nbytes and (a is not g or type(a) is not np.ndarray or id(root(a)) in roots):
            at.append(i)
            spans.append(byte_span(a))
            arrays.append(a)
    if not at:
        return grads
    lo, hi = (np.array([s[k] for s in param_spans], np.int64) for k in (0, 1))
    glo, ghi = (np.array([s[k] for s in spans], np.int64) for k in (0, 1))
    shared = [at[j] for j in exact_for_numpy(list(in_spans(lo, hi, glo, ghi)), arrays, params)]
    if not shared:
        return grads
    grads = list(grads)
    for i in shared:
        a = _backend.as_array(grads[i], "grads")
        with _backend._device_of(a):  # (a CuPy copy is made on the current device)
            grads[i] = a.copy()
    return grads
