"""optkern.torch's steps interrupted by Ctrl-C mid-kernel (defect hunt 28).

Defect fixed: optkern.optim's steps defer SIGINT over large steps (``optkern._atomic``), the
adapter's did not: a Ctrl-C that arrived while a step's kernel ran was raised as the kernel
returned, after it wrote every element but before the step count advanced, so the params (and
moments, master copy) held step n + 1 while ``state[p]['step']`` said n (Adam repeated the bias
correction of the last step; a low-precision step drew the last step's stochastic-rounding words
again; a checkpoint saved in ``except KeyboardInterrupt`` kept the mismatch). Steps of at least
``optkern._atomic.DEFER_SIGINT_ELEMENTS`` elements now defer SIGINT to their end, as
optkern.optim's do. Technique: ``tests/test_concurrency_hunt27_kernels.py``'s (a thread sends
SIGINT once the kernel has written its first element).
"""

import json
import os
import subprocess
import sys

import pytest

import optkern

pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

_INTERRUPT = """
import json, os, signal, threading
import torch
import optkern
import optkern.torch as ot
signal.signal(signal.SIGINT, signal.default_int_handler)
optkern.set_num_threads(1)
n = 1 << 24
what = "{what}"
dtype = torch.bfloat16 if what == "lowp" else torch.float32
p = torch.zeros(n, dtype=dtype)
p.grad = torch.ones(n, dtype=dtype)
if what == "adagradnorm":
    opt = ot.AdagradNorm([p], lr=1e-2)
elif what == "lowp":
    opt = ot.Adam([p], lr=1e-3, master_weights=True, stochastic_rounding=True, state_dtype="bfloat16")
else:
    opt = ot.Adam([p], lr=1e-3)
opt.step()
opt.step()
# (a bfloat16 param may round to its old value: the float32 master copy moves every step)
watched = (opt.state[p]["master_param"] if what == "lowp" else p).numpy()
before = watched.copy()

def poke():  # SIGINT once the kernel has written its first element (the GIL is free meanwhile)
    while watched[0] == before[0]:
        pass
    os.kill(os.getpid(), signal.SIGINT)

t = threading.Thread(target=poke)
t.start()
try:
    try:
        opt.step()
        where = "after"
    except KeyboardInterrupt:
        where = "inside"
    t.join()
except KeyboardInterrupt:
    where = "after"
written = int((watched != before).sum())
print(json.dumps(dict(where=where, written=written, n=n, count=float(opt.state[p]["step"]))))
"""


def _interrupted(what):
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run(
        [sys.executable, "-c", _INTERRUPT.replace("{what}", what)], env=env, capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("what", ["adam", "lowp", "adagradnorm"])
def test_a_torch_step_interrupted_mid_kernel_is_counted(what):
    """Adam's cached fused run, a low-precision (master weights, stochastic rounding, bf16
    moments) run and AdagradNorm's own step: the KeyboardInterrupt comes out of ``step()`` once the
    step is whole -- every element written and the step counted (the count was 2)."""
    r = _interrupted(what)
    assert r["where"] == "inside" and r["written"] == r["n"]  # the kernel ran to the end: every element
    assert r["count"] == 3  # the state counts the step the arrays hold
