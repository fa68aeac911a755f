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

from collections.abc import Iterator

import numpy as np

from .. import _backend
from .._array_checks import first_sharing
from ..optim import _given
from ..optim._lowp_config import LOWP_KEYWORDS, _half_fmt
from . import sharded_copy, sharded_state


def groups_of(params, where="params", first: int = 0) -> tuple[list, list]:
    """(the user's params as a list of group dicts (a list of arrays is one group), their params as
    given, one list: the torch tensors among them are followed to new memory and bumped, each step
    writes them through views autograd does not see)."""
    if isinstance(params, dict):
        raise TypeError(f"{where}: expected a list of arrays or a list of dicts, got a dict")
    if _backend.is_array(params):  # (one array is one param; a torch tensor iterated gave its rows)
        params = [params]
    try:
        groups = list(params)
    except TypeError:
        raise TypeError(f"{where}: expected a list of arrays or a list of dicts, got {type(params).__name__}") from None
    if not groups:
        raise ValueError(f"{where}: got an empty parameter list")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    out, given = [], []
    for gi, g in enumerate(groups):
        if not isinstance(g, dict) or "params" not in g:
            raise TypeError(f"{where}[{gi}]: expected a dict with 'params'")
        raw = g["params"]
        raw = list(raw) if isinstance(raw, Iterator) else raw  # (read once: model.parameters())
        out.append({**g, "params": _backend.as_list(raw, f"param_groups[{first + gi}]['params']")})
        given += list(raw) if isinstance(raw, (list, tuple)) else [raw]
    return out, given


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
            raise _backend.read_only(f"params[{i}]", p)
    check_distinct(params)


def check_distinct(params) -> None:
    """Raise ValueError naming the later of two params that share memory (the same array twice, or
    overlapping views): each is copied back from its own slice of the flat buffer after a step, so
    one would overwrite the other's update (an unsharded optimizer refuses them too). Views that
    interleave without sharing an element (a matrix's column blocks, ``a[::2]`` and ``a[1::2]``)
    are distinct params: each is written back element by element."""
    seen: dict = {}
    for i, p in enumerate(params):
        j = seen.setdefault(id(p), i)
        if j != i:
            raise ValueError(f"params[{i}]: the same array as params[{j}] (a parameter appears twice)")
    pair = first_sharing(params)
    if pair is not None:
        j, i = pair
        raise ValueError(f"params[{i}] shares memory with params[{j}] (aliasing arrays cannot be updated in place)")


def align_of(hyper: dict) -> int:
    """What each param's flat offset and the slices' bounds are multiples of: the 8-bit states'
    block (``state_dtype="int8"``, quantized per block of each param), else 1. A bad
    ``block_size`` gives 1: the local optimizer refuses it, naming it."""
    fmt, block = hyper.get("state_dtype"), hyper.get("block_size", LOWP_KEYWORDS["block_size"])
    if not (isinstance(fmt, str) and fmt == "int8"):
        return 1
    if isinstance(block, (int, np.integer)) and not isinstance(block, bool) and 64 <= block <= 4096:
        return int(block) if not block & (block - 1) else 1
    return 1


