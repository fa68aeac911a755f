"""The memory-overlap checks of one optkern.torch step (``_checks_step._StepChecks``): the byte
spans of dense tensors, the check that no written span overlaps another or a read one, and the
sorted spans of a step's written tensors that its grads are checked against. Their getters are
here too; ``_checks_step`` imports the ones it shares."""

from __future__ import annotations

import bisect
import operator

import numpy as np
import torch

# (unbound methods and getters: one call each per tensor in the per-step checks)
_nbytes = operator.attrgetter("nbytes")
_element_size = torch.Tensor.element_size
_shape = operator.attrgetter("shape")
# (a grad's dtype, shape and whether in host memory: one look at each grad, where three passes over
# 200 of them cost ~60 us a step; its size in bytes follows from the first two)
_grad_sig = operator.attrgetter("dtype", "shape", "is_cpu")


def _span(t: torch.Tensor, name: str) -> tuple:
    """(device, first byte, one past the last, name) of a dense tensor's memory (contiguous in some
    order of its dims: its elements fill the bytes from data_ptr on)."""
    lo = t.data_ptr()
    return (t.device, lo, lo + t.numel() * t.element_size(), name)


def _check_overlaps(written: list, read: list) -> None:
    """ValueError naming a written span (``_span``) that overlaps another, or a read span that
    overlaps a written one: aliasing tensors cannot be updated in place."""
    written = sorted(written, key=lambda s: (str(s[0]), s[1]))
    starts = [(str(w[0]), w[1]) for w in written]
    reach: list = []  # reach[k]: the span reaching furthest among the first k + 1 (of one device)
    for k, w in enumerate(written):
        prev = written[reach[-1]] if k and written[reach[-1]][0] == w[0] else None
        if prev is not None and prev[2] > w[1]:
            raise ValueError(f"{w[3]} shares memory with {prev[3]} (aliasing arrays cannot be updated in place)")
        reach.append(k if prev is None or w[2] >= prev[2] else reach[-1])
    for r in read:
        k = bisect.bisect_left(starts, (str(r[0]), r[2]))  # written spans of the device starting below r's end
        if k and written[reach[k - 1]][0] == r[0] and written[reach[k - 1]][2] > r[1]:
            w = written[reach[k - 1]]
            raise ValueError(f"{r[3]} shares memory with {w[3]} (aliasing arrays cannot be updated in place)")


def _written_spans(work: list, hits: list) -> tuple:
    """(``hits``, the sorted first bytes of the step's params and state tensors, the furthest end
    reached among the first k + 1, and the params' (dtype, shape, True) (``_grad_sig``'s of a CPU
    grad like it), sizes in bytes, item sizes and the indices of complex ones, in the step's
    order): what ``_grads_ok`` checks grads against."""
    spans = []
    runs = [ps for *_, rs in work for ps in rs]
    params = [p for ps in runs for p in ps]
    for ps, hit in zip(runs, hits):
        names = hit[0][0]
        ts = list(ps) + [st[n] for st in hit[5] for n in names]
        spans += [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in ts if t.numel()]
    spans.sort()
    lo = np.array([a for a, _ in spans], np.int64)
    reach = np.maximum.accumulate(np.array([b for _, b in spans], np.int64)) if spans else np.zeros(0, np.int64)
    nbytes = np.array(list(map(_nbytes, params)), np.int64)
    itemsizes = np.array(list(map(_element_size, params)), np.int64)
    cx = [k for k, p in enumerate(params) if p.is_complex()]
    sigs = [(p.dtype, p.shape, True) for p in params]
    return tuple(hits), lo, reach, sigs, nbytes, itemsizes, cx
