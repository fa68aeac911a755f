"""Optimizer step benchmark: optkern vs PyTorch (for-loop, foreach, fused) vs a bandwidth probe.

    python bench/optim.py [--quick] [--json FILE] [--threads N] [--device cpu|cuda]

Cases: Adam, AdamW, SGD-momentum and Adagrad steps on one flat float32 array of 16M
and 64M elements and on 200 arrays totalling 16M. Every number comes from this run:
ms/step (median), effective GB/s (bytes an in-place step must move: each array read
once, written back once if updated, no write-allocate), % of the in-place
read-modify-write probe (`optkern._cpu.probe_rmw_`, same bytes, no arithmetic), and
the ratio torch/optkern (> 1: optkern faster). `--device cuda` runs
bench/optim_cuda.py's `run(args)` instead.

The timing pieces (`time_calls`, `cpu_case`, `step_overhead`, `run_cpu`) are
importable so that an `optkern bench` command can reuse them.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

# Optimizer -> (bytes per float32 element, arrays written in place incl. the param).
TRAFFIC = {"Adam": (28, 3), "AdamW": (28, 3), "SGD-momentum": (20, 2), "Adagrad": (20, 2)}
HP = {
    "Adam": dict(lr=1e-3),
    "AdamW": dict(lr=1e-3, weight_decay=1e-2),
    "SGD-momentum": dict(lr=1e-2, momentum=0.9),
    "Adagrad": dict(lr=1e-2),
}
M = 1 << 20


def time_calls(fn, repeat: int, warmup: int = 2) -> float:
    """Median seconds per call of ``fn()`` over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def layout_sizes(layout: str) -> list[int]:
    """Element counts of the arrays of a layout: 'flat16M', 'flat64M' or 'many16M' (200 arrays)."""
    if layout.startswith("flat"):
        return [int(layout[4:-1]) * M]
    total, n = 16 * M, 200
    rng = np.random.default_rng(0)
    w = rng.uniform(0.2, 1.8, n)  # uneven sizes, like the layers of a network
    sizes = np.floor(w / w.sum() * total).astype(int)
    sizes[-1] += total - sizes.sum()
    return [int(s) for s in sizes]


def _arrays(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s, dtype=np.float32) for s in sizes]


def optkern_step(name: str, sizes):
    """A zero-argument function doing one optkern step on fresh arrays of ``sizes``."""
    import optkern.optim as O
    params, grads = _arrays(sizes, 1), _arrays(sizes, 2)
    cls = {"Adam": O.Adam, "AdamW": O.AdamW, "SGD-momentum": O.SGD, "Adagrad": O.Adagrad}[name]
    opt = cls(params, **HP[name])
    return lambda: opt.step(grads)