def layout(params, align: int, world: int) -> tuple[list[int], int, int]:
    """(each param's offset in the flat buffer, the end of the last, each rank's ``chunk``).

    The params lie back to back; with 8-bit states (``align``: the block) ``chunk`` is whole
    blocks and a param that a rank boundary cuts starts at a block multiple, so that the piece
    past the boundary starts at one of its blocks (the gap before it holds zeros: no gradient, no
    update). At most ``world - 1`` gaps: aligning every param cost up to ``align - 1`` elements
    per param (1000 params of 10 elements filled 256000)."""
    sizes = [int(p.size) for p in params]
    chunk = chunk_of(sum(sizes), world, align)
    while True:
        offs, at = [], 0
        for n in sizes:
            if align > 1 and n and at // chunk != (at + n - 1) // chunk:  # (chunk > 0 where n > 0)
                at = -(-at // align) * align
            offs.append(at)
            at += n
        if at <= chunk * world:
            return offs, at, chunk
        chunk += align  # (the gaps pushed the end past the last rank's slice)


def chunk_of(span: int, world: int, align: int) -> int:
    """Each rank's share of ``span`` flat elements: whole multiples of ``align`` (the last ranks'
    slices hold the padding)."""
    share = -(-span // world)  # (ceil)
    return -(-share // align) * align


def pieces_of(a: int, b: int, params, offs, align: int) -> list[tuple[int, int]]:
    """The local optimizer's arrays for a group's slice ``[a, b)`` of the flat buffer (``params``,
    ``offs``: the group's): the slice as one array; with 8-bit states (``align > 1``) each param's
    piece of it as an array of its own, quantized in blocks from its own first element as the
    unsharded optimizer quantizes the param (a piece starts at the param's element 0 or at a rank
    boundary, a block multiple past it)."""
    if b <= a:
        return []
    if align == 1:
        return [(a, b)]
    cuts = [(max(o, a), min(o + int(p.size), b)) for p, o in zip(params, offs)]
    return [(c, e) for c, e in cuts if c < e]


def element_numbering(arrays, params, offs) -> tuple[list[int], dict]:
    """(each local param's first Philox counter, ``{local param: its pieces}`` where its numbering
    jumps): the counters of the unsharded optimizer, which numbers the params' elements back to
    back, while the flat buffer may leave gaps between them (``arrays``: the local params' flat
    ranges, in order). A range of several params is cut at each param's flat offset into pieces
    ``(first, stop, counter of first)`` in local coordinates; the gaps' zeros continue the piece
    before them."""
    starts, runs, k = [], {}, 0
    firsts = [int(a) for a in np.cumsum([0] + [int(p.size) for p in params[:-1]])]
    for a, b in arrays:
        if b <= a:
            continue
        pieces = []
        for p, o, u in zip(params, offs, firsts):
            if p.size and o < b and o + p.size > a:
                at = max(o, a)
                pieces.append((at - a, u + at - o))
        pieces = pieces or [(0, a)]
        starts.append(pieces[0][1])
        if any(c - s != pieces[0][1] - pieces[0][0] for s, c in pieces):
            stops = [s for s, _ in pieces[1:]] + [b - a]
            runs[k] = [(s, e, c) for (s, c), e in zip(pieces, stops)]
        k += 1
    return starts, runs


def own_pieces(params, offs, lo: int, hi: int) -> list:
    """``(param, first, stop, flat offset)`` in each param's C order: the pieces of the flat slice
    ``[lo, hi)`` (a rank's own) that the params at ``offs`` hold."""
    out = []
    for p, a in zip(params, offs):
        s, e = max(lo - a, 0), min(hi - a, p.size)
        if s < e:
            out.append((p, s, e, a + s))
    return out


def follow_tensors(z) -> None:
    """The torch tensors among ``z``'s params (a ShardedOptimizer's) given new memory since the last
    step (``tensor.data = ...``, ``set_``: ``optim._given.follow``) read and written there: the step
    read and wrote the old memory, which they no longer showed (at world size 1 the step was lost,
    the tensor never moved). New memory of another dtype or shape than the param's slot in the flat
    buffer, read-only or shared with another param, is refused (at every step, until the tensor is
    given memory the step can take), before anything is written; a strided one is followed (copied
    element by element), and so is a C-contiguous one of the same size and another shape (``t.data =
    t.data.view(2, 3)``: its slice of the flat buffer read in C order, as ``check_layouts`` follows a
    NumPy param reshaped in place)."""

    def accept(i: int, name: str, v) -> None:
        was = z._user[i]
        if v.dtype != was.dtype:
            raise TypeError(f"{name}: given new memory of {v.dtype}, the flat buffer holds {was.dtype} (tensor.data =)")
        if v.shape != was.shape and not (v.size == was.size and v.flags.c_contiguous):
            raise ValueError(
                f"{name}: given new memory of shape {tuple(v.shape)}, its slice of the flat buffer holds "
                f"{tuple(was.shape)} (tensor.data =): make a new ShardedOptimizer for other shapes"
            )
        if isinstance(v, np.ndarray) and not v.flags.writeable:
            raise _backend.read_only(name, v)

    def accept_all(new: list) -> None:
        # (once for all the moved tensors: one check per moved tensor made moving 1000 params a
        # quadratic 10 s step)
        check_distinct(_given.with_new(z._user, new))

    moved = z._follow_tensors(z._user, "params", accept, accept_all)
    if moved:
        z._layouts = list(z._layouts)  # (their layouts are the new memory's: check_layouts)
        for i in moved:
            z._layouts[i] = (z._user[i].shape, z._user[i].strides)
            if z.params[i].shape != z._user[i].shape:  # (reshaped: the flat buffers' views follow)
                a, p = z._offs[i], z._user[i]
                z.params[i] = z._flat[a : a + p.size].reshape(p.shape)
                z._gviews[i] = z._gflat[a : a + p.size].reshape(p.shape)
        if z._layout_words is not None:
            z._layout_words = sharded_copy.layout_words(z._layouts)
        z._own, z._copies = own_pieces(z._user, z._offs, z.lo, z.hi), None


def views_again(z) -> None:
    """A copied ShardedOptimizer's views (``params``, the gradient views, the local optimizer's
    arrays) made again on its copied buffers (copied one by one they no longer see them)."""
    if not hasattr(z, "_offs"):  # (pickled before 8-bit states aligned the params: no gaps)
        z._offs = [int(a) for a in np.cumsum([0] + [p.size for p in z._user[:-1]])]
    if not hasattr(z, "_pieces"):  # (pickled when each group's slice was one array)
        z._pieces = [[(a, b)] if b > a else [] for a, b in z._slices]
    z.params = [z._flat[a : a + p.size].reshape(p.shape) for a, p in zip(z._offs, z._user)]
    z._layouts, z._layout_words = sharded_copy.layouts(z._user)  # (the copies' own: laid out anew)
    z._gviews = [z._gflat[a : a + p.size].reshape(p.shape) for a, p in zip(z._offs, z._user)]
    base = z.rank * z.chunk
    z._local_grads = [z._shard[a - base : b - base] for cuts in z._pieces for a, b in cuts]
    # the local optimizer's params: its copied arrays replaced by views of the copied buffer
    opt, swap = z.optimizer, {}
    for gi, cuts in enumerate(z._pieces):
        for old, (a, b) in zip(opt._group_params[gi][1], cuts):
            swap[id(old)] = (old, z._flat[a:b])
    opt.__dict__.pop("_lowp_plans", None)  # (a cache of views of the old arrays)
    for k, v in list(vars(opt).items()):
        setattr(opt, k, sharded_state.swapped(v, swap, set()))
    opt._index_of = {(id(swap[key][1]) if key in swap else key): i for key, i in opt._index_of.items()}
