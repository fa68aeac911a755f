"""Adam on N params through optkern.optim.Adam: (a) fp32, (b) bf16 params + grads with an fp32
master, (c) = (b) + 8-bit states, (d) fp32 params + 8-bit states; vs torch's fused fp32 Adam and
the in-place bandwidth probe (``_cpu.probe_rmw_``, 3 written + 1 read float32 arrays), measured in
the same run, rounds interleaved (each round times every case once), ratios taken per round.

    OMP_WAIT_POLICY=PASSIVE python bench/lowp.py [N] [rounds]      (default 16M, 7 rounds)

Bytes per element each case must move (each array read once, written once):
(a) p, m, v read+written 3 * 8, g read 4: 28.  (b) bf16 p 2 + 2, g 2, master 8, m, v 16: 30.
(c) bf16 p 4, g 2, master 8, m, v 2 * (1 + 1), scales 2 * 8 / block: 18 + 16 / block.
(d) p 8, g 4, m, v 4, scales: 16 + 16 / block.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP threads must not spin between calls
src = Path(__file__).resolve().parents[1] / "src"
if any((src / "optkern").glob("_cpu*")):
    sys.path.insert(0, str(src))

import numpy as np  # noqa: E402

from optkern import _cpu, lowp, optim  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 24
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
BLOCK = 256
rng = np.random.default_rng(0)
p32 = rng.standard_normal(N, dtype=np.float32)
g32 = rng.standard_normal(N, dtype=np.float32) * np.float32(1e-2)
bf = lowp.bfloat16_dtype()


def adam_case(params, grads, **kw):
    opt = optim.Adam([params], lr=1e-3, **kw)
    opt.step([grads])  # creates the state outside the timing
    return (lambda: opt.step([grads])), opt


cases = {}
bytes_per = {}
cases["(a) fp32"], opt_a = adam_case(p32.copy(), g32)
bytes_per["(a) fp32"] = 28
cases["(b) bf16 p,g + fp32 master"], opt_b = adam_case(p32.astype(bf), g32.astype(bf), master_weights=True)
bytes_per["(b) bf16 p,g + fp32 master"] = 30
cases["(c) (b) + 8-bit m,v"], opt_c = adam_case(
    p32.astype(bf), g32.astype(bf), master_weights=True, state_dtype="int8", block_size=BLOCK
)
bytes_per["(c) (b) + 8-bit m,v"] = 18 + 16 / BLOCK
cases["(d) fp32 p + 8-bit m,v"], opt_d = adam_case(p32.copy(), g32, state_dtype="int8", block_size=BLOCK)
bytes_per["(d) fp32 p + 8-bit m,v"] = 16 + 16 / BLOCK

w = [rng.standard_normal(N, dtype=np.float32) for _ in range(3)]
r = [rng.standard_normal(N, dtype=np.float32)]
cases["probe rmw 3w+1r"] = lambda: _cpu.probe_rmw_(w, r, 0.0)
bytes_per["probe rmw 3w+1r"] = 28
try:
    import torch

    tp, tg = torch.from_numpy(p32.copy()), torch.from_numpy(g32)
    topt = torch.optim.Adam([tp], lr=1e-3, fused=True)
    tp.grad = tg
    topt.step()
    cases["torch fused fp32 Adam"] = topt.step
    bytes_per["torch fused fp32 Adam"] = 28
except Exception as e:  # torch missing, or no fused CPU Adam
    print("torch:", e)

for f in cases.values():  # warm up
    f()
times: dict = {k: [] for k in cases}
for _ in range(ROUNDS):
    for k, f in cases.items():
        t0 = time.perf_counter()
        f()
        times[k].append(time.perf_counter() - t0)
t = {k: np.array(v) for k, v in times.items()}
probe = bytes_per["probe rmw 3w+1r"] * N / t["probe rmw 3w+1r"]  # bytes/s per round


def spread(x):
    return f"{np.median(x):6.2f} [{x.min():5.2f}, {x.max():5.2f}]"


print(f"Adam, N = {N:,} ({N / (1 << 20):.0f}M) params, {ROUNDS} rounds, {_cpu.get_num_threads()} threads")
print(f"{'case':28s} B/elem  {'median ms [min, max]':24s} GB/s    {'% probe [min, max]':24s} torch time / ours")
for k, ts in t.items():
    gbs = bytes_per[k] * N / ts
    line = f"{k:28s} {bytes_per[k]:6.2f}  {spread(ts * 1e3):24s} {np.median(gbs) / 1e9:6.1f}  "
    line += f"{spread(100 * gbs / probe):24s}"
    if "torch fused fp32 Adam" in t:
        line += f" {spread(t['torch fused fp32 Adam'] / ts)}"
    print(line)


def state_bytes(opt, master=True):
    return sum(
        a.nbytes
        for e in opt.state_dict()["state"].values()
        for k, a in e.items()
        if isinstance(a, np.ndarray) and (master or k != "master_param")
    )


sa = state_bytes(opt_a)
for name, o in (("(a)", opt_a), ("(b)", opt_b), ("(c)", opt_c), ("(d)", opt_d)):
    s, sm = state_bytes(o, False), state_bytes(o)
    print(
        f"optimizer state {name}: moments (+ scales) {s / 2**20:7.1f} MiB = {100 * s / sa:5.1f}% of fp32 Adam's; "
        f"with the fp32 master {sm / 2**20:7.1f} MiB = {100 * sm / sa:5.1f}%"
    )
