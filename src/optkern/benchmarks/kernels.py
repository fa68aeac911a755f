"""Streaming kernels that are neither an optimizer step nor a normalization: vs the probe and torch.

Gradient clipping, GradScaler, weight averaging, low-precision conversion and
quantization, dropout, weight normalization and the Philox generators each
stream their arrays once (or twice) with little arithmetic, so each should run
near the bandwidth probe; a case far below it has a slow loop. One row per
case of ``CASES`` (float32): CPU 16M elements (``quick``: 1M), CUDA 256M
(``quick``: 16M); the list cases hold 200 arrays totalling that (``split``, as
the optim suite's), the others one flat array; weight_norm's ``v`` is square,
sqrt(n) x sqrt(n) (CPU 4096 x 4096, quick 1024 x 1024; CUDA 16384 x 16384, quick
4096 x 4096), with ``g`` of shape (rows, 1) and dim=0.
torch: the equivalent op where torch has one (its ``OMP_WAIT_POLICY=PASSIVE``
noted as in the rules suite); the others have no torch column.

Bytes counted per element follow the norm suite: every array read once, an
array updated in place written once (its lines were read anyway), and a newly
written array (out-of-place output, ``out=`` included) written once on the
GPU and twice on a CPU (the write-allocate reads its lines first): ``CPU/GPU``
below. optkern's kernels must move at least (float32 x, y; bf16/fp16 h)::

  clip_grad_norm_          12/12  g read for the norm, then read and written by the scale (max_norm clips)
  clip_grad_value_          8/8   g read and written
  GradScaler unscale_+update 8/8  g read and written (the inf check rides the same pass; scale,
                                  tracker and flag are 1-element arrays); init_scale 1, as torch's
                                  check runs here with inv_scale 1, so values never decay
  AveragedParams ema update 12/12 avg and p read, avg written (torch._foreach_lerp_); the same through
                                  optkern.torch.AveragedModel against torch's AveragedModel
  to_half (bf16, fp16, bf16 stochastic)   8/6   x read (4), h written (2)
  from_half bf16           10/6   h read (2), y written (4)
  quantize_blockwise        6.03125/5.015625  x read, codes (1) and one float32 scale per 256 written
  dequantize_blockwise      9.015625/5.015625 codes and scales read, y written
  quantize_fixed_point out= 12/8  x read, out written
  quantize_block_fp out=    16/12 block=0 (one exponent for the array): x read for its absmax, then
                                  read again and out written
  dropout, dropout_backward 12/8  x (dy) read, y (dx) written; the mask is regenerated, not stored
  weight_norm               12/8  v read (each row's norm pass leaves it in cache for the scale
                                  pass), w written; g and the norms (1 per row) not counted
  random.uniform, rademacher 8/4  y written

The probe of every case is the in-place read-modify-write of one array from
another (CPU: 12 bytes per element, the same 2:1 mix of reads and writes as
clip_grad_norm_'s two passes, AveragedParams' lerp and an out-of-place y = f(x)
with its write-allocate, the norm suite's ceiling) or a device copy (GPU),
measured at the start and the end of the suite. No case is read-only, so none
is compared with ``probe.cpu_read``. ``CASES[name].written`` names the rmw
probe's written arrays, 1 for each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from .optim import _model, arrays, prepare, probe_rows, split, tensors, with_probes
from .probe import M, size_label
from .timing import compare

SUITE = "kernels"
LISTS = 200  # arrays of the list cases
MAX_NORM = 1.0  # the total norm of n standard normals is ~sqrt(n): every call clips
CLIP_VALUE = 0.5
DECAY = 0.99
P_DROP = 0.1
SEED = 7


class Case(NamedTuple):
    ours: Callable  # (n, device) -> the zero-argument call to time
    read: float  # bytes per element read
    inplace: float  # bytes per element written in place (no write-allocate)
    fresh: float  # bytes per element written to an out-of-place output (write-allocated on a CPU)
    torch: tuple | None = None  # (impl name, (torch, n, device) -> call), or None where torch lacks it
    cuda: bool = True  # has a CUDA path
    written: int = 1  # written arrays of the rmw probe it is compared with (CPU)


def bytes_per_element(case: Case, device: str) -> float:
    """Bytes the case must move per element (a written new array counts twice on a CPU)."""
    return case.read + case.inplace + case.fresh * (1 if device == "cuda" else 2)


def _flat(n: int, device: str, seed: int = 1):
    return arrays([n], seed, device)[0]


def _side(n: int) -> int:
    side = math.isqrt(n)
    assert side * side == n, n
    return side


# ---- optkern calls -------------------------------------------------------------------------


def _clip_norm(n, device):
    import optkern

    gs = arrays(split(n, LISTS), 2, device)
    return lambda: optkern.clip_grad_norm_(gs, MAX_NORM)


def _clip_value(n, device):
    import optkern

    gs = arrays(split(n, LISTS), 2, device)
    return lambda: optkern.clip_grad_value_(gs, CLIP_VALUE)


def _unscale(n, device):
    from optkern.amp import GradScaler

    gs = arrays(split(n, LISTS), 2, device)
    scaler = GradScaler(init_scale=1.0, growth_interval=1 << 30)

    def step():
        scaler.unscale_(gs)
        scaler.update()  # (a second unscale_ without it raises)

    return step


def _ema(n, device):
    from optkern.swa import AveragedParams

    ps = arrays(split(n, LISTS), 1, device)
    avg = AveragedParams(ps, mode="ema", decay=DECAY)
    avg.update(ps)  # the first update copies; later ones lerp
    return lambda: avg.update(ps)


def _to_half(fmt: str, rounding: str = "nearest"):
    def make(n, device):
        from optkern.lowp import to_half

        x = _flat(n, device)
        return lambda: to_half(x, fmt, rounding=rounding, seed=SEED, raw=True)

    return make


def _from_half(n, device):
    from optkern.lowp import from_half, to_half

    h = to_half(_flat(n, device), "bfloat16", raw=True)
    return lambda: from_half(h, "bfloat16")


def _quantize(n, device):
    from optkern.lowp import quantize_blockwise

    x = _flat(n, device)
    return lambda: quantize_blockwise(x)


def _dequantize(n, device):
    from optkern.lowp import dequantize_blockwise, quantize_blockwise

    codes, scales = quantize_blockwise(_flat(n, device))
    return lambda: dequantize_blockwise(codes, scales)


def _grid(name: str):
    def make(n, device):
        from optkern import lowp

        x = _flat(n, device)
        out = x.copy()  # (on x's device)
        fn = getattr(lowp, name)
        return lambda: fn(x, seed=SEED, out=out)

    return make


def _dropout(n, device):
    from optkern.norm import dropout

    x = _flat(n, device)
    return lambda: dropout(x, P_DROP, SEED)


def _dropout_backward(n, device):
    from optkern.norm import dropout_backward

    dy = _flat(n, device, 2)
    return lambda: dropout_backward(dy, P_DROP, SEED)


def _weight_norm(n, device):
    from optkern.norm import weight_norm

    side = _side(n)
    v = _flat(n, device).reshape(side, side)
    g = arrays([side], 2, device)[0].reshape(side, 1)
    return lambda: weight_norm(v, g)


def _random(name: str):
    def make(n, device):
        import optkern.random as okrandom

        like = _flat(1, device)  # a CuPy array on the GPU selects the device path
        fn = getattr(okrandom, name)
        return lambda: fn(n, SEED, like=like)

    return make


# ---- torch calls ---------------------------------------------------------------------------


def _t_clip_norm(torch, n, device):
    params = _model(torch, split(n, LISTS), device)
    return lambda: torch.nn.utils.clip_grad_norm_(params, MAX_NORM, foreach=True)


def _t_clip_value(torch, n, device):
    params = _model(torch, split(n, LISTS), device)
    return lambda: torch.nn.utils.clip_grad_value_(params, CLIP_VALUE, foreach=True)


def _t_unscale(torch, n, device):
    gs = tensors(torch, split(n, LISTS), 2, device)
    found, inv = torch.zeros(1, device=device), torch.ones(1, device=device)
    return lambda: torch._amp_foreach_non_finite_check_and_unscale_(gs, found, inv)


def _t_ema(torch, n, device):
    sizes = split(n, LISTS)
    avg, ps = tensors(torch, sizes, 1, device), tensors(torch, sizes, 2, device)
    return lambda: torch._foreach_lerp_(avg, ps, 1.0 - DECAY)


def _t_to(dtype: str):
    def make(torch, n, device):
        t, dt = tensors(torch, [n], 1, device)[0], getattr(torch, dtype)
        return lambda: t.to(dt)

    return make


def _t_float(torch, n, device):
    h = tensors(torch, [n], 1, device)[0].to(torch.bfloat16)
    return lambda: h.float()


def _t_dropout(torch, n, device):
    t = tensors(torch, [n], 1, device)[0]
    return lambda: torch.nn.functional.dropout(t, P_DROP, True)


def _t_weight_norm(torch, n, device):
    side = _side(n)
    v = tensors(torch, [n], 1, device)[0].reshape(side, side)
    g = tensors(torch, [side], 2, device)[0].reshape(side, 1)
    return lambda: torch._weight_norm(v, g, 0)


def _t_rand(torch, n, device):
    return lambda: torch.rand(n, device=device)


LIST_LAYOUT = f"{LISTS} arrays"
CASES: dict[str, Case] = {
    f"clip_grad_norm_ {LIST_LAYOUT}": Case(_clip_norm, 8, 4, 0, ("foreach", _t_clip_norm)),
    f"clip_grad_value_ {LIST_LAYOUT}": Case(_clip_value, 4, 4, 0, ("foreach", _t_clip_value)),
    f"GradScaler unscale_+update {LIST_LAYOUT}": Case(_unscale, 4, 4, 0, ("_amp_foreach", _t_unscale)),
    f"AveragedParams ema update {LIST_LAYOUT}": Case(_ema, 8, 4, 0, ("_foreach_lerp_", _t_ema)),
    "to_half bf16": Case(_to_half("bfloat16"), 4, 0, 2, ("to", _t_to("bfloat16"))),
    "to_half fp16": Case(_to_half("float16"), 4, 0, 2, ("to", _t_to("float16"))),
    "to_half bf16 stochastic": Case(_to_half("bfloat16", "stochastic"), 4, 0, 2),
    "from_half bf16": Case(_from_half, 2, 0, 4, ("float", _t_float)),
    "quantize_blockwise": Case(_quantize, 4, 0, 1 + 4 / 256),
    "dequantize_blockwise": Case(_dequantize, 1 + 4 / 256, 0, 4),
    "quantize_fixed_point out=": Case(_grid("quantize_fixed_point"), 4, 0, 4),
    "quantize_block_fp out=": Case(_grid("quantize_block_fp"), 8, 0, 4),
    "dropout": Case(_dropout, 4, 0, 4, ("F.dropout", _t_dropout)),
    "dropout_backward": Case(_dropout_backward, 4, 0, 4),
    "weight_norm dim=0 square v": Case(_weight_norm, 4, 0, 4, ("_weight_norm", _t_weight_norm)),
    "random.uniform": Case(_random("uniform"), 0, 0, 4, ("rand", _t_rand)),
    "random.rademacher": Case(_random("rademacher"), 0, 0, 4),
}


def size(device: str, quick: bool) -> int:
    """Elements per case: CPU 16M (quick 1M), CUDA 256M (quick 16M)."""
    if device == "cuda":
        return 16 * M if quick else 256 * M
    return 1 * M if quick else 16 * M


def label(name: str, n: int) -> str:
    """The row's case name: ``name``, then the size (weight_norm: its v's shape)."""
    if name.startswith("weight_norm"):
        return f"{name}, {_side(n)}x{_side(n)}"
    return f"{name}, {size_label(n)}"


def _theirs(torch, make, n: int, device: str):
    """torch's call, or None where this torch build lacks the op on ``device``."""
    try:
        fn = make(torch, n, device)
        fn()
    except (RuntimeError, NotImplementedError, AttributeError, TypeError):
        return None
    return fn


