"""``ShardedOptimizer``'s construction checks of the user's params and groups.

Each rank steps its own slice of the flat buffer with its own local optimizer, so everything
that decides how a slice is updated must agree across ranks: the arrays (``check_same_params``),
how they are grouped, each group's hyper-parameters and the low-precision options (compared at
construction and at every step by :mod:`.hyper_check`, which ``DistributedOptimizer`` shares).
A rank that disagrees would update its slice differently (one parameter with two different
updates, owned by two ranks), or enter a per-group collective of another length (AdaGrad-Norm's
``||g||^2``).
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._clip_checks import _span
from ..optim._lowp_config import _half_fmt
from . import sharded_state


def groups_of(params, where="params", first: int = 0) -> list:
    """The user's params as a list of group dicts (a list of arrays is one group)."""
    if isinstance(params, dict):
        raise TypeError(f"{where}: expected a list of arrays or a list of dicts, got a dict")
    if isinstance(params, np.ndarray) or _backend.is_cupy(params):
        params = [params]
    try:
        groups = list(params)
    except TypeError:
        raise TypeError(f"{where}: expected a list of arrays or a list of dicts, got {type(params).__name__}") from None
    if not groups:
        raise ValueError(f"{where}: got an empty parameter list")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    out = []
    for gi, g in enumerate(groups):
        if not isinstance(g, dict) or "params" not in g:
            raise TypeError(f"{where}[{gi}]: expected a dict with 'params'")
        out.append({**g, "params": _backend.as_list(g["params"], f"param_groups[{first + gi}]['params']")})
    return out


def check_params(params) -> None:
    """One kind, one dtype (a float the flat buffer can hold), one device, writable, distinct."""
    if not params:
        raise ValueError("params: no arrays to optimize")
    _backend.backend(("params", params))  # one kind
    dt = params[0].dtype
    for i, p in enumerate(params):
        if p.dtype not in (np.float32, np.float64) and _half_fmt(p.dtype) is None:
            raise TypeError(f"params[{i}]: expected float32, float64, float16 or bfloat16, got {p.dtype}")
        if p.dtype != dt:
            raise TypeError(
                f"params[{i}]: expected {dt} like params[0], got {p.dtype} (one flat buffer holds every parameter)"
            )
        if _backend.is_cupy(p) and p.device.id != params[0].device.id:
            raise ValueError(f"params[{i}]: on device {p.device.id}, params[0] on {params[0].device.id}")
        if isinstance(p, np.ndarray) and not p.flags.writeable:
            raise ValueError(f"params[{i}]: array is read-only")
    check_distinct(params)


def check_distinct(params) -> None:
    """Raise ValueError naming the later of two params that share memory (the same array twice, or
    overlapping views): each is copied back from its own slice of the flat buffer after a step, so
    one would overwrite the other's update (an unsharded optimizer refuses them too)."""
    spans: list = []
    seen: dict = {}
    for i, p in enumerate(params):
        j = seen.setdefault(id(p), i)
        if j != i:
            raise ValueError(f"params[{i}]: the same array as params[{j}] (a parameter appears twice)")
        lo, hi = _span(p, _backend.is_cupy(p))
        if hi > lo:
            spans.append((lo, hi, i))
    spans.sort()
    far = None  # the span reaching furthest so far
    for s in spans:
        if far is not None and s[0] < far[1]:
            i, j = max(s[2], far[2]), min(s[2], far[2])
            raise ValueError(f"params[{i}] shares memory with params[{j}] (aliasing arrays cannot be updated in place)")
        if far is None or s[1] > far[1]:
            far = s


def views_again(z) -> None:
    """A copied ShardedOptimizer's views (``params``, the gradient views, the local optimizer's
    slices) made again on its copied buffers (copied one by one they no longer see them)."""
    at, z.params = 0, []
    for p in z._user:
        z.params.append(z._flat[at : at + p.size].reshape(p.shape))
        at += p.size
    starts = np.cumsum([0] + [p.size for p in z._user[:-1]])
    z._gviews = [z._gflat[a : a + p.size].reshape(p.shape) for a, p in zip(starts, z._user)]
    base = z.rank * z.chunk
    z._local_grads = [z._shard[a - base : b - base] for a, b in z._slices if b > a]
    # the local optimizer's params: its copied slices replaced by views of the copied buffer
    opt, swap = z.optimizer, {}
    for gi, (a, b) in enumerate(z._slices):
        if b > a:
            for old in opt._group_params[gi][1]:
                swap[id(old)] = (old, z._flat[a:b])
    opt.__dict__.pop("_lowp_plans", None)  # (a cache of views of the old arrays)
    for k, v in list(vars(opt).items()):
        setattr(opt, k, sharded_state.swapped(v, swap, set()))
    opt._index_of = {(id(swap[key][1]) if key in swap else key): i for key, i in opt._index_of.items()}
