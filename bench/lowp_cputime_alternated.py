"""Case (c) of bench/lowp.py (Adam, bf16 params + grads, fp32 master, 8-bit states, block 256) in
**process CPU time per element** (all threads' time summed), an old optkern package and this one
alternated, one process per measurement. On a shared host wall clocks swing with other users' load
while a step's own CPU time mostly does not (bench/RESULTS.md, 51st session): this is the number
to compare there; a memory-bound claim still needs bench/lowp.py on a quiet host.

    python bench/lowp_cputime_alternated.py --old DIR [--n 16777216] [--rounds 5] [--steps 10]
        [--threads 1,2] [--step 1,20000]

DIR holds an older ``optkern`` package (src/optkern with its built ``_cpu`` .so). For every thread
count and --step value, each round runs one process per package (old, then new); a process makes
the optimizer, takes its first step (the state), sets the step count (as bench/lowp.py --step),
warms up twice, then times --steps steps: the median of 3 such measurements, in ns per element.
Printed per configuration: median, min and max over rounds, and new / old of the medians.
OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep: no spinning counted as work).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from _alternate import child


def one(n: int, steps: int, step: int) -> float:
    import numpy as np

    from optkern import lowp, optim

    rng = np.random.default_rng(0)
    half = lowp.bfloat16_dtype()
    p = rng.standard_normal(n, dtype=np.float32).astype(half)
    g = (rng.standard_normal(n, dtype=np.float32) * np.float32(1e-2)).astype(half)
    opt = optim.Adam([p], lr=1e-3, master_weights=True, state_dtype="int8", block_size=256)
    opt.step([g])
    if step > 1:  # (as bench/lowp.py's at_step)
        sd = opt.state_dict()
        for entry in sd["state"].values():
            entry["step"] = step
        opt.load_state_dict(sd)
    opt.step([g])
    opt.step([g])
    out = []
    for _ in range(3):
        t = time.process_time()
        for _ in range(steps):
            opt.step([g])
        out.append((time.process_time() - t) / (steps * n) * 1e9)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="directory holding the old optkern package")
    ap.add_argument("--n", type=int, default=1 << 24)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--step", default="1,20000")
    ap.add_argument("--child", nargs=3, type=int, metavar=("N", "STEPS", "STEP"))
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one(*a.child)))
        return
    if a.old is None:
        ap.error("--old DIR is required")
    paths = {"old": os.path.abspath(a.old), "new": str(Path(__file__).resolve().parent.parent / "src")}
    for threads in [int(x) for x in a.threads.split(",")]:
        for step in [int(x) for x in a.step.split(",")]:
            t: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(a.rounds):
                for k, pp in paths.items():
                    args = ["--child", str(a.n), str(a.steps), str(step)]
                    t[k].append(child(__file__, args, pp, threads))
            med = {k: statistics.median(v) for k, v in t.items()}
            pairs = " ".join(f"{o:.3f}/{w:.3f}" for o, w in zip(t["old"], t["new"], strict=True))
            print(
                f"threads {threads} step {step:6d}: old {med['old']:.3f} [{min(t['old']):.3f}, {max(t['old']):.3f}]"
                f"  new {med['new']:.3f} [{min(t['new']):.3f}, {max(t['new']):.3f}] ns/elem"
                f"  new/old {med['new'] / med['old']:.3f}  pairs old/new: {pairs}",
                flush=True,
            )


if __name__ == "__main__":
    main()
