"""Fusion buckets: small gradient arrays packed into few flat buffers, one collective per buffer;
large ones reduced where they lie.

The sequence of collectives depends on the parameter layout only (checked equal on every
rank), never on the arrays a rank passes: a direct bucket makes its one call whether its
gradient is reduced in place or through its buffer.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from .. import _backend
from .._array_checks import byte_span
from ._arrays import _IEEE, _overlap
from ._arrays import _is_half_bits as _is_half


class Bucket:
    """The gradients of ``index`` (parameter numbers), reduced by one collective.

    Packed (several params): a flat buffer holds them back to back; gradients that are not
    already its views are copied in and the results copied out (a mean's division and a
    weight's product done by those copies, not by passes of their own). Direct (one param of
    at least the direct size): its gradient is reduced in place when it is C-contiguous,
    saving both copies; the buffer exists only once needed (:attr:`views` asked for, or a
    strided gradient).
    """

    __slots__ = ("index", "direct", "_like", "_shapes", "_flat", "_views", "slot")

    def __init__(self, index, params, direct: bool = False):
        self.index = list(index)
        self.slot = {i: k for k, i in enumerate(self.index)}  # param number -> its place here
        self.direct = direct
        self._like = params[0]
        self._shapes = [tuple(p.shape) for p in params]
        self._flat = None
        self._views: list | None = None
        if not direct:
            self._make()

    def _make(self) -> None:
        p0 = self._like
        xp = _backend.array_module(p0)
        with _backend._device_of(p0):
            self._flat = xp.zeros(sum(math.prod(int(d) for d in s) for s in self._shapes), dtype=p0.dtype)
        self._views = self._views_of(self._flat)

    def _views_of(self, flat) -> list:
        views, at = [], 0
        for shape in self._shapes:
            n = math.prod(int(d) for d in shape)
            views.append(flat[at : at + n].reshape(shape))
            at += n
        return views

    # A copy (copy.deepcopy, pickle) copied the views one by one: arrays of their own, no longer in the
    # copied buffer, so the copy packed the gradients into them, reduced its stale buffer and copied
    # them back unreduced (no average at all, silently). They are made again on the copied buffer.
    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__ if k != "_views" and hasattr(self, k)}

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple):  # (pickled before: slots' default state, its views left detached)
            state = {**(state[0] or {}), **state[1]}
        for k, v in state.items():
            setattr(self, k, v)
        if not hasattr(self, "slot"):
            self.slot = {i: k for k, i in enumerate(self.index)}
        self._views = None if self._flat is None else self._views_of(self._flat)

    @property
    def flat(self):
        """The flat buffer (made on first use for a direct bucket)."""
        if self._flat is None:
            self._make()
        return self._flat

    @property
    def views(self) -> list:
        """One view of :attr:`flat` per param, in its shape."""
        if self._views is None:
            self._make()
        assert self._views is not None
        return self._views

    def allocated(self) -> int:
        """Bytes of buffer this bucket holds now."""
        return 0 if self._flat is None else int(self._flat.nbytes)

    def pack(self, grads, weight=None) -> None:
        """Copies ``grads`` (times ``weight``) into the buffer; views of it are scaled in place."""
        if self._all_views(grads):  # the whole buffer at once
            if weight is not None:
                flat = self.flat
                flat *= flat.dtype.type(weight)
            return
        xp = _backend.array_module(self._like)
        for i, v in zip(self.index, self.views):
            g = grads[i]
            if g is v:
                if weight is not None:
                    v *= v.dtype.type(weight)
                continue
            v = _shaped(v, g)
            if weight is not None:
                xp.multiply(g, v.dtype.type(weight), out=v)
            else:
                v[...] = g

    def unpack(self, grads, divisor: int = 1) -> None:
        """Copies the buffer back into ``grads`` (divided by ``divisor``); views are divided in place."""
        if self._all_views(grads):
            if divisor != 1:
                flat = self.flat
                flat /= flat.dtype.type(divisor)
            return
        xp = _backend.array_module(self._like)
        for i, v in zip(self.index, self.views):
            g = grads[i]
            if divisor == 1:
                if g is not v:
                    g[...] = _shaped(v, g)
            else:
                xp.divide(_shaped(v, g), v.dtype.type(divisor), out=g)

    @_IEEE  # (a weighted product past the range on one rank raised there, the others left in the allreduce)
    def reduce(self, comm, grads, op: str, weight=None) -> None:
        """``grads[i]`` for ``i`` in :attr:`index` replaced by their reduction over the ranks: ``op``
        ``"sum"`` or ``"mean"``, each rank's gradients times ``weight`` first (None: 1)."""
        if weight is not None and _is_half(grads[self.index[0]]):
            self._reduce_weighted_half(comm, grads, weight)
            return
        if self.direct:
            g = grads[self.index[0]]
            if g.flags.c_contiguous:
                if weight is not None:
                    g *= g.dtype.type(weight)
                comm.allreduce(g, op, check=False)  # a mean divides after the sum, as unpack does
                return
        self.pack(grads, weight)
        if op == "mean" and _is_half(self.flat):
            # 16-bit floats are summed in float32 and rounded once (Communicator.allreduce): a sum
            # rounded to bfloat16 and then divided rounds twice, unlike a direct bucket and ZeRO-1's
            # reduce-scatter (a last bit apart at 3 ranks), and a float16 sum past 65504 is inf where
            # the mean is finite (2 ranks near 40000). The mean divides in float32 instead.
            comm.allreduce(self.flat, "mean", check=False)
            self.unpack(grads)
            return
        comm.allreduce(self.flat, "sum", check=False)
        self.unpack(grads, comm.size if op == "mean" else 1)

    def _reduce_weighted_half(self, comm, grads, weight) -> None:
        """16-bit gradients times ``weight``, summed over the ranks in float32 and rounded once, as
        their mean is (the same one collective): the weight rounded to the 16-bit type, each product
        rounded there and, on the ordered path, each rank's addition rounded in float16 were up to
        an ulp or two off the weighted sum."""
        g = grads[self.index[0]]
        target = g if self.direct and g.flags.c_contiguous else None
        if target is None:
            self.pack(grads)
            target = self.flat
        w32 = target.astype(np.float32)
        w32 *= np.float32(weight)
        comm.allreduce(w32, "sum", check=False)
        target[...] = w32.astype(target.dtype)
        if target is not g:
            self.unpack(grads)

    def _all_views(self, grads) -> bool:
        return all(grads[i] is v for i, v in zip(self.index, self.views))


