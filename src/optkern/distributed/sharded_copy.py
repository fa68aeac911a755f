"""``ShardedOptimizer``'s per-step copies between the arrays passed in and its flat buffers.

Each step copies the gradients into the flat gradient buffer, reads this rank's slice from the
user's arrays and writes every array back from the flat buffer. One assignment per array costs
~1-3 us in Python: with 1000 small params these loops cost more than the step itself. The whole
arrays of each copy go instead through one native multi-array copy (``sam_restore_``: ``dst[i] =
src[i]`` over lists, what L-BFGS's restore uses too); what it cannot take stays on the per-array
path: the (at most two) params a rank boundary cuts, non-contiguous arrays, 16-bit dtypes (no
2-byte kernel) and CuPy arrays.

The native copy gathers and checks every array before it writes any, so where it refuses (a
strided gradient) nothing is written and the per-array loop runs instead.

Each param's elements sit in the flat buffer in the C order of its layout at construction, so the
params are checked before each step, before anything is copied or communicated
(:func:`check_layouts`, its outcome agreed by every rank): a param made read-only since is
refused, one reshaped in place over the same elements in the same order (``p.shape = ...``) is
followed, any other change of layout (strides set, ``resize``) refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _backend


@dataclass
class Copies:
    """The two copies' lists: whole arrays for the native pass, the rest per array."""

    read_dst: list = field(default_factory=list)  # views of the flat buffer (``params``)
    read_src: list = field(default_factory=list)  # the user's arrays, whole
    read_rest: list = field(default_factory=list)  # (param, first, stop, flat offset)
    write_dst: list = field(default_factory=list)  # the user's arrays
    write_src: list = field(default_factory=list)  # their views of the flat buffer
    write_rest: list = field(default_factory=list)  # (param, view)


def _native(p) -> bool:
    # (a zero-size array has nothing to copy; the per-array loop keeps its no-op)
    return type(p) is np.ndarray and p.dtype in (np.float32, np.float64) and p.flags.c_contiguous and p.size > 0


def plan(z) -> Copies:
    """The copies of ``z`` (a ShardedOptimizer) for its current layout and views."""
    c = Copies()
    index = {id(p): i for i, p in enumerate(z._user)}
    for p, s, e, at in z._own:
        if s == 0 and e == p.size and _native(p):
            c.read_dst.append(z.params[index[id(p)]])
            c.read_src.append(p)
        else:
            c.read_rest.append((p, s, e, at))
    for p, v in zip(z._user, z.params):
        if p is v:
            continue
        if _native(p):
            c.write_dst.append(p)
            c.write_src.append(v)
        else:
            c.write_rest.append((p, v))
    return c


def _copy(dst: list, src: list) -> None:
    if not dst:
        return
    try:
        _backend.cpu.sam_restore_(dst, src)
    except (TypeError, ValueError):  # (refused before writing anything: the per-array loop's own outcome)
        for d, s in zip(dst, src):
            d[...] = s


def copies(z) -> Copies:
    """``z``'s plan, made on first use after each build or copy (it holds views, never pickled)."""
    c = getattr(z, "_copies", None)
    if c is None:
        c = z._copies = plan(z)
    return c


def layouts(params) -> tuple[list, np.ndarray | None]:
    """Each param's (shape, strides), and the same as the int64 words ``first_relaid_`` compares
    (None unless every param is a NumPy array): what :func:`check_layouts` compares at every step."""
    shapes = [(p.shape, p.strides) for p in params]
    if not all(isinstance(p, np.ndarray) for p in params):
        return shapes, None
    return shapes, layout_words(shapes)


def layout_words(shapes: list) -> np.ndarray:
    """The ``(shape, strides)`` of :func:`layouts` as the int64 words ``first_relaid_`` compares."""
    return np.array([w for shape, strides in shapes for w in (len(shape), *shape, *strides)], np.int64)


def _element_order(shape, strides):
    """The byte offsets of an array's elements in its C order (which memory its flat index reads)."""
    offs = np.zeros((), np.int64)
    for n, s in zip(shape, strides):
        offs = offs[..., None] + np.arange(n, dtype=np.int64) * s
    return offs.reshape(-1)


def check_layouts(z) -> None:
    """Raise ValueError naming a param made read-only since ``z`` was made (the step wrote the
    params before it, then raised after every rank's state had stepped: the other ranks went on),
    or one whose layout changed in place unless its C order still reads the same memory, element
    for element (``p.shape = ...``: its views of the flat buffers then take the new shape). A param
    re-strided in place (``p.strides = ...``, a transpose) or resized reads other elements in C
    order than the ones its flat buffer's slice and optimizer state hold: the step updated each
    element with another one's state, or failed to write the param back after the state had
    stepped. (NumPy params: two native passes, ~1 us per 100 params.)"""
    words = z._layout_words
    if words is not None:
        i = _backend.cpu.first_readonly_(z._user)
        if i >= 0:
            raise _backend.read_only(f"params[{i}]", z._user[i])
        if _backend.cpu.first_relaid_(z._user, words) < 0:
            return
    now = layouts(z._user)
    if now[0] == z._layouts:
        return
    for i, (p, was, new) in enumerate(zip(z._user, z._layouts, now[0])):
        if new == was:
            continue
        if p.size != int(np.prod(was[0])) or not np.array_equal(_element_order(*was), _element_order(*new)):
            raise ValueError(
                f"params[{i}]: its layout changed in place since the ShardedOptimizer was made (shape "
                f"{was[0]}, strides {was[1]} then; shape {p.shape}, strides {p.strides} now), so its "
                "elements are no longer the ones its slice of the flat buffer and its optimizer state "
                "hold: restore the layout or make a new ShardedOptimizer"
            )
    for i, (p, a) in enumerate(zip(z._user, z._offs)):  # (only reshaped: the views follow)
        z.params[i] = z._flat[a : a + p.size].reshape(p.shape)
        z._gviews[i] = z._gflat[a : a + p.size].reshape(p.shape)
    (z._layouts, z._layout_words), z._copies = now, None


def read_params(z) -> None:
    """This rank's slice of the flat buffer from the arrays passed in."""
    c = copies(z)
    _copy(c.read_dst, c.read_src)
    for p, s, e, at in c.read_rest:
        z._flat[at : at + e - s] = p.reshape(-1)[s:e]


def write_grads(views: list, grads: list) -> None:
    """``grads`` (checked: their params' shapes and dtype) into the flat gradient buffer's
    ``views``: one native pass where it takes them all (C-contiguous float32/float64 NumPy arrays,
    none of them one of the views), else per array. They change every step: nothing is planned."""
    v0 = views[0] if views else None
    if type(v0) is np.ndarray and v0.dtype in (np.float32, np.float64):
        try:
            _backend.cpu.sam_restore_(views, grads)
            return
        except (TypeError, ValueError):  # (a strided grad, a view of the buffer: nothing written)
            pass
    for g, v in zip(grads, views):
        if g is not v:
            v[...] = g


def write_params(z) -> None:
    """Every array passed in from the flat buffer (after the all-gather)."""
    c = copies(z)
    _copy(c.write_dst, c.write_src)
    for p, v in c.write_rest:
        p[...] = v
