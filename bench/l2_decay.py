"""L2 weight decay's step (rules::effective_grad, one fma since 2026-12-01) against torch.

    OMP_WAIT_POLICY=PASSIVE python bench/l2_decay.py [N] [ROUNDS]

Flat float32 arrays of N elements (default 16M), SGD (momentum 0.9) and Adam with
weight_decay=0.01 (L2, not decoupled): optkern.optim vs torch.optim fused, rounds
interleaved in one process; prints each case's median [min, max] ms and torch / ours.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

import optkern.optim as O


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 24
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rng = np.random.default_rng(0)
    cases = {
        "SGD": (O.SGD, torch.optim.SGD, dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
        "Adam": (O.Adam, torch.optim.Adam, dict(lr=1e-3, weight_decay=0.01)),
    }
    print(f"N={n}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name, (ours_cls, torch_cls, hp) in cases.items():
        p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
        ours = ours_cls([p.copy()], **hp)
        tp = torch.tensor(p.copy())
        tp.grad = torch.tensor(g)
        theirs = torch_cls([tp], fused=True, **hp)
        ours.step([g])
        theirs.step()
        t_o, t_t = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            ours.step([g])
            t_o.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            theirs.step()
            t_t.append(time.perf_counter() - t0)
        mo, mt = statistics.median(t_o) * 1e3, statistics.median(t_t) * 1e3
        print(
            f"{name}: ours {mo:.1f} [{min(t_o) * 1e3:.1f}, {max(t_o) * 1e3:.1f}] ms, "
            f"torch fused {mt:.1f} [{min(t_t) * 1e3:.1f}, {max(t_t) * 1e3:.1f}] ms, torch / ours {mt / mo:.2f}"
        )


if __name__ == "__main__":
    main()
