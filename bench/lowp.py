"""Adam step on N params: fp32 vs bf16 params+grads with fp32 master vs + 8-bit states
(optkern._cpu.lowp_step), and torch's fused fp32 Adam. Usage: python bench/lowp.py [N] [repeats]"""

import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np

from optkern import _cpu, functional, lowp

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 24
R = int(sys.argv[2]) if len(sys.argv) > 2 else 5
rng = np.random.default_rng(0)
p = rng.standard_normal(N).astype(np.float32)
g = rng.standard_normal(N).astype(np.float32)


def best(f):
    ts = []
    for _ in range(R):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts), float(np.median(ts)), max(ts)


sc = [1e-3, 0.9, 0.999, 1e-8, 0.0]  # Adam hyper-parameters (lr, beta1, beta2, eps, weight_decay)
m, v = np.zeros(N, np.float32), np.zeros(N, np.float32)
rows = {"fp32 (28 B/elem)": (best(lambda: functional.adam_([p], [g], [m], [v], step=1)), 28)}
pb, gb, w = lowp.to_bfloat16(p, raw=True), lowp.to_bfloat16(g, raw=True), p.copy()
rows["bf16 p,g + fp32 master, fp32 m,v (32 B)"] = (
    best(
        lambda: _cpu.lowp_step(
            "adam", sc, [False], [pb], [gb], [w], [[m], [v]], None, "bfloat16", "float32", False, 0, 1, 256
        )
    ),
    32,
)
cm, cv = np.zeros(N, np.uint8), np.zeros(N, np.uint8)
sm, sv = np.zeros(N // 256, np.float32), np.zeros(N // 256, np.float32)
rows["bf16 p,g + fp32 master + 8-bit m,v (~18 B)"] = (
    best(
        lambda: _cpu.lowp_step(
            "adam", sc, [False], [pb], [gb], [w], [[cm], [cv]], [[sm], [sv]], "bfloat16", "int8", False, 0, 1, 256
        )
    ),
    2 + 2 + 8 + 2 + 2 + 4 * 2 * 4 / 256 * 2,
)
try:
    import torch

    tp, tg = torch.from_numpy(p.copy()), torch.from_numpy(g)
    st = [torch.zeros_like(tp), torch.zeros_like(tp)]
    stepbuf = [torch.tensor(0.0)]
    rows["torch fused fp32 Adam (28 B)"] = (
        best(
            lambda: torch._fused_adam_(
                [tp],
                [tg],
                [st[0]],
                [st[1]],
                [],
                stepbuf,
                lr=1e-3,
                beta1=0.9,
                beta2=0.999,
                weight_decay=0.0,
                eps=1e-8,
                amsgrad=False,
                maximize=False,
            )
        ),
        28,
    )
except Exception as e:  # torch missing or no fused CPU Adam
    print("torch:", e)
for k, ((lo, med, hi), b) in rows.items():
    print(f"{k:48s} min {lo * 1e3:7.2f} ms  median {med * 1e3:7.2f}  max {hi * 1e3:7.2f}  {b * N / lo / 1e9:6.1f} GB/s")
