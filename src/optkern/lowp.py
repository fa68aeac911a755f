"""Low-precision formats: bfloat16 / float16 conversion, stochastic rounding,
blockwise 8-bit quantization (the math is ``cpp/include/optkern/rules/lowp.hpp``,
shared with the CUDA kernels, so both give the same bits).

bfloat16 on the CPU. NumPy has no bfloat16, so optkern accepts two spellings
of the same 2-byte data:

* ``ml_dtypes.bfloat16`` arrays (the package JAX uses; optional, imported only
  when needed). Functions that *return* bfloat16 data return these whenever
  ``ml_dtypes`` is installed.
* raw ``uint16`` arrays holding the bit patterns, with ``dtype="bfloat16"``
  passed explicitly. Without ``ml_dtypes`` this is what is returned.

float16 is NumPy's own ``np.float16`` (``uint16`` with ``dtype="float16"``
works too). Conversions are exact bit manipulations: float32 -> half rounds to
nearest even (NaN stays a quiet NaN with its sign, overflow goes to inf,
subnormals are kept), half -> float32 is exact.

Stochastic rounding rounds up with probability equal to the distance to the
value below over the spacing, so its expectation is the input. Element ``i``
uses the Philox4x32-10 word of global index ``offset + i`` in stream ``step``
of ``seed`` (see ``optkern.random``; the stream is the counter's upper 64
bits): deterministic given (seed, step, index), the same on CPU and GPU. The
indices must stay below 2**64: ``offset + x.size`` past it raises ValueError
naming ``offset`` (nearest rounding draws nothing and takes any offset).

CuPy arrays. The conversions and the blockwise quantizers (``to_half``,
``stochastic_round``, ``from_half``, ``quantize_blockwise``,
``dequantize_blockwise``) take CuPy arrays too and return CuPy arrays on their
device, computed by ``optkern._cuda`` on CuPy's current stream with the same
bits as on the CPU. CuPy has no bfloat16: bfloat16 data on the GPU is always
the raw uint16 bits (pass ``dtype="bfloat16"``; results come back as uint16).

8-bit states. ``quantize_blockwise`` stores one float32 scale per block of
``block`` values (its absmax; negative marks a block that uses the signed map)
and one byte per value on a "dynamic tree" map (Dettmers 2016, as in
bitsandbytes' 8-bit optimizers): per decade below the absmax the linear
resolution halves, so small values keep relative precision down to 1e-6
(signed) / 1e-7 (unsigned) of the block's absmax. Blocks whose values are all
>= 0 (second moments) use the unsigned map, one bit finer. +-inf saturates to
its sign's top code (the block's largest finite magnitude; +-FLT_MAX in a block
with no finite non-zero value); NaN has no code and is stored as 0. That is the
rule of the optimizers' fused 8-bit steps; ``quantize_blockwise`` itself refuses
non-finite input (ValueError naming ``x``), as the loaders refuse a non-finite
state. Round trip error per
element is at most ``0.45 / 64`` of the block's absmax for a signed block and
``0.45 / 128`` for an unsigned one (below ``absmax / 127``), widened by the encoder's band to
``0.45 / 2^(M-1) * (1 + 4e-4)`` (M = 7 signed, 8 unsigned): it multiplies by the block's reciprocal,
so within ~1e-4 of a step of a midpoint it may take the neighbouring code, and the decoded value is
rounded to float32 (measured: 0.4500046 / 64, 0.4500122 / 128 over the floats of absmax 1's top
decade; 0.4500079 / 64, 0.4500193 / 128 over random blocks), while the absmax is
a normal float32; a block whose absmax is subnormal (below 2**-126) has its
decoded values rounded to the subnormal grid (2**-149 apart), which adds up to
half of that spacing (an absmax of 72 * 2**-149: 1 spacing off, where
``absmax / 127`` is 0.57). Linear int8 was
not used for states: it rounds every second moment under absmax / 254 of its
block to zero, and Adam then divides by ``eps``.
"""

from __future__ import annotations

import inspect

import numpy as np

from . import _backend
from ._array_checks import refuse_nonfinite
from ._lowp_blocks import _block as _block  # (the 8-bit blocks' layout and checks: its own module)
from ._lowp_blocks import check_block_scales as check_block_scales
from ._lowp_blocks import decode_map as decode_map
from ._lowp_blocks import n_blocks as n_blocks
from ._lowp_half import HALF_DTYPES as HALF_DTYPES  # (the half formats' spellings and views: their own module)
from ._lowp_half import _half_dtype as _half_dtype
from ._lowp_half import _option as _option
from ._lowp_half import _wrap as _wrap
from ._lowp_half import bfloat16_dtype as bfloat16_dtype
from ._lowp_half import bits as bits
from ._lowp_half import half_format as half_format
from .random import _u64  # (the one check of a Philox seed / step / offset, naming the argument)

