"""Adam (or --optimizer X) on N params through optkern.optim: (a) fp32, (b) half params + grads
with an fp32 master, (c) = (b) + 8-bit states, (d) fp32 params + 8-bit states, (e) = (b) + bf16
states; vs torch's fused fp32 optimizer (where torch has one) and an in-place bandwidth probe (3
written + 1 read float32 arrays), measured in the same run, rounds interleaved (each round times
every case once), ratios taken per round.

    OMP_WAIT_POLICY=PASSIVE python bench/lowp.py [N] [rounds] [--device cpu|cuda] [--optimizer X] [--step T]
    (16M, 7, cpu, Adam; X: Adam, NAdam, Adagrad, Adadelta, RMSprop, SGD -- SGD with momentum 0.9)
    --step T: every optimizer's step count set to T after its first step (a late step of a long run:
    Adam's bias corrections differ; from bc2_sqrt = 1 on, the 8-bit CPU step drops a division).

CPU: bfloat16 (ml_dtypes) params, the probe is ``_cpu.probe_rmw_``, wall-clock times. CUDA (CuPy
arrays, torch's CUDA fused Adam): float16 params (CuPy has no bfloat16; the bytes are the same),
the probe is a CuPy element-wise kernel, CUDA-event times on the current stream.

Bytes per element each case must move (each array read once, written once):
(a) p, m, v read+written 3 * 8, g read 4: 28.  (b) half p 2 + 2, g 2, master 8, m, v 16: 30.
(c) half p 4, g 2, master 8, m, v 2 * (1 + 1), scales 2 * 8 / block: 18 + 16 / block.
(d) p 8, g 4, m, v 4, scales: 16 + 16 / block.  (e) = (b) with bf16 m, v (stochastic rounding): 22.
With K state arrays (Adam 2): (a) 12 + 8K, (b) 14 + 8K, (c) 14 + 2K + 8K / block, (d) 12 + 2K +
8K / block, (e) 14 + 4K.
"(c) via optkern.torch": (c) on a torch bfloat16 tensor through the adapter (CPU).
"""

import argparse
import os
import sys
import time
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP threads must not spin between calls
src = Path(__file__).resolve().parents[1] / "src"
if any((src / "optkern" / f"_cpu{sfx}").exists() for sfx in EXTENSION_SUFFIXES):
    sys.path.insert(0, str(src))

import numpy as np  # noqa: E402

from optkern import _cpu, lowp, optim  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("n", nargs="?", type=int, default=1 << 24)
ap.add_argument("rounds", nargs="?", type=int, default=7)
ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
HYPER = {"Adam": dict(lr=1e-3), "NAdam": dict(lr=2e-3), "Adagrad": dict(lr=1e-2), "Adadelta": dict(lr=1.0)}
HYPER |= {"RMSprop": dict(lr=1e-2), "SGD": dict(lr=1e-3, momentum=0.9)}
ap.add_argument("--optimizer", choices=sorted(HYPER), default="Adam")
ap.add_argument("--step", type=int, default=0)
args = ap.parse_args()
NAME = args.optimizer
TORCH = f"torch fused fp32 {NAME}"
N, ROUNDS, CUDA = args.n, args.rounds, args.device == "cuda"
BLOCK = 256

if CUDA:
    import cupy as xp

    half = np.float16
    sync = xp.cuda.Device().synchronize
else:
    xp = np
    half = lowp.bfloat16_dtype()

    def sync():
        pass


rng = np.random.default_rng(0)
p32 = rng.standard_normal(N, dtype=np.float32)
g32 = rng.standard_normal(N, dtype=np.float32) * np.float32(1e-2)


def dev(a):
    return xp.asarray(a)


def at_step(opt):
    """Set the step count of every state entry of `opt` (optkern or torch state_dict) to --step."""
    if args.step <= 1:
        return
    sd = opt.state_dict()
    for entry in sd["state"].values():
        if "step" in entry:
            v = entry["step"]
            entry["step"] = v.fill_(args.step) if hasattr(v, "fill_") else args.step
    opt.load_state_dict(sd)


def adam_case(params, grads, **kw):
    opt = getattr(optim, NAME)([params], **HYPER[NAME], **kw)
    opt.step([grads])  # creates the state outside the timing
    at_step(opt)
    return (lambda: opt.step([grads])), opt


H = "half" if CUDA else "bf16"
cases, bytes_per, opts = {}, {}, {}
cases["(a) fp32"], opts["(a)"] = adam_case(dev(p32), dev(g32))
K = sum(getattr(a, "ndim", 0) > 0 for a in opts["(a)"].state_dict()["state"][0].values())  # state arrays
bytes_per["(a) fp32"] = 12 + 8 * K
cases[f"(b) {H} p,g + fp32 master"], opts["(b)"] = adam_case(
    dev(p32.astype(half)), dev(g32.astype(half)), master_weights=True
)
bytes_per[f"(b) {H} p,g + fp32 master"] = 14 + 8 * K
cases["(c) (b) + 8-bit m,v"], opts["(c)"] = adam_case(
    dev(p32.astype(half)), dev(g32.astype(half)), master_weights=True, state_dtype="int8", block_size=BLOCK
)
bytes_per["(c) (b) + 8-bit m,v"] = 14 + 2 * K + 8 * K / BLOCK
cases["(d) fp32 p + 8-bit m,v"], opts["(d)"] = adam_case(dev(p32), dev(g32), state_dtype="int8", block_size=BLOCK)
bytes_per["(d) fp32 p + 8-bit m,v"] = 12 + 2 * K + 8 * K / BLOCK
cases["(e) (b) + bf16 m,v (SR)"], opts["(e)"] = adam_case(
    dev(p32.astype(half)), dev(g32.astype(half)), master_weights=True, state_dtype="bfloat16"
)
bytes_per["(e) (b) + bf16 m,v (SR)"] = 14 + 4 * K