def _shaped(v, g):
    """The buffer's view ``v`` in the shape of its gradient ``g``: a param reshaped in place since
    the buckets were made (``p.shape = ...``: the same elements in the same C order, which the
    wrapped optimizer steps as such) has its gradients in the new shape, and the copies raised
    NumPy's broadcast error after the ranks had agreed on the step (on the ranks that reshaped:
    a rank alone with it left the others waiting in the allreduce forever)."""
    return v if v.shape == g.shape else v.reshape(g.shape)


def _key(p):
    return ("cupy", p.device.id, str(p.dtype)) if _backend.is_cupy(p) else ("numpy", -1, str(p.dtype))


def make_buckets(params, bucket_bytes: int, direct_bytes: float = float("inf")) -> list:
    """Buckets of at most ``bucket_bytes`` (an array larger than that gets one of its own);
    arrays of at least ``direct_bytes`` get a direct bucket each.

    Parameters of one kind (NumPy / CuPy device, dtype) share buckets, in parameter order;
    the list is the same on every rank when the parameter layouts are (checked before).
    """
    open_: dict = {}
    groups: list = []  # (indices, direct)
    for i, p in enumerate(params):
        nbytes = int(p.nbytes)
        if nbytes > 0 and nbytes >= direct_bytes:
            groups.append(([i], True))
            continue
        k = _key(p)
        cur = open_.get(k)
        if cur is not None and cur[1] + nbytes > bucket_bytes:
            groups.append((cur[0], False))
            cur = None
        if cur is None:
            cur = ([], 0)
        cur = (cur[0] + [i], cur[1] + nbytes)
        open_[k] = cur
    groups += [(c[0], False) for c in open_.values()]
    groups.sort(key=lambda g: g[0][0])
    return [Bucket(ix, [params[i] for i in ix], direct) for ix, direct in groups]


