"""The NumPy memory pool of optkern's calls (optkern/_pool.py) against NumPy's own allocator.

    python bench/pool.py [--rounds 4] [--threads N]

Each round runs every case in one fresh process per allocator, in turn (the C library's allocator
state depends on the process's history: each process builds only its case's model and data):
``numpy`` (OPTKERN_POOL_BYTES=0: optkern leaves NumPy's allocator in place), ``pool`` (the
default), and ``pinned`` (the pool off, glibc's thresholds pinned as
``optkern.pin_glibc_thresholds()`` and the command line do). A process times the median of 60
calls after 3 warm-up calls and counts its page faults (getrusage minor faults) per call. Prints
median [min, max] over the rounds, and the ratio numpy / pool of each round's medians.
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
import optkern
from optkern import hessian
from optkern.nn import MLP

mode, case = sys.argv[1], sys.argv[2]
if mode == "pinned":
    optkern.pin_glibc_thresholds()
what, layers, batch = case.split()
sizes = [int(s) for s in layers.split("-")]
model = MLP(sizes, activation="tanh", dtype=np.float32)
rng = np.random.default_rng(0)
p = model.init_params(0)
x, y = rng.standard_normal((int(batch[1:]), sizes[0]), np.float32), rng.integers(0, sizes[-1], int(batch[1:]))
v = rng.standard_normal(model.num_params).astype(np.float32)
if what == "loss_and_grad":
    f = lambda: model.loss_and_grad(p, x, y)
else:
    kind, _, fixed = what.partition(":")
    op = hessian.from_mlp(model, p, x, y, kind=kind, fixed=fixed == "fixed")
    f = lambda: op.matvec(v)
for _ in range(3):
    f()
faults, ts = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
for _ in range(60):
    t = time.perf_counter()
    f()
    ts.append(time.perf_counter() - t)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 60
print(json.dumps([float(np.median(ts)) * 1e3, faults]))
"""
CASES = [
    f"{what} {net}"
    for net in ("784-256-10 b512", "784-1024-1024-10 b256")
    for what in ("loss_and_grad", "ggn", "ggn:fixed", "hessian", "hessian:fixed")
]

MODES = {"numpy": {"OPTKERN_POOL_BYTES": "0"}, "pool": {}, "pinned": {"OPTKERN_POOL_BYTES": "0"}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    base = {k: v for k, v in os.environ.items() if k != "OPTKERN_POOL_BYTES"}
    base["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [base.get("PYTHONPATH")])])
    if args.threads:
        base["OMP_NUM_THREADS"] = str(args.threads)
    runs: dict = {m: {c: [] for c in CASES} for m in MODES}
    for r in range(args.rounds):
        for case in CASES:
            for mode, extra in MODES.items():
                cmd = [sys.executable, "-c", CHILD, mode, case]
                res = subprocess.run(cmd, env={**base, **extra}, capture_output=True, text=True, timeout=900)
                if res.returncode:
                    raise SystemExit(res.stderr)
                runs[mode][case].append(json.loads(res.stdout.splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    import numpy as np

    print("| case | " + " | ".join(f"{m}: ms (faults/call)" for m in MODES) + " | numpy / pool |")
    print("|---|" + "---:|" * (len(MODES) + 1))
    for case in CASES:
        cells = []
        for m in MODES:
            ms = [t for t, _ in runs[m][case]]
            faults = np.median([f for _, f in runs[m][case]])
            cells.append(f"{np.median(ms):.2f} [{min(ms):.2f}, {max(ms):.2f}] ({faults:.0f})")
        ratio = [a[0] / b[0] for a, b in zip(runs["numpy"][case], runs["pool"][case])]
        cells.append(f"{np.median(ratio):.2f} [{min(ratio):.2f}, {max(ratio):.2f}]")
        print(f"| {case} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
