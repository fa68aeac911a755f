"""Fusion buckets: many gradient arrays packed into few flat buffers, one collective per buffer."""

from __future__ import annotations

from .. import _backend


class Bucket:
    """One flat buffer holding the gradients of ``index`` (parameter numbers) back to back."""

    __slots__ = ("flat", "index", "views")

    def __init__(self, index, params):
        self.index = list(index)
        p0 = params[0]
        xp = _backend.array_module(p0)
        total = sum(int(p.size) for p in params)
        with _backend._device_of(p0):
            self.flat = xp.zeros(total, dtype=p0.dtype)
        self.views, at = [], 0
        for p in params:
            self.views.append(self.flat[at : at + p.size].reshape(p.shape))
            at += p.size

    def pack(self, grads) -> None:
        for i, v in zip(self.index, self.views):
            g = grads[i]
            if g is not v:
                v[...] = g

    def unpack(self, grads) -> None:
        for i, v in zip(self.index, self.views):
            g = grads[i]
            if g is not v:
                g[...] = v


def _key(p):
    return ("cupy", p.device.id, str(p.dtype)) if _backend.is_cupy(p) else ("numpy", -1, str(p.dtype))


def make_buckets(params, bucket_bytes: int) -> list:
    """Buckets of at most ``bucket_bytes`` (an array larger than that gets one of its own).

    Parameters of one kind (NumPy / CuPy device, dtype) share buckets, in parameter order;
    the list is the same on every rank when the parameter layouts are (checked before).
    """
    open_: dict = {}
    buckets: list = []
    for i, p in enumerate(params):
        k = _key(p)
        cur = open_.get(k)
        nbytes = int(p.nbytes)
        if cur is not None and cur[1] + nbytes > bucket_bytes:
            buckets.append(cur[0])
            cur = None
        if cur is None:
            cur = ([], 0)
        cur = (cur[0] + [i], cur[1] + nbytes)
        open_[k] = cur
    buckets += [c[0] for c in open_.values()]
    buckets.sort(key=lambda ix: ix[0])
    return [Bucket(ix, [params[i] for i in ix]) for ix in buckets]