def check_slots(buckets: list, grads: list) -> None:
    """ValueError naming the first of ``grads`` that shares memory with a fusion buffer other than
    as its own param's view (``grad_buffers()`` views passed for other params, swapped or sliced):
    the packing copied one gradient over another's slot before reading that one, and the unpacking
    wrote results over slots still to be reduced, silently. Tested by :func:`_arrays._overlap`.

    Which gradients are tested: a NumPy view of a buffer (its ``base`` the buffer) not in its own
    place, and any array whose memory may be a buffer's without such a base -- a NumPy view of a
    torch tensor (``torch.from_numpy(grad_buffers()[j])`` passed for another param: its base the
    tensor) or a CuPy array (a torch CUDA tensor's DLPack view has no base): those by their
    address. A NumPy array owning its memory, or viewing another that does, cannot lie in a buffer:
    a lookup of its base and no more (a span for every gradient cost ~1-9 us each: 1000 arrays a
    step)."""
    flats = {id(b.flat): b for b in buckets if b.allocated()}
    if not flats:
        return
    spans = None  # (the buffers' byte spans, sorted: made once a call, when a gradient needs them)
    owners: set[int] = set()  # (ids of the NumPy arrays seen owning their memory, no buffer: one flags read each)
    for i, g in enumerate(grads):
        base = getattr(g, "base", None)
        if base is None and type(g) is np.ndarray:  # (owns its memory)
            continue
        b = flats.get(id(base))
        if b is not None:
            if i in b.slot and g is b.views[b.slot[i]]:
                continue
            found = [b]
        elif isinstance(g, np.ndarray) and _numpy_owner(base, owners):
            continue  # (NumPy's views name the array owning their memory: a buffer would be that owner)
        else:  # (memory another library owns, or CuPy's: by address)
            if spans is None:
                spans = _flat_spans(flats.values())
            found = _meeting(spans, g)
        for b in found:
            for j, v in zip(b.index, b.views):
                if j != i and _overlap(g, v):
                    raise ValueError(
                        f"grads[{i}]: shares memory with the fusion buffer of params[{j}] (grad_buffers()[{j}]: "
                        "pass each view for its own param, or arrays of their own)"
                    )


def _flat_spans(buckets) -> dict:
    """The allocated buffers' byte spans by backend (CuPy's addresses are the device's, NumPy's the
    host's: never compared): ``{is_cupy: (sorted starts, [(end, bucket)] alike)}``. The buffers are
    allocations of their own: their spans are disjoint, so a gradient's span meets a run of them
    found by bisection (testing every buffer for every gradient cost 13 ms a step for 1000 torch
    gradients in one buffer, ~0.5 s in 63)."""
    by: dict = {}
    for b in buckets:
        if b.flat.size:
            lo, hi = byte_span(b.flat)
            by.setdefault(_backend.is_cupy(b.flat), []).append((lo, hi, b))
    out = {}
    for k, rows in by.items():
        rows.sort(key=lambda r: r[0])
        out[k] = ([r[0] for r in rows], [(r[1], r[2]) for r in rows])
    return out


def _meeting(spans: dict, g) -> list:
    """The buckets of ``spans`` (:func:`_flat_spans`) whose buffer's byte span meets ``g``'s."""
    row = spans.get(_backend.is_cupy(g))
    if row is None or g.size == 0:
        return []
    starts, ends = row
    lo, hi = byte_span(g)
    k = max(bisect.bisect_right(starts, lo) - 1, 0)  # (the last buffer starting at or before g)
    found = []
    while k < len(starts) and starts[k] < hi:
        if ends[k][0] > lo:
            found.append(ends[k][1])
        k += 1
    return found


def _numpy_owner(base, owners: set) -> bool:
    """Whether ``base`` is a NumPy array owning its memory (``owners``: the ids of those seen so far,
    kept alive by the gradients viewing them)."""
    if id(base) in owners:
        return True
    if isinstance(base, np.ndarray) and base.flags.owndata:
        owners.add(id(base))
        return True
    return False
