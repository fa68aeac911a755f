"""GPU optimizer-step benchmark: optkern._cuda vs torch.optim (foreach, fused).

Adam, AdamW and SGD with momentum on one flat float32 array of --size
elements and on --arrays arrays totalling the same size, plus a
device-to-device copy probe measured in the same run. Times are CUDA-event
medians over --reps steps after --warmup steps. Prints ms, GB/s (bytes each
step must move: 28 B/elem for Adam, 20 for SGD momentum), % of the copy
probe and torch/optkern time ratios (> 1: optkern is faster); --json writes
the figures.

    python bench/optim_cuda.py [--size 268435456] [--arrays 1000] [--json out.json]

`python bench/optim.py --device cuda` calls run(args) with its own namespace;
missing fields take the defaults below.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

DEFAULTS = dict(size=1 << 28, arrays=1000, reps=20, warmup=5, json=None, optimizers="adam,adamw,sgd_momentum",
                seed=0)
BYTES_PER_ELEM = {"adam": 28, "adamw": 28, "sgd_momentum": 20}
LR, B1, B2, EPS, WD, MOM = 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.9


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark (also usable by bench/optim.py)."""
    p.add_argument("--size", type=int, default=DEFAULTS["size"], help="total float32 elements (default 256M)")
    p.add_argument("--arrays", type=int, default=DEFAULTS["arrays"], help="arrays in the many-array case")
    p.add_argument("--reps", type=int, default=DEFAULTS["reps"], help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=DEFAULTS["warmup"], help="untimed steps first")
    p.add_argument("--optimizers", default=DEFAULTS["optimizers"], help="comma list of adam,adamw,sgd_momentum")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--json", default=None, help="write results as JSON to this path ('-' for stdout)")


def _opt(args, name):
    return getattr(args, name, None) if getattr(args, name, None) is not None else DEFAULTS[name]


def split_sizes(total: int, count: int, seed: int) -> list[int]:
    """`count` sizes summing to `total`, log-normally spread like a network's layers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.lognormal(0.0, 1.5, count)
    sizes = np.maximum(1, np.floor(w / w.sum() * total)).astype(np.int64)
    sizes[np.argmax(sizes)] += total - int(sizes.sum())
    return [int(s) for s in sizes]


def median_ms(step, reps: int, warmup: int, event, sync) -> float:
    """Median of per-step times measured between CUDA events around `step()`."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(reps):
        start, end = event(), event()
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) if hasattr(start, "elapsed_time") else _cupy_elapsed(start, end))
    return statistics.median(times)


def _cupy_elapsed(start, end):
    import cupy as cp

    return cp.cuda.get_elapsed_time(start, end)


# ---- optkern ---------------------------------------------------------------------

def optkern_step(name, params, grads):
    """A closure doing one optkern step (host scalars as optkern.optim computes them)."""
    import cupy as cp

    from optkern import _backend

    cuda = _backend.cuda_module()
    zeros = lambda: [cp.zeros_like(p) for p in params]  # noqa: E731
    t = [0]
    if name == "sgd_momentum":
        bufs = zeros()

        def step():
            t[0] += 1
            cuda.sgd_(params, grads, bufs, LR, MOM, 0.0, 0.0, False, False, t[0] == 1, False)
        return step
    m, v = zeros(), zeros()
    decoupled = name == "adamw"

    def step():
        t[0] += 1
        k = t[0]
        step_size = LR / (1 - B1 ** k)
        bc2_sqrt = math.sqrt(1 - B2 ** k)
        l2, decay = (0.0, 1 - LR * WD) if decoupled else (WD, 1.0)
        cuda.adam_(params, grads, m, v, None, step_size, B1, B2, EPS, l2, decay, bc2_sqrt, False)
    return step


# ---- torch -------------------------------------------------------------------------

def torch_step(name, params, mode):
    """One torch.optim step with `mode` in {"foreach", "fused"}; grads already set."""
    import torch

    kw = {mode: True}
    if name == "sgd_momentum":
        opt = torch.optim.SGD(params, lr=LR, momentum=MOM, **kw)
    elif name == "adam":
        opt = torch.optim.Adam(params, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD, **kw)
    else:
        opt = torch.optim.AdamW(params, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD, **kw)
    return opt.step