def _averaged_model(torch, n: int, device: str, ours: bool):
    """One EMA update of a torch AveragedModel over a module holding LISTS float32 params:
    optkern.torch's (fused) or torch's own, each with its ``get_ema_multi_avg_fn``."""
    from torch.optim import swa_utils

    from ..torch import AveragedModel, get_ema_multi_avg_fn

    module = torch.nn.Module()
    module.ps = torch.nn.ParameterList(torch.nn.Parameter(t) for t in tensors(torch, split(n, LISTS), 1, device))
    cls, fn = (
        (AveragedModel, get_ema_multi_avg_fn) if ours else (swa_utils.AveragedModel, swa_utils.get_ema_multi_avg_fn)
    )
    avg = cls(module, multi_avg_fn=fn(DECAY))
    avg.update_parameters(module)  # the first update copies; later ones lerp
    return lambda: avg.update_parameters(module)


def _averaged_model_row(torch, n: int, device: str, plan, notes: str):
    """optkern.torch.AveragedModel's EMA update against torch's AveragedModel (both with torch's
    module bookkeeping around the average: what a torch training loop calls)."""
    case = CASES[f"AveragedParams ema update {LIST_LAYOUT}"]
    return compare(
        SUITE,
        label(f"optkern.torch.AveragedModel ema update {LIST_LAYOUT}", n),
        lambda: _averaged_model(torch, n, device, True),
        {"AveragedModel": lambda: _averaged_model(torch, n, device, False)},
        device,
        plan,
        bytes_moved=bytes_per_element(case, device) * n,
        note=notes,
    )


