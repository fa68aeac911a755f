"""Normalization: optkern.norm vs torch.nn.functional, forward and forward+backward, float32.

Cases: layer_norm 8192x1024 and 4096x4096, rms_norm 8192x1024, batch_norm
(training) 256x64x32x32, group_norm with 32 groups on 32x128x32x32; ``quick``
divides the batch dimension by 16. Forward+backward computes dx and the
weight and bias gradients from dy (torch: autograd ``backward(dy)``).

Bytes counted (n elements of x): the forward reads x and writes y, forward+
backward also reads dy and x and writes dx. On a CPU a written stream costs
twice (the write-allocate reads its lines first), so the counts are 3n and 7n
floats there, 2n and 5n on a GPU; the probe (in-place read-modify-write of one
array from another on the CPU, a device copy on the GPU) moves the same kind of
traffic. optkern writes outputs of 16 MiB or more with non-temporal stores,
which skip the write-allocate, so its %probe can pass 100 on the CPU.

"fwd out=" and "fwd+bwd out=" time the same into preallocated y and dx
(optkern only: torch.nn.functional has no ``out=``): the kernels without the
page faults that a fresh output of tens of MB costs (the OS zeroes every new
page; glibc returns blocks over 32 MB to it on free).
"""

from __future__ import annotations

import numpy as np

from . import env, probe
from .probe import M
from .timing import compare, plan_for

SUITE = "norm"
# name, shape, extra keyword arguments
CASES = [
    ("layer_norm", (8192, 1024), {}),
    ("layer_norm", (4096, 4096), {}),
    ("rms_norm", (8192, 1024), {}),
    ("batch_norm", (256, 64, 32, 32), {}),
    ("group_norm", (32, 128, 32, 32), {"groups": 32}),
]
QUICK_DIVISOR = 16
# pass -> (streams read, streams written)
TRAFFIC = {"fwd": (1, 1), "fwd+bwd": (3, 2), "fwd out=": (1, 1), "fwd+bwd out=": (3, 2)}
# "... out=": into preallocated y and dx (optkern only: torch.nn.functional has no out=),
# the kernels' own speed without the page faults of fresh large arrays.


def cases(quick: bool) -> list:
    """CASES, with the batch dimension divided by QUICK_DIVISOR when ``quick``."""
    if not quick:
        return CASES
    return [(name, (shape[0] // QUICK_DIVISOR,) + shape[1:], extra) for name, shape, extra in CASES]


def traffic_bytes(pass_: str, n: int, device: str, itemsize: int = 4) -> int:
    """Bytes a pass must move over ``n`` elements (write-allocate counted on the CPU)."""
    reads, writes = TRAFFIC[pass_]
    return (reads + writes * (1 if device == "cuda" else 2)) * n * itemsize


def _data(shape, name, seed=0):
    """Host float32 x, dy, weight, bias for one case."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    pshape = shape[-1:] if name in ("layer_norm", "rms_norm") else (shape[1],)
    w = (1 + 0.1 * rng.standard_normal(pshape)).astype(np.float32)
    b = (0.1 * rng.standard_normal(pshape)).astype(np.float32)
    return x, dy, w, b


def optkern_calls(name, host, extra, device):
    """(forward, forward+backward, forward into a preallocated output) zero-argument calls of
    optkern.norm on ``device``."""
    from optkern import norm

    if device == "cuda":
        import cupy as xp
    else:
        xp = np
    x, dy, w, b = (xp.asarray(a) for a in host)
    ns = x.shape[-1:]
    if name == "layer_norm":
        fwd = lambda out=None: norm.layer_norm(x, ns, w, b, out=out)  # noqa: E731
        bwd = lambda s, out=None: norm.layer_norm_backward(dy, x, w, s, out=out)  # noqa: E731
    elif name == "rms_norm":
        fwd = lambda out=None: norm.rms_norm(x, ns, w, eps=1e-6, out=out)  # noqa: E731
        bwd = lambda s, out=None: norm.rms_norm_backward(dy, x, w, s, out=out)  # noqa: E731
    elif name == "batch_norm":
        rm, rv = xp.zeros(x.shape[1], np.float32), xp.ones(x.shape[1], np.float32)
        fwd = lambda out=None: norm.batch_norm(x, w, b, rm, rv, training=True, out=out)  # noqa: E731
        bwd = lambda s, out=None: norm.batch_norm_backward(dy, x, w, s, out=out)  # noqa: E731
    else:
        fwd = lambda out=None: norm.group_norm(x, extra["groups"], w, b, out=out)  # noqa: E731
        bwd = lambda s, out=None: norm.group_norm_backward(dy, x, w, s, out=out)  # noqa: E731
    y, dx = xp.empty_like(x), xp.empty_like(x)
    return (lambda: fwd()), (lambda: bwd(fwd()[1])), (lambda: fwd(y)), (lambda: bwd(fwd(y)[1], dx))


def torch_calls(torch, name, host, extra, device):
    """(forward, forward+backward) zero-argument calls of torch.nn.functional on ``device``."""
    F = torch.nn.functional
    x, dy, w, b = (torch.as_tensor(a, device=device) for a in host)
    x.requires_grad_(True)
    w.requires_grad_(True)
    b.requires_grad_(True)
    ns = tuple(x.shape[-1:])
    if name == "layer_norm":
        f = lambda: F.layer_norm(x, ns, w, b)  # noqa: E731
    elif name == "rms_norm":
        f = lambda: F.rms_norm(x, ns, w, eps=1e-6)  # noqa: E731
    elif name == "batch_norm":
        rm, rv = torch.zeros(x.shape[1], device=device), torch.ones(x.shape[1], device=device)
        f = lambda: F.batch_norm(x, rm, rv, w, b, training=True)  # noqa: E731
    else:
        f = lambda: F.group_norm(x, extra["groups"], w, b)  # noqa: E731

    def fwd():
        with torch.no_grad():
            return f()

    def fwd_bwd():
        x.grad = w.grad = b.grad = None
        f().backward(dy)

    return fwd, fwd_bwd


def _probe(device, quick, plan):
    n = (1 if quick else 16) * M if device == "cpu" else (16 if quick else 64) * M
    return probe.cpu_rmw(SUITE, n, 1, plan) if device == "cpu" else probe.cuda_copy(SUITE, n, plan)


def run(device: str = "cpu", quick: bool = False, threads: int | None = None) -> list:
    """Every case's forward and forward+backward on ``device``; the probe row first."""
    env.set_threads(threads)
    plan = plan_for(quick)
    torch = env.torch_for(device)
    first = _probe(device, quick, plan)
    rows = []
    for name, shape, extra in cases(quick):
        host = _data(shape, name)
        n = int(np.prod(shape))
        label = f"{name} {'x'.join(map(str, shape))}"
        for k, pass_ in enumerate(TRAFFIC):
            # Defaults bind this iteration's values (compare() runs the calls before the loop moves on).
            ours = lambda k=k, name=name, host=host, extra=extra: optkern_calls(name, host, extra, device)[k]  # noqa: E731
            theirs = (
                {}
                if torch is None or k >= 2
                else {
                    "F": lambda k=k, name=name, host=host, extra=extra: torch_calls(torch, name, host, extra, device)[k]
                }
            )
            rows.append(
                compare(
                    SUITE, f"{label} {pass_}", ours, theirs, device, plan, bytes_moved=traffic_bytes(pass_, n, device)
                )
            )
    best = probe.faster(first, _probe(device, quick, plan))
    for r in rows:
        r.probe_gbs = best.gbs
    return [best] + rows
