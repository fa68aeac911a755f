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

import os

import pytest

import optkern
import sigint_mid_kernel

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

{poke}
print(json.dumps(dict(where=where, written=written, n=n, count=float(opt.state[p]["step"]), late=late)))
"""


def _interrupted(what):
    script = _INTERRUPT.replace("{poke}", sigint_mid_kernel.POKE.replace("CALL", "opt.step()"))
    return sigint_mid_kernel.run(script.replace("{what}", what), ROOT, timeout=180)


@pytest.mark.parametrize("what", ["adam", "lowp", "adagradnorm"])
def test_a_torch_step_interrupted_mid_kernel_is_counted(what):
    """Adam's cached fused run, a low-precision (master weights, stochastic rounding, bf16
    moments) run and AdagradNorm's own step: the KeyboardInterrupt comes out of ``step()`` once the
    step is whole -- every element written and the step counted (the count was 2)."""
    r = _interrupted(what)
    assert r["where"] == "inside" and r["written"] == r["n"]  # the kernel ran to the end: every element
    assert r["count"] == 3  # the state counts the step the arrays hold