def torch_step(name: str, sizes, mode: str):
    """One torch.optim step (mode 'forloop', 'foreach' or 'fused'), or None if unsupported."""
    import torch
    params = [torch.from_numpy(a).requires_grad_() for a in _arrays(sizes, 1)]
    for p, g in zip(params, _arrays(sizes, 2)):
        p.grad = torch.from_numpy(g)
    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "SGD-momentum": torch.optim.SGD,
           "Adagrad": torch.optim.Adagrad}[name]
    kw = {"forloop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[mode]
    try:
        opt = cls(params, **HP[name], **kw)
        opt.step()
    except (RuntimeError, TypeError, ValueError):
        return None
    return opt.step


def probe_step(name: str, n: int):
    """The in-place read-modify-write probe moving the bytes of ``name`` over n elements."""
    from optkern import _cpu
    _, written = TRAFFIC[name]
    w = _arrays([n] * written, 3)
    r = _arrays([n], 4)
    return lambda: _cpu.probe_rmw_(w, r, 0.0)


def cpu_case(name: str, layout: str, repeat: int, torch_modes=("forloop", "foreach", "fused")) -> list[dict]:
    """Rows for one optimizer on one layout: probe, optkern and each torch mode."""
    sizes = layout_sizes(layout)
    n = sum(sizes)
    nbytes = TRAFFIC[name][0] * n
    rows = []

    def add(impl, fn):
        if fn is None:
            rows.append(dict(case=name, layout=layout, impl=impl, ms=None))
            return
        t = time_calls(fn, repeat)
        rows.append(dict(case=name, layout=layout, impl=impl, ms=t * 1e3, gbs=nbytes / t / 1e9))
        gc.collect()

    add("probe", probe_step(name, n))
    add("optkern", optkern_step(name, sizes))
    if _have_torch():
        for mode in torch_modes:
            add(f"torch-{mode}", torch_step(name, sizes, mode))
    # The probe again at the end: the ceiling is its faster run (less drift bias).
    again = time_calls(probe_step(name, n), repeat) * 1e3
    if again < rows[0]["ms"]:
        rows[0].update(ms=again, gbs=nbytes / again / 1e6)
    probe = rows[0]["ms"]
    ours = rows[1]["ms"]
    for r in rows:
        if r["ms"] is not None:
            r["pct_probe"] = 100.0 * probe / r["ms"]
            r["torch_over_optkern"] = r["ms"] / ours
    return rows


def step_overhead(n_arrays: int = 100, repeat: int = 200) -> float:
    """Microseconds per optkern Adam step on ``n_arrays`` 4-element arrays (Python + call overhead)."""
    import optkern.optim as O
    params = [np.ones(4, np.float32) for _ in range(n_arrays)]
    grads = [np.ones(4, np.float32) for _ in range(n_arrays)]
    opt = O.Adam(params)
    return min(time_calls(lambda: opt.step(grads), repeat) for _ in range(3)) * 1e6


def _have_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def set_threads(n: int | None) -> int:
    """Use n OpenMP threads in optkern and torch (None: leave the defaults); returns the count."""
    from optkern import _cpu
    if n:
        _cpu.set_num_threads(n)
        if _have_torch():
            import torch
            torch.set_num_threads(n)
    return _cpu.get_num_threads()


def run_cpu(args) -> dict:
    """The whole CPU benchmark as a dict (meta + rows)."""
    import optkern
    threads = set_threads(args.threads)
    layouts = ["flat16M", "many16M"] if args.quick else ["flat16M", "flat64M", "many16M"]
    repeat = args.repeat or (5 if args.quick else 15)
    meta = dict(device="cpu", threads=threads, machine=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), optkern=optkern.info(), numpy=np.__version__,
                repeat=repeat, date=time.strftime("%Y-%m-%d %H:%M:%S"))
    if _have_torch():
        import torch
        meta["torch"] = torch.__version__
    rows = []
    for name in TRAFFIC:
        for layout in layouts:
            case_rows = cpu_case(name, layout, repeat)
            _print_rows(case_rows)
            rows += case_rows
    overhead = step_overhead()
    print(f"step() overhead, Adam on 100 arrays of 4 elements: {overhead:.1f} us")
    return dict(meta=meta, rows=rows, step_overhead_us_100_arrays=overhead)


def _print_rows(rows):
    for r in rows:
        if r["ms"] is None:
            print(f"{r['case']:<13} {r['layout']:<8} {r['impl']:<14} unsupported")
            continue
        print(f"{r['case']:<13} {r['layout']:<8} {r['impl']:<14} {r['ms']:8.2f} ms {r['gbs']:6.1f} GB/s "
              f"{r['pct_probe']:5.0f}% of probe  torch/optkern {r['torch_over_optkern']:.2f}")
    sys.stdout.flush()


def run_cuda(args) -> dict:
    """Delegate to bench/optim_cuda.py's run(args) (written alongside the CUDA kernels)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_cuda.py")
    if not os.path.exists(path):
        raise SystemExit("--device cuda: bench/optim_cuda.py is not there yet")
    spec = importlib.util.spec_from_file_location("optim_cuda", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.run(args)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="16M flat and 200-array layouts only, fewer repeats")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--threads", type=int, default=None, help="OpenMP / torch threads (default: all)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--repeat", type=int, default=None, help="timed steps per measurement (median)")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = run_cuda(args) if args.device == "cuda" else run_cpu(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
