"""The array side of the collectives: argument checks, overlap tests and the rank-ordered fold
(:func:`rank_order_reduce`, the one place where ordered reductions do their arithmetic)."""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._array_checks import byte_span


def _contiguous(x, name: str, any_layout: bool = False):
    """``x`` as the NumPy / CuPy array the collective moves: itself, or a foreign array's view of
    its own memory (a torch tensor, a DLPack exporter: ``_backend.as_array``, zero-copy, so a result
    written into it lands in the caller's memory); TypeError / ValueError naming ``name`` where it
    is no array, not C-contiguous (unless ``any_layout``) or of elements MPI cannot move."""
    # (a masked array's data moved without its mask, and the result came back through its own
    # assignment, which skips masked entries: refused, by as_array, as every other optkern argument)
    x = _backend.as_array(x, name)
    if not (isinstance(x, np.ndarray) or _backend.is_cupy(x)):
        raise TypeError(f"{name}: expected a numpy or cupy array, got {type(x).__name__}")
    if not (any_layout or x.flags.c_contiguous):
        raise ValueError(f"{name}: array must be C-contiguous")
    _movable(x, name)
    return x


def _movable(x, name: str) -> None:
    """TypeError naming ``name`` unless MPI can move ``x``'s elements: numbers in native byte order
    (bool, integers, floats, complex; 16-bit floats move as their bits). mpi4py raised a bare
    BufferError / KeyError ("non-native byte order", "cannot map 'O' to MPI datatype") from inside
    the collective, after every rank's checks and their agreement had passed."""
    dt = x.dtype
    if (dt.kind in "biufc" and dt.isnative) or _is_half_bits(x):
        return
    why = "non-native byte order" if dt.kind in "biufc" else "not numbers MPI can move"
    raise TypeError(
        f"{name}: expected an array of bool, integers, floats or complex numbers in native byte order, "
        f"got {dt.str} ({why}: pass x.astype(x.dtype.newbyteorder('=')) or a numeric copy)"
    )


def _writable(x, name: str, any_layout: bool = False):
    """``_contiguous``'s array, also refused where it is read-only (a read-only export too)."""
    x = _contiguous(x, name, any_layout)
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        raise _backend.read_only(name, x)
    return x


def _same_kind(a, b, na: str, nb: str) -> None:
    if _backend.is_cupy(a) != _backend.is_cupy(b):
        raise TypeError(f"{nb}: is a {'cupy' if _backend.is_cupy(b) else 'numpy'} array but {na} is not")
    if a.dtype != b.dtype:
        raise TypeError(f"{nb}: expected {a.dtype} like {na}, got {b.dtype}")


def _ptr(a) -> int:
    return a.data.ptr if _backend.is_cupy(a) else a.__array_interface__["data"][0]


def _overlap(a, b) -> bool:
    """Whether the byte spans of two NumPy / CuPy arrays meet (:func:`byte_span`, any strides: exact
    for contiguous arrays, and as cheap as reading two pointers and strides, unlike ``shares_memory``
    in general; interleaved strided views, ``a[::2]`` and ``a[1::2]``, count as meeting). The one
    overlap test of the collectives and of the fusion buffers' slots (``buckets.check_slots``)."""
    if a.size == 0 or b.size == 0:
        return False
    (la, ha), (lb, hb) = byte_span(a), byte_span(b)
    return la < hb and lb < ha


# The reductions' arithmetic in NumPy (the ordered fold, a mean's division, float16 sums taken in
# float32 and cast back) gives IEEE's inf / NaN / 0, as MPI's own reduction does, whatever NumPy's
# error state: an overflow (float16 gradients near 40000 on two ranks: AMP's loss scaling overflows
# on purpose) or inf + -inf warned on every call and, under the caller's np.errstate(all="raise") or
# warnings as errors, raised half way through the fold, the result array left holding rank 0's row.
_IEEE = np.errstate(all="ignore")


@_IEEE
def rank_order_reduce(rows, op: str, out):
    """``out = op(rows[0], rows[1], ...)`` folded in row order (rows: ``(world, n)``).

    The one place where ordered reductions (allreduce and reduce-scatter alike) do their
    arithmetic, so the two give the same bits for the same element.
    """
    xp = _backend.array_module(rows)
    flat = out.reshape(-1)
    if op in ("sum", "mean"):
        xp.copyto(flat, rows[0])
        for r in range(1, rows.shape[0]):
            flat += rows[r]
        if op == "mean":
            _scale_mean(flat, rows.shape[0])
    else:
        fold = xp.maximum if op == "max" else xp.minimum
        xp.copyto(flat, rows[0])
        for r in range(1, rows.shape[0]):
            fold(flat, rows[r], out=flat)
    return out


def _is_bf16(x) -> bool:
    """An ml_dtypes.bfloat16 NumPy array: MPI has no such type (bytes move as uint16, sums in float32)."""
    return _backend.is_bfloat16(x.dtype) and not _backend.is_cupy(x)


def _is_half_bits(x) -> bool:
    """A 16-bit float array (bfloat16 or float16): moved as its uint16 bits. Open MPI has no
    float16 datatype (mpi4py maps it to MPI_DATATYPE_NULL: "MPI_ERR_TYPE: invalid datatype"),
    and moving bits is exact whatever the library."""
    return _is_bf16(x) or x.dtype == np.float16


@_IEEE
def rounded_to(w, dtype):
    """A float32 reduction's result ``w`` rounded once to ``dtype`` (float16 / bfloat16; past its
    range: inf, as a reduction in that dtype gives)."""
    return w.astype(dtype)


@_IEEE
def _scale_mean(x, world: int) -> None:
    """The mean from a sum: ``x / world`` (a division, so world = 1 and 2 stay exact)."""
    if world != 1:
        x /= x.dtype.type(world)
