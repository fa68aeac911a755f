"""Normalization benchmark: optkern.norm vs torch.nn.functional on the same data.

    python bench/norm.py [--device cpu|cuda] [--quick] [--json FILE]

For each case, forward and forward+backward times (median of repeats), the
achieved bandwidth under a minimal-traffic model (forward reads x and writes
y: 2 n itemsize bytes; backward adds dy, x read and dx written: 3 n more), as a
fraction of a streaming read+write probe (copy of a large array) measured in
the same run, and torch's time on the same arrays. The functions `probe`,
`time_case` and `run` are importable (the `optkern bench` CLI can call them).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from optkern import norm  # noqa: E402

CASES = [
    # name, shape, extra
    ("layer_norm", (8192, 1024), {}),
    ("layer_norm", (4096, 4096), {}),
    ("rms_norm", (8192, 1024), {}),
    ("batch_norm", (256, 64, 32, 32), {}),
    ("group_norm", (32, 128, 32, 32), {"groups": 32}),
]


def _torch():
    try:
        import torch

        return torch
    except ImportError:
        return None


class _Timer:
    """Median wall time of fn() in seconds, synchronizing the device when needed."""

    def __init__(self, device):
        self.device = device
        if device == "cuda":
            import cupy

            self.cp = cupy

    def sync(self):
        if self.device == "cuda":
            self.cp.cuda.get_current_stream().synchronize()
            t = _torch()
            if t is not None and t.cuda.is_available():
                t.cuda.synchronize()

    def __call__(self, fn, repeats, warmup=2):
        for _ in range(warmup):
            fn()
        self.sync()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            self.sync()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)


def probe(device="cpu", nbytes=256 << 20, repeats=5):
    """Streaming read+write bandwidth (GB/s counting both): copy one large float32 array into another.

    CPU: torch's multithreaded copy when torch is installed, else NumPy (one thread).
    CUDA: a CuPy device-to-device copy.
    """
    n = nbytes // 4
    timer = _Timer(device)
    if device == "cuda":
        import cupy

        a, b = cupy.ones(n, cupy.float32), cupy.empty(n, cupy.float32)
        fn = lambda: b.__setitem__(Ellipsis, a)  # noqa: E731
    else:
        torch = _torch()
        if torch is not None:
            a, b = torch.ones(n), torch.empty(n)
            fn = lambda: b.copy_(a)  # noqa: E731
        else:
            a, b = np.ones(n, np.float32), np.empty(n, np.float32)
            fn = lambda: np.copyto(b, a)  # noqa: E731
    return 2 * n * 4 / timer(fn, repeats) / 1e9


def _ours(name, x, dy, w, b, extra):
    shape = x.shape
    if name == "layer_norm":
        ns = shape[-1:]
        fwd = lambda: norm.layer_norm(x, ns, w, b)  # noqa: E731
        bwd = lambda s: norm.layer_norm_backward(dy, x, w, s)  # noqa: E731
    elif name == "rms_norm":
        ns = shape[-1:]
        fwd = lambda: norm.rms_norm(x, ns, w, eps=1e-6)  # noqa: E731
        bwd = lambda s: norm.rms_norm_backward(dy, x, w, s)  # noqa: E731
    elif name == "batch_norm":
        xp = type(x).__module__.split(".")[0]
        mod = __import__(xp)
        rm, rv = mod.zeros(shape[1], x.dtype), mod.ones(shape[1], x.dtype)
        fwd = lambda: norm.batch_norm(x, w, b, rm, rv, training=True)  # noqa: E731
        bwd = lambda s: norm.batch_norm_backward(dy, x, w, s)  # noqa: E731
    else:
        G = extra["groups"]
        fwd = lambda: norm.group_norm(x, G, w, b)  # noqa: E731
        bwd = lambda s: norm.group_norm_backward(dy, x, w, s)  # noqa: E731
    return fwd, lambda: bwd(fwd()[1])


def _theirs(name, x, dy, w, b, extra, device):
    torch = _torch()
    if torch is None or (device == "cuda" and not torch.cuda.is_available()):
        return None, None
    F = torch.nn.functional
    dev = "cuda" if device == "cuda" else "cpu"
    conv = (lambda a: torch.as_tensor(a.get() if hasattr(a, "get") else a, device=dev))
    tx = conv(x).requires_grad_(True)
    tdy, tw, tb = conv(dy), conv(w).requires_grad_(True), conv(b).requires_grad_(True)
    shape = tuple(x.shape)
    if name == "layer_norm":
        f = lambda: F.layer_norm(tx, shape[-1:], tw, tb)  # noqa: E731
    elif name == "rms_norm":
        f = lambda: F.rms_norm(tx, shape[-1:], tw, eps=1e-6)  # noqa: E731
    elif name == "batch_norm":
        rm, rv = torch.zeros(shape[1], device=dev), torch.ones(shape[1], device=dev)
        f = lambda: F.batch_norm(tx, rm, rv, tw, tb, training=True)  # noqa: E731
    else:
        f = lambda: F.group_norm(tx, extra["groups"], tw, tb)  # noqa: E731

    def fwd():
        with torch.no_grad():
            return f()

    def fwd_bwd():
        tx.grad = tw.grad = tb.grad = None
        f().backward(tdy)

    return fwd, fwd_bwd


def time_case(name, shape, extra=None, device="cpu", repeats=10, dtype=np.float32, seed=0):
    """Times one case; returns a dict with ms, GB/s and torch's ms for forward and forward+backward."""
    extra = extra or {}
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    dy = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    pshape = shape[-1:] if name in ("layer_norm", "rms_norm") else (shape[1],)
    w = (1 + 0.1 * rng.standard_normal(pshape)).astype(dtype)
    b = (0.1 * rng.standard_normal(pshape)).astype(dtype)
    if device == "cuda":
        import cupy

        x, dy, w, b = (cupy.asarray(a) for a in (x, dy, w, b))
    timer = _Timer(device)
    nbytes = x.size * x.dtype.itemsize
    out = {"case": name, "shape": list(shape), "device": device, "dtype": np.dtype(dtype).name}
    fwd, fwd_bwd = _ours(name, x, dy, w, b, extra)
    tf, tfb = _theirs(name, x, dy, w, b, extra, device)
    for label, fn, tfn, traffic in (("fwd", fwd, tf, 2), ("fwd+bwd", fwd_bwd, tfb, 5)):
        t = timer(fn, repeats)
        out[f"{label}_ms"] = t * 1e3
        out[f"{label}_GBps"] = traffic * nbytes / t / 1e9
        out[f"torch_{label}_ms"] = timer(tfn, repeats) * 1e3 if tfn else None
    return out


