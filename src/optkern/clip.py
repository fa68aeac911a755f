"""Gradient clipping over lists of arrays, in place (torch.nn.utils.clip_grad_*_ semantics)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _backend, _clip_half
from ._clip_checks import (
    NonFiniteNormError,
    _check_grads,
    _grads_named,
    _live,
    _norm_out,
    _refuse_nonfinite,
    check_dtype,
)
from ._clip_global import _SCALED_P, _global_norm, _scaled_root, _scaled_sum, dtype_code, dtypes_apart
from ._torch_written import bumps_written

__all__ = [
    "NonFiniteNormError",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
]


def _norm_type(norm_type) -> float:
    if isinstance(norm_type, str) and norm_type.lower() in ("inf", "+inf"):
        return math.inf
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.floating, np.integer)):
        raise TypeError(f"norm_type: expected a number or 'inf', got {type(norm_type).__name__}")
    try:
        p = float(norm_type)
    except OverflowError:  # an int beyond float's range: not inf, which must be asked for
        raise ValueError(
            f"norm_type: must be >= 1 or inf, got an integer of {int(norm_type).bit_length()} bits"
        ) from None
    if not (p >= 1.0):
        raise ValueError(f"norm_type: must be >= 1 or inf, got {p}")
    return p


# (NumPy's IEEE flags off: where m = max |g| is finite and positive the terms are <= 1 and only
# underflow, to 0 by design far below the largest; elsewhere (m inf or NaN) the sum, dropped for m,
# may overflow, and the root's correction of an inf is inf * 0. Neither is an error: under NumPy's
# defaults the overflow warned, under the caller's errstate(all="raise") each raised.)
@np.errstate(all="ignore")
def _scaled_norm(mod, grads, p: float, buf, xp, index):
    """The p-norm of ``grads`` without overflow or underflow (see ``_SCALED_P``), into ``buf``;
    a float for NumPy, None for CuPy (the value stays on the device: no synchronization)."""
    with _grads_named(index):
        mod.grad_norm(grads, math.inf, buf)  # m = max |g| (NaN if one is), after the native checks
    m = buf.copy()
    buf[...] = _scaled_root(xp, _scaled_sum(xp, grads, m, p, mod.grad_norm_chunk()), m, p)
    return float(buf[0]) if xp is np else None


@bumps_written("grads", "out")  # (torch tensors: written as by torch's in-place clipping)
def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False, out=None, comm=None):
    """Scale ``grads`` in place so that their total norm is at most ``max_norm``.

    The total norm is ``(sum_i ||g_i||_p^p)^(1/p)`` over every array (``max |g|`` for
    ``norm_type=inf``), accumulated in float64 with a fixed blocking (bitwise the same for
    any thread count); for p > 6, as ``m (sum (|g| / m)^p)^(1/p)`` with ``m = max |g|``,
    which stays finite where the plain sum overflows (torch's does: inf, and zeroed gradients).
    Every gradient is multiplied by ``min(1, max_norm / (norm + 1e-6))`` (NaN when the norm is
    NaN, as in PyTorch), that factor rounded as torch's ops round it from the norm in the grads'
    dtype (``(1 / (norm + 1e-6)) * max_norm`` in that dtype: float32 grads clipped as torch's).
    A finite norm past the dtype's range (float32 grads near its max) takes the factor in float64,
    rounded once: the grads are clipped, where torch's float32 norm is inf and zeroes them.

    Args:
      grads: an array or a list of arrays (NumPy or CuPy, one dtype: float32, float64, or float16 /
        bfloat16, whose norm is taken from exact float32 copies in float64 and which are scaled in
        float32 and rounded back once: ``_clip_half``); a None in the list (a parameter without a
        gradient) is skipped, as torch skips a None ``.grad``.
      max_norm: the largest allowed norm, >= 0.
      norm_type: p >= 1, or ``inf`` / ``"inf"``.
      error_if_nonfinite: raise ``NonFiniteNormError`` (a ValueError naming the first offending
        array, and a RuntimeError as torch raises) instead of clipping when the total norm is NaN
        or infinite.
      out: optional 1-element float64 array (the grads' kind and device) that receives the
        norm. On the GPU pass one to capture the call in a CUDA graph: the buffer must
        outlive the graph, which a fresh allocation per call does not.
      comm: an ``optkern.distributed.Communicator`` (or mpi4py communicator) when each rank
        holds a different part of the gradients (a ZeRO slice): the norm is then taken over
        every rank's part (max for inf), the same on every rank: the one process's norm of
        every rank's arrays in rank order, bit for bit (the ranks gather the kernel's partial
        sums and end them as one process does, on the GPU too, without a host sync). Collective:
        every rank calls it (a rank without gradients passes an empty array, of any dtype).
        The ranks agree on the arguments first (one small allreduce): an argument refused on
        any rank, a ``norm_type``, ``max_norm`` or ``error_if_nonfinite`` that differs
        between ranks, or gradients of another dtype than another rank's (the parts of one
        vector, as one process takes them: one dtype), raises the same TypeError / ValueError on
        every rank, nothing written.

    Returns:
      The total norm before clipping: a Python float for NumPy input; for CuPy input a
      1-element float64 CuPy array (``out`` when given; no host synchronisation, unless
      ``error_if_nonfinite``).
    """
    return _clip_grad_norm(grads, max_norm, norm_type, error_if_nonfinite, out, comm)


def _clip_grad_norm(grads, max_norm, norm_type, error_if_nonfinite, out, comm, returned=None):
    """``clip_grad_norm_``; ``returned``: the NumPy dtype the caller hands the norm back in
    (optkern.torch: the grads' float32), which ``error_if_nonfinite`` also needs it finite in."""
    shard = None
    if comm is None:
        local = _local_norm(grads, max_norm, norm_type, error_if_nonfinite, out, False)
    else:
        from .distributed.communicator import as_communicator
        from .distributed.sharded_clip import shard_layout

        comm = as_communicator(comm)  # (once: an mpi4py communicator's wrapping agrees over its ranks)
        shard = shard_layout(grads, comm)
        comm, local, peak = _agreed_local_norm(grads, max_norm, norm_type, error_if_nonfinite, out, comm, shard)
    grads, index, mod, max_norm, p, error_if_nonfinite, buf, prev, total, half = local
    if comm is not None:
        total = _global_norm(buf, p, comm, grads, mod, total, shard, peak)
    if mod is None:  # no gradients on this rank: nothing to clip
        if error_if_nonfinite:  # (the norm is every rank's: a NaN elsewhere raises here as there)
            _refuse_nonfinite(grads, index, mod, p, buf, prev, total, out is not None, returned=returned)
        return out if total is None else total
    if error_if_nonfinite:
        _refuse_nonfinite(grads, index, mod, p, buf, prev, total, out is not None, returned=returned)
    with _grads_named(index, grads):
        mod.clip_scale_(grads, max_norm, buf)
    # (half grads: ``grads`` are their float32 copies, scaled; rounded back unless the factor is 1)
    if half is not None and not (total is not None and math.isfinite(total) and max_norm / (total + 1e-6) >= 1.0):
        _clip_half.store(mod, grads, *half)
    return (buf if out is None else out) if total is None else total


@bumps_written("out")
def get_total_norm(grads, norm_type=2.0, error_if_nonfinite=False, out=None):
    """The total norm of ``grads`` as :func:`clip_grad_norm_` takes it (same checks, blocking and
    bits), without clipping: torch.nn.utils.get_total_norm. Returns a float for NumPy input, a
    1-element float64 CuPy array (``out`` when given) for CuPy input; 0.0 for no arrays.
    Pass it to :func:`clip_grads_with_norm_` to clip later (after a norm of other arrays too)."""
    return _get_total_norm(grads, norm_type, error_if_nonfinite, out)


def _get_total_norm(grads, norm_type, error_if_nonfinite, out, returned=None):
    """``get_total_norm``; ``returned``: as ``_clip_grad_norm``'s."""
    grads, index, mod, _, p, error_if_nonfinite, buf, prev, total, _ = _local_norm(
        grads, 0.0, norm_type, error_if_nonfinite, out, False, reads_only=True
    )
    if mod is not None and error_if_nonfinite:
        _refuse_nonfinite(grads, index, mod, p, buf, prev, total, out is not None, "compute it", returned)
    return (buf if out is None else out) if total is None else total


@bumps_written("grads")
def clip_grads_with_norm_(grads, max_norm, total_norm) -> None:
    """Scale ``grads`` in place by ``min(1, max_norm / (total_norm + 1e-6))``, the factor rounded as
    :func:`clip_grad_norm_` rounds it (torch.nn.utils.clip_grads_with_norm_). ``total_norm``: a
    real number or a 1-element float array (bfloat16 too) of the grads' kind and device (what
    :func:`get_total_norm` returns: on the GPU, no host synchronization); ``max_norm`` >= 0 or inf.
    A NaN or infinite ``total_norm`` makes NaN gradients (zeros for ``max_norm=0`` and an infinite
    norm), as torch's ``inf / inf`` and ``0 / inf``; a negative one (no norm is) is refused, where
    torch negates every gradient (a NumPy array's value is read; a CuPy one's is not, no sync: it makes
    NaN gradients, as a NaN norm). A
    torch tensor (torch.nn.utils.get_total_norm's) is taken as its NumPy / CuPy view."""
    grads, index = _live(_backend.as_list(grads, "grads"))
    with _grads_named(index):
        mod = _backend.backend(("grads", grads))
    max_norm, norm, like = _max_norm_or_inf(max_norm), None, grads[0] if grads else None
    if _backend.is_foreign(total_norm):  # torch.nn.utils.get_total_norm's tensor, as the grads are taken
        total_norm = _backend.as_array(total_norm, "total_norm")
    if isinstance(total_norm, numbers.Real) and not isinstance(total_norm, bool):
        norm = _total_norm_value(total_norm)
    elif like is None and hasattr(total_norm, "dtype"):
        pass  # (no grads: nothing to scale, nor to check an array norm against)
    elif like is None or type(total_norm) is not type(like) or total_norm.size != 1:
        shape = f" of shape {tuple(total_norm.shape)}" if like is not None and type(total_norm) is type(like) else ""
        got = f"{type(total_norm).__name__}{shape}"
        raise TypeError(f"total_norm: expected a real number or a 1-element array like grads, got {got}")
    elif total_norm.dtype.kind != "f" and not _backend.is_bfloat16(total_norm.dtype):  # (ml_dtypes': kind "V")
        raise TypeError(f"total_norm: expected a floating dtype, got {total_norm.dtype}")
    elif _backend.is_cupy(like) and total_norm.device != like.device:
        raise ValueError(f"total_norm: on device {total_norm.device.id}, grads on device {like.device.id}")
    if not grads:
        return
    if norm is None and isinstance(total_norm, np.ndarray):  # (a CuPy one is not read: no sync)
        _total_norm_value(total_norm.reshape(-1)[0])
    _check_grads(grads, mod, index)  # (clip_grad_norm_'s checks and wording, before anything is written)
    xp = _backend.array_module(like)
    # a fresh float64 copy (on the device: no synchronization), apart from the grads it may lie in
    buf = xp.full(1, norm, dtype=np.float64) if norm is not None else total_norm.astype(np.float64).reshape(1)
    if norm is None and _backend.is_cupy(buf):
        # a negative device norm (not read: no sync) made the factor negative, every gradient's sign
        # flipped (an ascent step), silently; NaN instead: NaN gradients, as a NaN norm gives
        buf = xp.where(buf < 0.0, float("nan"), buf)
    fmt = _clip_half.half_format(grads)
    wide = grads if fmt is None else _clip_half.widened(mod, grads, fmt)
    with _grads_named(index):
        mod.clip_scale_(wide, max_norm, buf, "" if norm is not None else _norm_dtype(total_norm.dtype))
    if fmt is not None:
        _clip_half.store(mod, wide, grads, fmt)


def _norm_dtype(dt) -> str:
    """The dtype torch computes the factor in for a ``total_norm`` of dtype ``dt``: its own (a float64
    norm of float32 grads gives a float64 factor, rounded to float32 by the multiply; a float16 one a
    float16 factor). A wider NumPy float (longdouble) is read as float64, as its value is."""
    if _backend.is_bfloat16(dt):
        return "bfloat16"
    return {2: "float16", 4: "float32"}.get(np.dtype(dt).itemsize, "float64")


def _max_norm_or_inf(max_norm) -> float:
    """``max_norm`` >= 0 as a float, inf allowed (clip_grads_with_norm_); an int past float's range
    is a ValueError naming it (``float()`` raised a bare OverflowError)."""
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
        return _backend.nonnegative("max_norm", max_norm)  # (its TypeError)
    try:
        v = float(max_norm)
    except OverflowError:
        raise ValueError("max_norm: must be finite or inf, got an integer beyond float range") from None
    if not v >= 0.0:  # (negative or NaN: the native clip_scale_'s words, which name inf too; "in [0.0, inf)" did not)
        raise ValueError(f"max_norm: must be >= 0 or inf, got {v!r}")
    return v


def _total_norm_value(total_norm) -> float:
    """A real ``total_norm`` as a float: NaN and inf pass (torch's NaN or zeroed grads); a negative
    one, which no norm is, is refused (its factor ``max_norm / (total_norm + 1e-6)`` is negative:
    every gradient's sign flipped, an ascent step), and so is an int past float's range."""
    try:
        v = float(total_norm)
    except OverflowError:
        raise ValueError("total_norm: must be a float, got an integer beyond float range") from None
    if v < 0.0:
        raise ValueError(f"total_norm: must be >= 0 (a norm), got {v!r}")
    return v


def _local_norm(
    grads, max_norm, norm_type, error_if_nonfinite, out, distributed: bool, reads_only=False, shard=None
) -> tuple:
    """Every check of the arguments, then this rank's own norm into ``buf`` (``out``'s view, or a
    fresh buffer): ``(grads, index, mod, max_norm, p, error_if_nonfinite, buf, prev, total, half)``,
    ``mod`` None where there are no gradients; ``prev``: ``out``'s value before (restored where the
    call raises after writing it); ``total``: the norm as a float (NumPy) or None (CuPy); ``distributed``, what
    ``_global_norm`` takes: the kernel's partial sums for p = 1 and 2 (``buf`` not written; on the
    GPU a CuPy array of them), else this rank's max |g|; ``half``:
    None, or for float16 / bfloat16 grads ``(the caller's grads, their format)``, ``grads`` then
    being their float32 copies (``_clip_half``), which the caller scales and stores back."""
    grads, index = _live(_backend.as_list(grads, "grads"))
    with _grads_named(index):
        mod = _backend.backend(("grads", grads))
    max_norm = _backend.nonnegative("max_norm", max_norm)
    p = _norm_type(norm_type)
    error_if_nonfinite = _backend.flag("error_if_nonfinite", error_if_nonfinite)
    if out is not None:  # a torch tensor (any foreign array) as its NumPy / CuPy view, checked as one
        out = _backend.as_array(out, "out")
    if not grads:  # the norm of nothing is 0 (other ranks may hold some); out is still checked and written
        if out is None:
            return grads, index, None, max_norm, p, error_if_nonfinite, np.zeros(1), None, 0.0, None
        _backend.backend(("out", out))
        buf = _norm_out(out, out, _backend.array_module(out))
        prev = buf.copy() if distributed else None
        buf[...] = 0.0
        total = 0.0 if isinstance(out, np.ndarray) else None
        return grads, index, None, max_norm, p, error_if_nonfinite, buf, prev, total, None
    check_dtype(grads, index)
    xp = _backend.array_module(grads[0])
    half = None
    fmt = _clip_half.half_format(grads)
    if fmt is not None:  # every check first (the stores back write array by array), then the copies
        if reads_only:
            _clip_half.check_read(grads, index)
        else:
            _check_grads(grads, mod, index)
        half = (grads, fmt)
        grads = _clip_half.widened(mod, grads, fmt)
    # (``reads_only``: get_total_norm writes no grad, so read-only or overlapping ones are fine, as
    # in torch; the native norm still checks dtypes, layouts, devices and ``out``)
    if half is None and not reads_only and (out is not None or error_if_nonfinite or distributed or p > _SCALED_P):
        # (otherwise the norm's native call checks the grads as the scaling one does, aliasing
        # and read-only aside, which that one checks before it writes; the norm only wrote a
        # buffer of ours: nothing the caller sees changed, and one pass over the arrays less)
        _check_grads(grads, mod, index)
    buf = xp.empty(1, dtype=np.float64) if out is None else _norm_out(out, grads[0], xp)
    prev = buf.copy() if (error_if_nonfinite or distributed) and out is not None else None
    if distributed and p not in (1.0, 2.0):
        # (this rank's max |g| only: every rank scales its terms by the global max, as one process
        # scales them, and the ranks gather their partial sums; _global_norm)
        with _grads_named(index):
            total = mod.grad_norm(grads, math.inf, buf)
    elif _SCALED_P < p < math.inf:
        total = _scaled_norm(mod, grads, p, buf, xp, index)
    elif distributed:
        # (p = 1 and 2: the native kernel's partial sums, which _global_norm gathers from every rank
        # and ends as the one process ends its own; the ranks' sums added were an ulp off that, each
        # rank's norm squared back, sqrt(s)^2, an ulp off s. ``shard``: those of the params' chunks
        # inside this rank's slice only, the ones a rank boundary cuts summed once put together --
        # the sums of the slice's own arrays were taken here too, then dropped)
        parts_of = grads
        if shard is not None:
            from .distributed.sharded_clip import inside_chunks

            parts_of = inside_chunks(shard, grads, mod.grad_norm_chunk())
        with _grads_named(index):
            total = mod.grad_norm_parts(parts_of, p, buf) if parts_of else xp.zeros(0, dtype=np.float64)
    else:
        with _grads_named(index):  # what is left to the native checks: out aliasing grads, devices
            total = mod.grad_norm(grads, p, buf)
    return grads, index, mod, max_norm, p, error_if_nonfinite, buf, prev, total, half


def _agreed_local_norm(grads, max_norm, norm_type, error_if_nonfinite, out, comm, shard=None) -> tuple:
    """``(comm as a Communicator, _local_norm(...))``, the ranks agreed before the norm's collective:
    an argument refused on one rank only (an int32 gradient, a NaN or negative ``max_norm``) raised
    there while the others waited in the collective forever (or summed a NaN from it), and a
    ``norm_type``, ``max_norm`` or ``error_if_nonfinite`` that differs between ranks (2 on one, inf
    on another) clipped each rank by another norm, silently: its replica diverged. Now every rank
    raises the same TypeError / ValueError (the refusing rank its own, the others naming it and the
    rank), ``out`` as it was. One small allreduce (:func:`.distributed.agreement.refuse_together`),
    which also carries this rank's max |g| (p other than 1 and 2, NumPy: a NaN flagged) and returns
    the global one, else None (the separate allreduce _global_norm made, now a collective less)."""
    from .distributed.agreement import refuse_together
    from .distributed.communicator import as_communicator

    comm = as_communicator(comm)
    err, local = None, None
    try:
        local = _local_norm(grads, max_norm, norm_type, error_if_nonfinite, out, True, shard=shard)
    except (TypeError, ValueError) as e:
        err = e
    # (``shard``: every rank a ShardedOptimizer's slice of the same layout, or none: the norm of
    # slices gathers their parts with their edges, a collective the other ranks would not make)
    layout = ("grads' ShardedOptimizer layout", None if shard is None else shard.signature())
    same: tuple = (("norm_type", None), ("max_norm", None), ("error_if_nonfinite", None), layout)
    if local is not None:
        _, _, _, m, p, flag, *_ = local
        same = (("norm_type", p), ("max_norm", m), ("error_if_nonfinite", flag), layout)
    try:
        comm._live("allreduce")  # (the call's collective, as the message of a finalized MPI names it)
        peak = [1.0, 0.0, 0.0]  # (whether not carried here -- a CuPy rank's stays on its device --, NaN, max)
        if local is not None and local[4] not in (1.0, 2.0) and isinstance(local[8], float):
            peak = [0.0, float(math.isnan(local[8])), 0.0 if math.isnan(local[8]) else local[8]]
        code = dtype_code(local)
        kinds = (-math.inf, -math.inf) if code is None else (code, -code)  # (max and -min over the ranks)
        elsewhere, nan, top, most, least = refuse_together(
            comm, err, "clip_grad_norm_", same=same, maxed=(*peak, *kinds)
        )
        if most != -least and most > -math.inf:
            raise dtypes_apart(comm, local)
    except BaseException:
        if local is not None and local[7] is not None:  # out, written by this rank's norm: as it was
            local[6][...] = local[7]
        raise
    assert local is not None  # (refuse_together raised where any rank refused)
    return comm, local, (None if elsewhere else math.nan if nan else top)


@bumps_written("grads")
def clip_grad_value_(grads, clip_value) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place (NaN stays NaN).

    Args:
      grads: an array or a list of arrays (NumPy or CuPy, one dtype); None entries are skipped.
      clip_value: >= 0.
    """
    grads, index = _live(_backend.as_list(grads, "grads"))
    with _grads_named(index):
        mod = _backend.backend(("grads", grads))
    clip_value = _backend.nonnegative("clip_value", clip_value)
    if grads:
        check_dtype(grads, index)
    fmt = _clip_half.half_format(grads)
    if fmt is not None:  # (float32 copies clamped, stored back: checked first, as one call checks)
        _check_grads(grads, mod, index)
        wide = _clip_half.widened(mod, grads, fmt)
        with _grads_named(index):
            mod.clamp_(wide, clip_value)
        _clip_half.store(mod, wide, grads, fmt)
        return
    # One native call, which checks every grad (dtype, layout, device, aliasing) before it
    # writes, in the pre-step check's wording: no pre-check to repeat them.
    with _grads_named(index, grads):
        mod.clamp_(grads, clip_value)