__all__ = [
    "HALF_DTYPES",
    "bfloat16_dtype",
    "decode_map",
    "dequantize_blockwise",
    "from_half",
    "quantize_block_fp",
    "quantize_blockwise",
    "quantize_fixed_point",
    "stochastic_round",
    "to_bfloat16",
    "to_float16",
    "to_half",
]

_ROUNDINGS = ("nearest", "stochastic")


def _native(a):
    """(array module, native module) for ``a``'s backend: (numpy, _cpu) or (cupy, _cuda)."""
    if _backend.is_cupy(a):
        return _backend.array_module(a), _backend.cuda_module()
    return np, _backend.cpu


def _empty(like, shape, dtype):
    """An uninitialized array on ``like``'s backend and device."""
    xp = _backend.array_module(like)
    with _backend._device_of(like):
        return xp.empty(shape, dtype)


def _float32(x, name="x", cupy_ok=False) -> np.ndarray:
    """``x`` as a C-contiguous float32 array of its shape (NumPy; CuPy too where ``cupy_ok``).

    A contiguous ``x`` is returned as it is: ``ascontiguousarray`` would make a 0-d array 1-d,
    and the results, shaped like this array, would lose x's shape. Any array optkern takes
    (torch tensors, DLPack exporters) is read through a view; a masked array is refused."""
    x = _backend.as_array(x, name)
    on_gpu = cupy_ok and _backend.is_cupy(x)
    if not (on_gpu or isinstance(x, np.ndarray)):
        raise TypeError(f"{name}: expected a {'numpy or cupy' if cupy_ok else 'numpy'} array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name}: expected float32, got {x.dtype}")
    if x.flags.c_contiguous:
        return x
    if on_gpu:
        with _backend._device_of(x):
            return _backend.array_module(x).ascontiguousarray(x)
    return np.ascontiguousarray(x)


def to_half(
    x,
    dtype: str | np.dtype | type = "bfloat16",
    *,
    rounding: str = "nearest",
    seed: int = 0,
    step: int = 0,
    offset: int = 0,
    raw: bool = False,
):
    """float32 ``x`` -> bfloat16 / float16 (a new array of x's shape); ``dtype``: 'bfloat16' or
    'float16', or its NumPy dtype / scalar type (``ml_dtypes.bfloat16``, ``np.float16``).

    ``rounding``: 'nearest' (to nearest even) or 'stochastic' (Philox stream
    ``step`` of ``seed``, element i uses global index ``offset + i``).
    Returns ``np.float16`` / ``ml_dtypes.bfloat16`` arrays, or the uint16 bits
    when ``raw=True`` (always uint16 for bfloat16 without ml_dtypes, or on CuPy)."""
    dtype = _half_dtype(dtype)
    _option("rounding", rounding, _ROUNDINGS)
    raw = _backend.flag("raw", raw)  # (a string like "no" must not read as a choice)
    x = _float32(x, cupy_ok=True)
    out = _empty(x, x.shape, np.uint16)
    args = (dtype, rounding == "stochastic", _u64("seed", seed), _u64("step", step), _u64("offset", offset))
    with _backend._device_of(x):
        _native(x)[1].lowp_to_half(x, out, *args)
    return _wrap(out, dtype, raw)


def to_bfloat16(x, **kw):
    """``to_half(x, 'bfloat16', ...)``."""
    return to_half(x, "bfloat16", **kw)


def to_float16(x, **kw):
    """``to_half(x, 'float16', ...)``."""
    return to_half(x, "float16", **kw)


# help() shows the keywords they pass on (to_half's, less dtype), not ``**kw``
for _fixed in (to_bfloat16, to_float16):
    _fixed.__signature__ = inspect.signature(to_half).replace(  # type: ignore[attr-defined]
        parameters=[p for n, p in inspect.signature(to_half).parameters.items() if n != "dtype"]
    )
del _fixed


def stochastic_round(
    x, dtype: str | np.dtype | type = "bfloat16", *, seed: int = 0, step: int = 0, offset: int = 0, raw=False
):
    """``to_half(x, dtype, rounding='stochastic', ...)``: unbiased rounding to a half type."""
    return to_half(x, dtype, rounding="stochastic", seed=seed, step=step, offset=offset, raw=raw)