def run(device="cpu", quick=False, cases=None):
    """Runs the probe and every case; returns {"probe_GBps": ..., "results": [...]}."""
    repeats = 3 if quick else 10
    bw = probe(device, repeats=3 if quick else 5)
    results = []
    for name, shape, extra in cases or CASES:
        r = time_case(name, shape, extra, device=device, repeats=repeats)
        for label in ("fwd", "fwd+bwd"):
            r[f"{label}_of_probe"] = r[f"{label}_GBps"] / bw
        results.append(r)
    return {"device": device, "probe_GBps": bw, "threads": os.environ.get("OMP_NUM_THREADS"), "results": results}


def _print(report):
    print(f"device {report['device']}: streaming read+write probe {report['probe_GBps']:.1f} GB/s")
    print(f"{'case':<12}{'shape':<20}{'pass':<9}{'ms':>9}{'GB/s':>8}{'probe':>7}{'torch ms':>10}{'speedup':>9}")
    for r in report["results"]:
        for label in ("fwd", "fwd+bwd"):
            t = r[f"torch_{label}_ms"]
            ts = f"{t:10.2f}" if t is not None else f"{'-':>10}"
            sp = f"{t / r[f'{label}_ms']:8.2f}x" if t is not None else f"{'-':>9}"
            print(f"{r['case']:<12}{'x'.join(map(str, r['shape'])):<20}{label:<9}{r[f'{label}_ms']:9.2f}"
                  f"{r[f'{label}_GBps']:8.1f}{r[f'{label}_of_probe']:7.0%}{ts}{sp}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args(argv)
    report = run(args.device, args.quick)
    _print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