def copy_probe_gbs(n_bytes: int, reps: int, warmup: int) -> float:
    """Device-to-device copy bandwidth (read + write bytes per second), GB/s."""
    import cupy as cp

    src = cp.ones(n_bytes // 4, cp.float32)
    dst = cp.empty_like(src)
    ms = median_ms(lambda: dst.__setitem__(Ellipsis, src), reps, warmup, cp.cuda.Event, cp.cuda.Device().synchronize)
    del src, dst
    cp.get_default_memory_pool().free_all_blocks()
    return 2 * n_bytes / (ms * 1e-3) / 1e9


def run(args=None) -> dict:
    """Run the benchmark; returns {"device", "copy_probe_gbs", "results": [...]}."""
    import cupy as cp

    try:
        import torch

        have_torch = torch.cuda.is_available()
    except ImportError:
        have_torch = False
    args = args or argparse.Namespace()
    size, count = _opt(args, "size"), _opt(args, "arrays")
    reps, warmup = _opt(args, "reps"), _opt(args, "warmup")
    names = [s.strip() for s in _opt(args, "optimizers").split(",") if s.strip()]
    dev = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    device = dev["name"].decode() if isinstance(dev["name"], bytes) else str(dev["name"])
    probe = copy_probe_gbs(min(size * 4, 1 << 30), reps, warmup)
    print(f"device: {device}; copy probe {probe:.0f} GB/s; torch: {'yes' if have_torch else 'no CUDA torch'}")
    layouts = {"flat": [size], f"{count} arrays": split_sizes(size, count, _opt(args, "seed"))}
    results = []
    for layout, sizes in layouts.items():
        for name in names:
            bytes_moved = BYTES_PER_ELEM[name] * sum(sizes)
            row = {"optimizer": name, "layout": layout, "elements": sum(sizes), "arrays": len(sizes)}
            params = [cp.random.standard_normal(n, dtype=cp.float32) for n in sizes]
            grads = [cp.full(n, 1e-3, cp.float32) for n in sizes]
            ms = median_ms(optkern_step(name, params, grads), reps, warmup, cp.cuda.Event,
                           cp.cuda.Device().synchronize)
            row["optkern_ms"] = ms
            if have_torch:
                tp = [torch.as_tensor(p, device="cuda").clone().requires_grad_() for p in params]
                for p, g in zip(tp, grads):
                    p.grad = torch.as_tensor(g, device="cuda").clone()
                del params, grads
                for mode in ("foreach", "fused"):
                    tms = median_ms(torch_step(name, tp, mode), reps, warmup,
                                    lambda: torch.cuda.Event(enable_timing=True), torch.cuda.synchronize)
                    row[f"torch_{mode}_ms"] = tms
                del tp
                torch.cuda.empty_cache()
            else:
                del params, grads
            cp.get_default_memory_pool().free_all_blocks()
            for impl in ("optkern", "torch_foreach", "torch_fused"):
                if f"{impl}_ms" in row:
                    t = row[f"{impl}_ms"]
                    row[f"{impl}_gbs"] = bytes_moved / (t * 1e-3) / 1e9
                    row[f"{impl}_pct_probe"] = 100 * row[f"{impl}_gbs"] / probe
            results.append(row)
            line = (f"{layout:>12} {name:>13}: optkern {ms:8.3f} ms {row['optkern_gbs']:7.0f} GB/s "
                    f"({row['optkern_pct_probe']:5.1f}% of copy)")
            for mode in ("foreach", "fused"):
                if f"torch_{mode}_ms" in row:
                    line += f" | torch {mode} {row[f'torch_{mode}_ms']:8.3f} ms (x{row[f'torch_{mode}_ms'] / ms:.2f})"
            print(line, flush=True)
    out = {"device": device, "copy_probe_gbs": probe, "results": results}
    dest = _opt(args, "json")
    if dest == "-":
        json.dump(out, sys.stdout, indent=1)
        print()
    elif dest:
        with open(dest, "w") as f:
            json.dump(out, f, indent=1)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        import cupy  # noqa: F401
    except ImportError:
        sys.exit("bench/optim_cuda.py needs CuPy and a GPU (pip install 'optkern[cuda]')")
    run(args)


if __name__ == "__main__":
    main()