def from_half(h, dtype: str | np.dtype | type | None = None) -> np.ndarray:
    """bfloat16 / float16 array (or uint16 bits with ``dtype``) -> float32, exactly."""
    h = _backend.as_array(h, "h")  # (a torch / DLPack half tensor: a view of its memory)
    if not (isinstance(h, np.ndarray) or _backend.is_cupy(h)):
        raise TypeError(f"h: expected a numpy or cupy array, got {type(h).__name__}")
    fmt = half_format(h, dtype, "h")
    xp, mod = _native(h)
    out = _empty(h, h.shape, np.float32)
    with _backend._device_of(h):
        src = xp.ascontiguousarray(h)  # (a strided h: an aligned copy; a contiguous one: itself)
        if isinstance(src, np.ndarray) and not src.flags.aligned:  # (the native refusal named its "x")
            raise ValueError("h: array data is misaligned")
        mod.lowp_from_half(src.view(np.uint16), out, fmt)
    return out


def quantize_blockwise(x, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``x`` -> (codes: uint8 of x's shape, scales: float32 per block of the flat array).

    ``x`` must be finite: NaN and +-inf raise ValueError naming ``x`` (counting them). The map has
    no code for NaN and would store +-inf as the block's largest finite magnitude, a round trip
    that returns finite values for non-finite input. On CuPy the check reads one flag from the
    device (a host synchronization: the error is raised by this call). Inside an optimizer step the
    fused 8-bit rule requantizes without this check, as the module docstring describes (+-inf
    saturates, NaN stores 0): non-finite grads there are the GradScaler's, whose ``found_inf``
    skips the step; without one a NaN grad makes its param NaN, as in float32, and its moments 0."""
    x = _float32(x, cupy_ok=True)
    block = _block(block)
    _refuse_nonfinite(x, "x")
    codes = _empty(x, x.shape, np.uint8)
    scales = _empty(x, n_blocks(x.size, block), np.float32)
    with _backend._device_of(x):
        _native(x)[1].lowp_quantize_blockwise(x, codes, scales, block)
    return codes, scales


def _refuse_nonfinite(x, name: str) -> None:
    """ValueError naming ``name`` where float32 ``x`` (NumPy or CuPy, C-contiguous) holds NaN or
    +-inf: one native read of ``x`` (``all_finite``, no temporary array); the count (the loaders'
    message) only after it failed."""
    if x.size == 0:
        return
    flag = _empty(x, 1, np.float64)
    with _backend._device_of(x):
        _native(x)[1].all_finite([x], flag)
    if float(flag[0]) != 1.0:
        refuse_nonfinite(x, name)


def dequantize_blockwise(codes, scales, block: int = 256) -> np.ndarray:
    """Inverse of :func:`quantize_blockwise` (float32 of codes' shape; ``codes`` and ``scales`` may be
    torch tensors or DLPack exporters, read through their views as ``quantize_blockwise``'s input).

    ``scales`` are checked (``check_block_scales``: shape, NaN / inf) before anything is decoded; on
    CuPy that check reads them on the device and waits for one small result (a host
    synchronization, documented there: a ValueError needs the host to see the values)."""
    codes = _backend.as_array(codes, "codes")  # (a masked array refused: its mask would be ignored)
    if not (isinstance(codes, np.ndarray) or _backend.is_cupy(codes)) or codes.dtype != np.uint8:
        raise TypeError(f"codes: expected a uint8 array, got {getattr(codes, 'dtype', type(codes).__name__)}")
    scales = _float32(scales, "scales", cupy_ok=True)
    block = _block(block)
    check_block_scales(scales, codes.size, block)  # (negative ones allowed: they mark the signed map)
    xp, mod = _native(codes)
    out = _empty(codes, codes.shape, np.float32)
    with _backend._device_of(codes):
        mod.lowp_dequantize_blockwise(xp.ascontiguousarray(codes), scales, out, block)
    return out


# ---- SWALP's quantizers (Yang et al. 2019) ---------------------------------------------------------


def _grid_bits(name: str, bits) -> int:
    """SWALP's word length: the native quantizers take 2..24 (a float32 significand)."""
    return _backend.integer(name, bits, lo=2, hi=24)


def _grid_frac(name: str, frac) -> int:
    """Fractional bits of the fixed-point grid, in the native range."""
    return _backend.integer(name, frac, lo=-100, hi=100)


def _fp_block(name: str, block) -> int:
    """Elements per shared exponent (0: the whole array); the native call takes an int64."""
    return _backend.integer(name, block, lo=0, hi=_backend.INT64_MAX)


def _grid_call(name, x, out, bits, extra, rounding, seed, step, offset):
    """SWALP's quantizer ``name`` of the native module of ``x`` (NumPy or CuPy, float32 from
    ``_float32``) into ``out``, every argument checked before the call. A foreign ``out`` (a torch
    tensor, a DLPack exporter: ``x`` may be one) is written through its view and returned itself."""
    _option("rounding", rounding, _ROUNDINGS)
    on_gpu = _backend.is_cupy(x)
    given = out
    if out is None:
        out = _empty(x, x.shape, np.float32)
    elif _backend.is_foreign(out):
        out = _backend.as_array(out, "out")
    if given is not None and (
        not (isinstance(out, np.ndarray) or _backend.is_cupy(out))
        or _backend.is_cupy(out) != on_gpu
        or out.dtype != np.float32
        or tuple(out.shape) != tuple(x.shape)
    ):
        kind = "cupy" if on_gpu else "numpy"
        got = (
            f"{out.dtype} {type(out).__name__} of shape {tuple(out.shape)}"
            if hasattr(out, "dtype")
            else type(out).__name__
        )
        raise TypeError(f"out: expected a float32 {kind} array of shape {tuple(x.shape)}, got {got}")
    args = (_grid_bits("bits", bits), extra, rounding == "stochastic")
    args += (_u64("seed", seed), _u64("step", step), _u64("offset", offset))
    if out is not given and isinstance(out, np.ndarray) and not out.flags.writeable:
        raise _backend.read_only("out", out)  # (a view of an unversioned DLPack export: says why)
    with _backend._device_of(x):
        getattr(_native(x)[1], name)(x, out, *args)
    if given is None or given is out:
        return out
    from ._torch_written import given_out  # (it imports optim, which imports this module)

    return given_out(given, out)  # (the caller's object, a torch one's version bumped)


def quantize_fixed_point(
    x, bits: int = 8, frac: int = 6, *, rounding: str = "stochastic", seed=0, step=0, offset=0, out=None
):
    """SWALP's fixed point: ``x`` on the grid of ``bits``-bit signed integers times ``2^-frac``.

    ``Q(x) = 2^-frac * clip(floor(x 2^frac + u), -2^(bits-1), 2^(bits-1) - 1)`` with ``u`` uniform
    in [0, 1) (``rounding='stochastic'``: unbiased inside the range; element i uses Philox word
    ``offset + i`` of stream ``step`` of ``seed``, as :func:`stochastic_round`) or rounding to
    nearest even (``'nearest'``). NaN stays NaN; values beyond the range (and +-inf) saturate.
    ``x``: float32, NumPy or CuPy (the same bits on both). ``bits``: 2..24, ``frac``: -100..100.
    Returns float32 (a new array of x's shape on x's device, or ``out``, C-contiguous, which may be
    ``x`` itself to quantize in place; a torch tensor or DLPack exporter as ``out`` is written through its view
    and returned itself, a torch one's version counter bumped)."""
    frac = _grid_frac("frac", frac)
    x = _float32(x, cupy_ok=True)
    return _grid_call("lowp_quantize_fixed_point", x, out, bits, frac, rounding, seed, step, offset)


def quantize_block_fp(
    x, bits: int = 8, block: int = 0, *, rounding: str = "stochastic", seed=0, step=0, offset=0, out=None
):
    """SWALP's block floating point: one shared exponent per ``block`` consecutive elements of the
    flat array (``block=0``: the whole array), ``bits``-bit signed mantissas.

    A block whose largest finite magnitude is ``a`` (``E = floor(log2 a)``) uses the fixed-point
    grid of step ``2^(E - bits + 2)``: ``a`` keeps ``bits - 1`` significant bits and nothing finite
    clips or becomes infinite (the grid ends at its last float32 points: with ``a >= 2**127`` its
    bottom point ``-2**128`` is left out). Rounding, NaN/inf and ``out`` as in
    :func:`quantize_fixed_point` (NaN stays NaN, +-inf saturates to the block's grid ends), except
    that a block with no finite non-zero value (only zeros, NaN, +-inf) has no grid: it is kept as
    it is, +-inf included (saturated to the grid that keeps its zeros, +inf was ~2.3e-38)."""
    block = _fp_block("block", block)
    x = _float32(x, cupy_ok=True)
    # A block of at least x.size elements is the whole array, the same bits as a block of x.size;
    # passed as it is, the native block count (size + block - 1) // block overflows int64 near 2**63.
    block = min(block, x.size)
    return _grid_call("lowp_quantize_block_fp", x, out, bits, block, rounding, seed, step, offset)