w = [dev(rng.standard_normal(N, dtype=np.float32)) for _ in range(3)]
r = dev(rng.standard_normal(N, dtype=np.float32))
if CUDA:
    rmw = xp.ElementwiseKernel("float32 r", "float32 a, float32 b, float32 c", "a += r; b += r; c += r", "probe_rmw")
    cases["probe rmw 3w+1r"] = lambda: rmw(r, w[0], w[1], w[2])
else:
    cases["probe rmw 3w+1r"] = lambda: _cpu.probe_rmw_(w, [r], 0.0)
bytes_per["probe rmw 3w+1r"] = 28
try:
    import torch

    where = "cuda" if CUDA else "cpu"
    tp, tg = torch.from_numpy(p32.copy()).to(where), torch.from_numpy(g32).to(where)
    topt = getattr(torch.optim, NAME)([tp], **HYPER[NAME], fused=True)
    tp.grad = tg
    topt.step()
    at_step(topt)
    cases[TORCH] = topt.step
    bytes_per[TORCH] = 12 + 8 * K
    if not CUDA and NAME == "Adam":  # case (c) as a torch user runs it: optkern.torch on a bfloat16 tensor
        import optkern.torch as OT

        hp = torch.from_numpy(p32).to(torch.bfloat16)
        hp.grad = torch.from_numpy(g32).to(torch.bfloat16)
        oopt = OT.Adam([hp], lr=1e-3, master_weights=True, state_dtype="int8", block_size=BLOCK)
        oopt.step()
        at_step(oopt)
        cases["(c) via optkern.torch"] = oopt.step
        bytes_per["(c) via optkern.torch"] = 18 + 16 / BLOCK
except Exception as e:  # torch missing, or no fused Adam here
    print("torch:", e)
    torch = None


def timed(f):
    """Seconds of one call: wall clock (CPU), CUDA events on the current streams (GPU)."""
    if not CUDA:
        t0 = time.perf_counter()
        f()
        return time.perf_counter() - t0
    a, b = xp.cuda.Event(), xp.cuda.Event()
    tt = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if torch is not None else []
    a.record()
    for e in tt[:1]:
        e.record()
    f()
    b.record()
    for e in tt[1:]:
        e.record()
    b.synchronize()
    if tt:
        torch.cuda.synchronize()
    # the work ran on CuPy's or torch's current stream: the other interval is (nearly) empty
    return max([xp.cuda.get_elapsed_time(a, b)] + [tt[0].elapsed_time(tt[1])] * bool(tt)) / 1e3


for f in cases.values():  # warm up
    f()
sync()
times: dict = {k: [] for k in cases}
for _ in range(ROUNDS):
    for k, f in cases.items():
        times[k].append(timed(f))
t = {k: np.array(v) for k, v in times.items()}
probe = bytes_per["probe rmw 3w+1r"] * N / t["probe rmw 3w+1r"]  # bytes/s per round


def spread(x):
    return f"{np.median(x):6.2f} [{x.min():5.2f}, {x.max():5.2f}]"


if CUDA:
    where = "GPU " + xp.cuda.runtime.getDeviceProperties(0)["name"].decode()
else:
    where = f"{_cpu.get_num_threads()} threads"
late = f", from step {args.step}" if args.step > 1 else ""
print(f"{NAME}, N = {N:,} ({N / (1 << 20):.0f}M) params, {ROUNDS} rounds, {where}{late}")
print(f"{'case':28s} B/elem  {'median ms [min, max]':24s} GB/s    {'% probe [min, max]':24s} torch time / ours")
for k, ts in t.items():
    gbs = bytes_per[k] * N / ts
    line = f"{k:28s} {bytes_per[k]:6.2f}  {spread(ts * 1e3):24s} {np.median(gbs) / 1e9:6.1f}  "
    line += f"{spread(100 * gbs / probe):24s}"
    if TORCH in t:
        line += f" {spread(t[TORCH] / ts)}"
    print(line)


def state_bytes(opt, master=True):
    return sum(
        a.nbytes
        for e in opt.state_dict()["state"].values()
        for k, a in e.items()
        if hasattr(a, "nbytes") and getattr(a, "ndim", 0) > 0 and (master or k != "master_param")
    )


sa = state_bytes(opts["(a)"])
for name, o in opts.items():
    s, sm = state_bytes(o, False), state_bytes(o)
    print(
        f"optimizer state {name}: moments (+ scales) {s / 2**20:7.1f} MiB = {100 * s / sa:5.1f}% of fp32 {NAME}'s; "
        f"with the fp32 master {sm / 2**20:7.1f} MiB = {100 * sm / sa:5.1f}%"
    )
