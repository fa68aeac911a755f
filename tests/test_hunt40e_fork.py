"""optkern in forked children (defect hunt 40e).

Defect fixed: a child forked below Python -- ``fork()`` called from C (a C extension, a launcher
library, ``ctypes``), which runs no ``os.register_at_fork`` hook -- kept the parent's thread count,
and its first parallel kernel hung for good: GNU libgomp's pool does not survive ``fork`` (hunt 27
fixed ``os.fork`` and multiprocessing's "fork" through the Python hook only). The module now also
registers a ``pthread_atfork`` child handler, which every ``fork()`` runs: one thread in the child,
as after ``os.fork``, and asking for more warns there too.

Defect fixed (in this hunt's own change): an optimizer's lock (``optkern._serial``, see
test_hunt40e_threads.py), held by a parent's thread in the middle of a step when another forked,
stayed held in the child, by a thread the child does not have: the child's first step of that
optimizer waited for ever. A lock made before the last fork is now replaced.

Guard (held on the code as found): a child forked while another thread of the parent is inside a
parallel kernel computes, on its one thread, what the parent computes (8-bit Adam, layer norm,
curvature products, Lanczos, CG). Every case runs in a child interpreter with a timeout, so that a
hang fails the test instead of the session.
"""

import os
import subprocess
import sys

import pytest

import optkern
from thread_runs import WAIT_CHILD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))


def _python(code, timeout=60):
    """``code``'s stdout in a fresh interpreter (every kernel on its parallel path); fails the test
    on an error or a hang."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPTKERN_SERIAL_BELOW")}
    env.update(PYTHONPATH=ROOT, OPTKERN_SERIAL_BELOW="0")
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the parent hung (killed after {timeout} s)")
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


# The parent runs a parallel kernel, forks from C and waits up to 20 s for the child, which reports
# through its exit status (libc's _exit: the child runs no Python at-fork hook, and must not run the
# parent's atexit handlers either).
_C_FORK = (
    r"""
import ctypes, os, time, warnings
import numpy as np
import optkern
optkern.set_num_threads(2)
p = np.zeros(1 << 21, np.float32)
g = np.ones_like(p)
opt = optkern.optim.SGD([p], lr=1e-3)
opt.step([g])
libc = ctypes.CDLL(None)
pid = libc.fork()
if pid == 0:
    code = 0
    try:
        opt.step([g])
        code = 0 if optkern.get_num_threads() == 1 and np.all(p == np.float32(-2e-3)) else 3
        CHILD
    except BaseException:
        code = 4
    libc._exit(code)
"""
    + WAIT_CHILD
)


def test_a_child_of_a_fork_from_c_runs_kernels_on_one_thread_instead_of_hanging():
    assert _python(_C_FORK.replace("CHILD", "pass")) == "exit 0"


def test_more_threads_in_a_child_of_a_fork_from_c_warn():
    child = """with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            optkern.set_num_threads(2)
        code = code or (0 if any("forked" in str(x.message) for x in w) else 5)
        optkern.set_num_threads(1)"""
    assert _python(_C_FORK.replace("CHILD", child)) == "exit 0"


_FORK_MID_KERNEL = r"""
import os, threading, time
import numpy as np
import optkern
from optkern import hessian, nn, norm, optim

def work():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(200_001).astype(np.float32)
    opt = optim.Adam([p], lr=1e-2, state_dtype="int8")
    out = []
    for i in range(3):
        opt.step([np.sin(p + i)])
        out.append(p.copy())
    x = rng.standard_normal((65, 1031)).astype(np.float32)
    y, saved = norm.layer_norm(x, (1031,))
    out += [y] + [g for g in norm.layer_norm_backward(np.cos(y), x, None, saved) if g is not None]
    model = nn.MLP([32, 64, 10], activation="tanh")
    params = model.init_params(seed=1)
    op = hessian.from_mlp(model, params, rng.standard_normal((128, 32)), np.arange(128) % 10, kind="ggn")
    v = rng.standard_normal(params.shape)
    return out + [op.matvec(v), hessian.lanczos(op, 12, seed=2)[0], hessian.cg(op, v, maxiter=12).x]

optkern.set_num_threads(2)
ref = work()
stop = threading.Event()
def busy():  # (a parallel kernel in flight while the main thread forks)
    q = np.zeros(1 << 22, np.float32)
    o = optim.Adam([q], lr=1e-3)
    while not stop.is_set():
        o.step([np.ones_like(q)])
t = threading.Thread(target=busy)
t.start()
time.sleep(0.1)
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        try:
            same = all(np.array_equal(a, b) for a, b in zip(ref, work()))
            os._exit(0 if same and optkern.get_num_threads() == 1 else 3)
        except BaseException:
            os._exit(4)
    pids.append(pid)
    time.sleep(0.03)
stop.set()
t.join()
codes = []
for pid in pids:
    t0 = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            codes.append(os.waitstatus_to_exitcode(status))
            break
        if time.monotonic() - t0 > 30:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            codes.append("hung")
            break
        time.sleep(0.02)
print(codes)
"""


def test_children_forked_while_a_thread_runs_a_parallel_kernel_compute_what_the_parent_does():
    assert _python(_FORK_MID_KERNEL, timeout=90) == "[0, 0]"


# (a thread of the parent holds the optimizer's lock, as it does through a step, when the main thread
# forks: the lock stays held in the child, by a thread the child does not have)
_FORK_MID_STEP = (
    r"""
import os, threading, time
import numpy as np
import optkern
from optkern import _serial, optim, swa
p = np.zeros(1000, np.float32)
opt, avg = optim.Adam([p], lr=1e-3), swa.AveragedParams([p])
held, release = threading.Event(), threading.Event()
def stepping():
    with _serial.lock_of(opt), _serial.lock_of(avg):
        held.set()
        release.wait()
t = threading.Thread(target=stepping)
t.start()
held.wait()
pid = os.fork()
if pid == 0:
    opt.step([np.ones_like(p)])
    avg.update([p])
    os._exit(0 if opt.state_dict()["state"][0]["step"] == 1 and avg.n_averaged == 1 else 3)
release.set()
t.join()
"""
    + WAIT_CHILD
)


def test_a_child_forked_while_a_thread_steps_an_optimizer_can_step_it():
    assert _python(_FORK_MID_STEP) == "exit 0"
