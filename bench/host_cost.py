"""Host cost per array of the list calls whose kernel is one multi-tensor launch.

    python bench/host_cost.py [--device cpu|cuda] [--arrays 200] [--size 1] [--emulated]

Times ``clip_grad_value_``, ``clip_grad_norm_``, ``GradScaler.unscale_`` + ``update`` and
``AveragedParams.update`` (EMA) over lists of tiny arrays (``--size`` elements each), where the
kernels cost next to nothing and what is left is Python and argument reading. Each call is
timed over 1 array and over ``--arrays`` arrays: the slope is the cost per array, the
1-array time the fixed cost. ``--device cuda`` times CuPy arrays, then NumPy arrays (and torch's
foreach equivalents over CUDA tensors when torch is there); ``--device cpu`` NumPy only.
``--emulated`` runs against the CPU-emulated CUDA module (tools/cuda_emu: build it first with
``tools/cuda_emu/run`` or ``tools/cuda_emu/build.py``) and its CuPy stand-in, with its kernels
skipped (``OKEMU_SKIP_KERNELS``: emulated, they cost more than everything else); the stand-in's
attribute costs are not CuPy's: read its numbers as the amount of per-array work, not GPU times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup(emulated: bool) -> None:
    """The checkout's src/ first when it holds a built extension; the emulated CUDA module and
    the CuPy stand-in when asked (as tools/cuda_emu's pytest plugin sets them up)."""
    src = ROOT / "src"
    if any((src / "optkern" / f"_cpu{sfx}").exists() for sfx in EXTENSION_SUFFIXES):
        sys.path.insert(0, str(src))
    if emulated:
        os.environ["OKEMU_SKIP_KERNELS"] = "1"  # (read by the runtime at its first launch)
        sys.path.insert(0, str(ROOT / "tools" / "cuda_emu" / "py"))
        import optkern

        build = Path(os.environ.get("OKEMU_BUILD", ROOT / "build" / "cuda-emu"))
        optkern.__path__.insert(0, str(build / "optkern"))


def _time(call, repeat: int, inner: int, sync) -> float:
    """Median seconds of one call over ``repeat`` rounds of ``inner`` calls (after a warm-up)."""
    for _ in range(3):
        call()
    sync()
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            call()
        sync()
        rounds.append((time.perf_counter() - t0) / inner)
    return statistics.median(rounds)


def _cases(xp, n: int, size: int) -> dict:
    """Case name -> (zero-argument call) over ``n`` fresh arrays of ``size`` float32 elements."""
    import numpy as np

    import optkern
    from optkern.amp import GradScaler
    from optkern.swa import AveragedParams

    rng = np.random.default_rng(0)

    def arrays():
        return [xp.asarray(rng.standard_normal(size).astype(np.float32)) for _ in range(n)]

    grads = arrays()
    scaler = GradScaler(init_scale=1.0, growth_interval=1 << 30)
    params = arrays()
    avg = AveragedParams(params, mode="ema", decay=0.99)
    avg.update(params)  # (the first update copies; later ones lerp)

    def unscale():
        scaler.unscale_(grads)
        scaler.update()  # (a second unscale_ without it raises)

    return {
        "clip_grad_value_": lambda: optkern.clip_grad_value_(grads, 0.5),
        "clip_grad_norm_": lambda: optkern.clip_grad_norm_(grads, 1e9),
        "GradScaler unscale_+update": unscale,
        "AveragedParams.update (ema)": lambda: avg.update(params),
    }


def _torch_cases(n: int, size: int) -> dict:
    """torch's foreach equivalents over ``n`` CUDA tensors (what the GPU rows compare with)."""
    import torch

    gs = [torch.randn(size, device="cuda") for _ in range(n)]
    ps = [torch.randn(size, device="cuda") for _ in range(n)]
    avg = [p.clone() for p in ps]
    owners = [torch.empty(size, device="cuda") for _ in range(n)]  # torch clips parameters' .grad
    for o, g in zip(owners, gs):
        o.grad = g
    found = torch.zeros(1, device="cuda")
    inv = torch.ones(1, device="cuda")
    return {
        "clip_grad_value_": lambda: torch.nn.utils.clip_grad_value_(owners, 0.5, foreach=True),
        "clip_grad_norm_": lambda: torch.nn.utils.clip_grad_norm_(owners, 1e9, foreach=True),
        "GradScaler unscale_+update": lambda: torch._amp_foreach_non_finite_check_and_unscale_(gs, found, inv),
        "AveragedParams.update (ema)": lambda: torch._foreach_lerp_(avg, ps, 0.01),
    }


def _report(label: str, make, n: int, size: int, repeat: int, sync) -> None:
    one, many = make(1, size), make(n, size)
    print(f"\n{label}: {n} arrays of {size} element(s); us per call (1 array / {n}), us per array")
    for name in many:
        t1 = _time(one[name], repeat, 50, sync) * 1e6
        tn = _time(many[name], repeat, 10, sync) * 1e6
        print(f"  {name:30s} {t1:8.1f} / {tn:8.1f}   {(tn - t1) / (n - 1):6.2f} us/array")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--arrays", type=int, default=200)
    ap.add_argument("--size", type=int, default=1, help="elements per array")
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds (the median is printed)")
    ap.add_argument("--emulated", action="store_true", help="the CPU-emulated CUDA module (tools/cuda_emu)")
    args = ap.parse_args(argv)
    if args.arrays < 2:
        ap.error("--arrays: at least 2")
    _setup(args.emulated)
    import numpy as np

    if args.device == "cuda":
        import cupy

        def sync():
            cupy.cuda.get_current_stream().synchronize()

        kind = "CuPy (emulated: the stand-in's costs)" if args.emulated else "CuPy"
        _report(kind, lambda n, s: _cases(cupy, n, s), args.arrays, args.size, args.repeat, sync)
    _report("NumPy", lambda n, s: _cases(np, n, s), args.arrays, args.size, args.repeat, lambda: None)
    if args.device == "cuda" and not args.emulated:
        try:
            import torch
        except ImportError:
            return 0
        if torch.cuda.is_available():
            _report("torch foreach (CUDA)", _torch_cases, args.arrays, args.size, args.repeat, torch.cuda.synchronize)
    return 0


if __name__ == "__main__":
    sys.exit(main())
