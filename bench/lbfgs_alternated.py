"""L-BFGS step against torch.optim.LBFGS at one history size, implementations alternated (issue 17).

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src python bench/lbfgs_alternated.py [--n 16777216]
        [--history 100] [--order otto] [--steps 7]

``optkern bench second`` builds each implementation once; at history 100 on 16M parameters each
holds 12.8 GB of rows, so the two cannot share memory and a single pair of runs takes in this
shared VM's memory swings. Here each letter of ``--order`` (``o`` ours, ``t`` torch) builds that
implementation alone (the bench's own setup: ``second_order._ours_lbfgs`` / ``_torch_lbfgs``,
history full, ``max_iter=1``, the closure inside), times ``--steps`` steps and frees it; printed:
each build's step times and median, and torch / ours from the medians of the builds.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

from optkern.benchmarks import second_order as so


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16 << 20)
    ap.add_argument("--history", type=int, default=100)
    ap.add_argument("--order", default="otto", help="o: ours, t: torch, built and timed in this order")
    ap.add_argument("--steps", type=int, default=7)
    a = ap.parse_args()
    if set(a.order) - {"o", "t"}:
        ap.error("--order: letters o (ours) and t (torch) only")
    import torch

    medians: dict[str, list[float]] = {"o": [], "t": []}
    for who in a.order:
        t0 = time.perf_counter()
        step = so._ours_lbfgs(a.n, a.history) if who == "o" else so._torch_lbfgs(torch, a.n, a.history)
        built = time.perf_counter() - t0
        times = []
        for _ in range(a.steps):
            t1 = time.perf_counter()
            step()
            times.append(1e3 * (time.perf_counter() - t1))
        medians[who].append(statistics.median(times))
        name = "ours " if who == "o" else "torch"
        print(
            f"{name} built in {built:.0f} s; steps ms {[round(t) for t in times]}; median {medians[who][-1]:.0f}; "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        del step
        gc.collect()
    if medians["o"] and medians["t"]:
        o, t = statistics.median(medians["o"]), statistics.median(medians["t"])
        print(f"torch / ours = {t / o:.2f} (ours {o:.0f} ms, torch {t:.0f} ms)")


if __name__ == "__main__":
    main()