def run(device: str = "cpu", quick: bool = False, threads: int | None = None) -> list:
    """One row per case of CASES that runs on ``device``; the probe rows first. Returns a list of ``Row``."""
    torch, passive, plan = prepare(device, quick, threads)
    n = size(device, quick)
    cases = {name: c for name, c in CASES.items() if c.cuda or device != "cuda"}

    def key(c: Case):  # which probe a case is compared with
        return (0, n) if device == "cuda" else (c.written, n)

    first = probe_rows(SUITE, device, {key(c) for c in cases.values()}, plan)
    rows = []
    for name, c in cases.items():
        theirs = {}
        if torch is not None and c.torch is not None:
            impl, make = c.torch
            theirs[impl] = lambda make=make: _theirs(torch, make, n, device)
        notes = []
        if theirs and device == "cpu":
            notes.append("torch OMP_WAIT_POLICY=PASSIVE" if passive else "torch's wait policy unknown")
        row = compare(
            SUITE,
            label(name, n),
            lambda c=c: c.ours(n, device),
            theirs,
            device,
            plan,
            bytes_moved=bytes_per_element(c, device) * n,
            note="; ".join(notes),
        )
        rows.append((row, key(c)))
        if torch is not None and name.startswith("AveragedParams ema"):
            rows.append((_averaged_model_row(torch, n, device, plan, "; ".join(notes)), key(c)))
    return with_probes(SUITE, device, plan, first, rows)
