"""The first optkern CUDA call of a process made inside a CUDA graph capture: the scratch memory
pool (cuda/cuda_arrays.hpp) and the kernels' lazy loading then happen during the capture, which
the graph tests elsewhere avoid by warming up first. A user who captures their first clipped step
meets exactly this. Run in a fresh process (nothing warmed up), compared with eager calls after.

Needs a real GPU and a CuPy with stream capture.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gpu import require_gpu

cp, _cuda = require_gpu()

SCRIPT = r"""
import cupy as cp
import numpy as np
from optkern import clip_grad_norm_

rng = np.random.default_rng(0)
host = [(rng.standard_normal(n) * 3).astype(np.float32) for n in (3, 5000, 70001)]
g = [cp.asarray(h) for h in host]
ref = [cp.asarray(h) for h in host]
out = cp.zeros(1, cp.float64)
s = cp.cuda.Stream(non_blocking=True)
with s:
    s.synchronize()
    s.begin_capture()
    clip_grad_norm_(g, 1.0, out=out)  # this process's first optkern CUDA call
    graph = s.end_capture()
    graph.launch(stream=s)
s.synchronize()
want = clip_grad_norm_(ref, 1.0)
assert out.get()[0] == want.get()[0], (out.get(), want.get())
for a, b in zip(g, ref):
    assert (a.get().view(np.uint32) == b.get().view(np.uint32)).all()
print("cold capture: ok")
"""


def test_first_call_of_a_process_inside_a_graph_capture():
    if not hasattr(cp.cuda.Stream(non_blocking=True), "begin_capture"):
        pytest.skip("this CuPy has no stream capture")
    env = dict(os.environ)
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert res.returncode == 0 and "cold capture: ok" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
