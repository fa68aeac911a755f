"""More threads than cores: optkern's kernels and the study's BLAS at 1..N threads, wall and CPU time.

    PYTHONPATH=src python bench/threads_oversub.py [ROUNDS] [MAX_THREADS]

Each (thread count, mode) is measured in a fresh child process; the rounds alternate the counts so
that a noisy host hits them alike. Modes:
  set    optkern.set_num_threads(n): optkern's OpenMP team only (NumPy's BLAS keeps its count)
  limit  optkern.threads.limit_threads(n): optkern's team and OpenBLAS (what `optkern study --threads n`
         runs under; since the 53rd session OpenBLAS gets at most the process's CPUs)
  old    limit_threads(n), then every OpenBLAS set to n (what limit_threads did before: the pairing)
Cases: an Adam step over 16M floats (functional adam_), and the MLP 784-512-512-10 tanh HVP at batch
256 (optkern.nn.MLP.hvp: GEMMs in OpenBLAS, element-wise passes in optkern). Printed per case:
median ms per call [min, max over rounds] of wall and of CPU time (the process's, all threads).
"""

import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
import optkern
from optkern.functional import adam_
from optkern.nn import MLP
from optkern.threads import limit_threads

n, mode = int(sys.argv[1]), sys.argv[2]
if mode == "set":
    optkern.set_num_threads(n)
else:
    limit_threads(n).__enter__()
    if mode == "old":
        from optkern.threads import _loaded_openblas

        for _, set_ in _loaded_openblas():
            set_(n)
rng = np.random.default_rng(0)
N = 16_000_000
p, g = rng.standard_normal(N, np.float32), rng.standard_normal(N, np.float32)
m, v = np.zeros(N, np.float32), np.zeros(N, np.float32)
model = MLP([784, 512, 512, 10], activation="tanh", dtype=np.float32)
params = model.init_params(0)
x = rng.standard_normal((256, 784), np.float32)
y = rng.integers(0, 10, 256)
d = rng.standard_normal(model.num_params, np.float32)
step = [0]

def adam():
    step[0] += 1
    adam_([p], [g], [m], [v], step=step[0])

cases = {"adam16M": (adam, 10), "hvp": (lambda: model.hvp(params, x, y, d), 15)}
out = {}
for name, (f, reps) in cases.items():
    f()
    w = []
    c = []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        f()
        w.append(time.perf_counter() - t0)
        c.append(time.process_time() - c0)
    out[name] = (sorted(w)[reps // 2] * 1e3, sorted(c)[reps // 2] * 1e3)
print(json.dumps(out))
"""


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    env = dict(os.environ)
    res: dict = {}
    for _ in range(rounds):
        for mode in ("set", "old", "limit"):
            for n in range(1, top + 1):
                r = subprocess.run(
                    [sys.executable, "-c", CHILD, str(n), mode], env=env, capture_output=True, text=True, check=True
                )
                for case, (wall, cpu) in json.loads(r.stdout.strip().splitlines()[-1]).items():
                    res.setdefault((case, mode, n), []).append((wall, cpu))
    print(f"load {os.getloadavg()[0]:.1f}, {rounds} rounds; ms per call: wall median [min, max] | cpu (same)")
    for (case, mode, n), xs in sorted(res.items()):
        w, c = [a for a, _ in xs], [b for _, b in xs]
        print(
            f"{case:8s} {mode:5s} n={n}: wall {statistics.median(w):8.2f} [{min(w):.2f}, {max(w):.2f}]"
            f" | cpu {statistics.median(c):8.2f} [{min(c):.2f}, {max(c):.2f}]"
        )


if __name__ == "__main__":
    main()
