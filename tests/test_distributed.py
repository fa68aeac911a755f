"""optkern.distributed under MPI: each test launches ``mpiexec -n N python -m mpi4py`` on a script
in tests/mpi/ that runs many checks (every rank; a failing check aborts the job), so CI pays for
few MPI start-ups. Skipped with a reason where mpi4py or mpiexec is missing."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "mpi")
TIMEOUT = 240  # s per launch; a hang is a failure, not a stuck CI job


def _mpiexec():
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install 'optkern[mpi]')")
    exe = shutil.which("mpiexec")
    if exe is None:
        pytest.skip("mpiexec is not on PATH (pip install mpich)")
    return exe


def _env():
    import optkern

    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["OMP_NUM_THREADS"] = "1"  # one thread per rank: ranks share the cores
    env["OPENBLAS_NUM_THREADS"] = "1"
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI's mpiexec refuses root without both
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def launch(n: int, *args, timeout: float = TIMEOUT):
    exe = _mpiexec()
    cmd = [exe, "-n", str(n), sys.executable, "-m", "mpi4py", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)


def _ok(res, expect: str):
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"exit {res.returncode}\n{out[-6000:]}"
    assert expect in res.stdout, out[-6000:]


def test_two_ranks_then_resharded_to_four_and_one(tmp_path):
    """Collectives, data-parallel = one process for every optimizer (float64 and float32), ordered
    runs bitwise, ZeRO-1 = data-parallel bitwise, uneven shards with a zero-row rank, clipping,
    AdaGrad-Norm, distributed curvature; a ZeRO-1 checkpoint from 2 ranks continued on 4 and on 1."""
    _ok(launch(2, os.path.join(SCRIPTS, "dist_checks.py"), "main", str(tmp_path)), "main: 15 checks passed on 2")
    assert len(list(tmp_path.glob("ckpt-*.npz"))) == 4
    _ok(launch(4, os.path.join(SCRIPTS, "dist_checks.py"), "reshard", str(tmp_path)), "reshard: 5 checks passed on 4")
    _ok(launch(1, os.path.join(SCRIPTS, "dist_checks.py"), "reshard", str(tmp_path)), "reshard: 1 checks passed on 1")


def test_a_failing_rank_aborts_the_job(tmp_path):
    """Rank 1 raises while rank 0 waits in a collective: the job exits non-zero, well within the timeout.

    (A Communicator checks each rank's own arguments, no message: a rank alone with a bad one
    raises while the others wait. DistributedOptimizer's step agrees on its checks instead.)"""
    script = tmp_path / "fail.py"
    script.write_text(
        "import numpy as np\n"
        "from optkern.distributed import Communicator\n"
        "c = Communicator(ordered=True)\n"
        "if c.rank == 1:\n"
        "    c.allreduce(np.ones(5), 'prod')  # no such op: ValueError on this rank only\n"
        "else:\n"
        "    c.allreduce(np.ones(5))  # waits in the allreduce\n"
        "print('unreachable', flush=True)\n"
    )
    t = time.monotonic()
    res = launch(2, str(script), timeout=120)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "op: expected one of 'sum', 'mean', 'max', 'min', got 'prod'" in res.stderr
    assert "unreachable" not in res.stdout
    assert time.monotonic() - t < 120


def test_bench_dist_smoke(tmp_path):
    """`optkern bench dist --quick` under mpiexec: every row is printed and the JSON written."""
    out = tmp_path / "dist.json"
    res = launch(2, "-m", "optkern", "bench", "dist", "--quick", "--json", str(out))
    _ok(res, "results:")
    import json

    rows = json.loads(out.read_text())["rows"]
    cases = [r["case"] for r in rows]
    assert len(cases) == 8 and sum("allreduce" in c for c in cases) == 5, cases
    zero = next(r for r in rows if "state bytes" in r["case"])
    assert zero["fraction"] == 0.5  # two ranks, an even element count: exactly half the state each


def test_cupy_and_nccl():
    """CuPy arrays through staged / CUDA-aware MPI and NCCL (needs GPUs)."""
    _mpiexec()
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
    except Exception as e:  # ImportError, CUDARuntimeError
        pytest.skip(f"CuPy with a visible GPU is needed: {e}")
    _ok(launch(2, os.path.join(SCRIPTS, "dist_cuda_checks.py")), "cuda: 3 checks passed on 2")


# ---- pieces that need no MPI -----------------------------------------------------------------


def test_import_needs_no_mpi4py():
    code = "import sys, optkern, optkern.optim, optkern.hessian; print('mpi4py' in sys.modules)"
    res = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stdout + res.stderr


def test_buckets_pack_in_order_within_the_size_cap():
    from optkern.distributed.buckets import make_buckets

    params = [
        np.zeros(n, dtype=dt)
        for n, dt in (
            (10, np.float32),
            (3, np.float64),
            (20, np.float32),
            (100, np.float32),
            (0, np.float32),
            (5, np.float32),
        )
    ]
    buckets = make_buckets(params, bucket_bytes=25 * 4)
    layout = [(b.index, b.flat.dtype, b.flat.size) for b in buckets]
    assert layout == [
        ([0], np.float32, 10),
        ([1], np.float64, 3),
        ([2], np.float32, 20),
        ([3], np.float32, 100),
        ([4, 5], np.float32, 5),
    ]
    grads = [np.arange(p.size, dtype=p.dtype) + 1 for p in params]
    for b in buckets:
        b.pack(grads)
        flat = b.flat
        flat *= 2
        b.unpack(grads)
    for g, p in zip(grads, params):
        np.testing.assert_array_equal(g, 2 * (np.arange(p.size) + 1))


class _TwoEqualRanks:
    """A communicator stand-in: two ranks holding the same arrays (a sum doubles them)."""

    size = 2

    def __init__(self):
        self.calls = []

    def allreduce(self, x, op, check=True):
        assert check is False  # (the buckets' ranks agreed at set-up: no header per call)
        self.calls.append((x.size, op))
        x *= 2
        if op == "mean":
            x /= 2
        return x


@pytest.mark.parametrize("op, weight", [("sum", None), ("mean", None), ("sum", 0.25)])
def test_buckets_reduce_large_gradients_in_place_small_ones_packed(op, weight):
    from optkern.distributed.buckets import make_buckets

    rng = np.random.default_rng(5)
    sizes = (3, 40, 7, 64, 0, 1)  # float32: 40 and 64 elements (160, 256 bytes) are direct at 160 bytes
    params = [np.zeros(n, np.float32) for n in sizes]
    buckets = make_buckets(params, bucket_bytes=32, direct_bytes=160)
    assert [(b.index, b.direct) for b in buckets] == [([0], False), ([1], True), ([2, 4, 5], False), ([3], True)]
    assert [b.allocated() for b in buckets] == [12, 0, 32, 0]  # direct buffers only when needed
    base = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [b.copy() for b in base]
    strided = np.zeros(128, np.float32)[::2]  # param 3's gradient, strided: through a buffer
    strided[...] = base[3]
    grads[3] = strided
    ids = [id(g) for g in grads]
    comm = _TwoEqualRanks()
    for b in buckets:
        b.reduce(comm, grads, op, weight)
    assert [id(g) for g in grads] == ids  # written in place
    assert [b.allocated() for b in buckets] == [12, 0, 32, 256]
    assert comm.calls == [(3, "sum"), (40, op), (8, "sum"), (64, "sum")]
    w = np.float32(1.0 if weight is None else weight)
    for g, b0 in zip(grads, base):
        want = (b0 * w) * np.float32(2)
        if op == "mean":
            want = want / np.float32(2)
        np.testing.assert_array_equal(g, want)


def test_rank_order_reduce_is_a_left_fold():
    from optkern.distributed.communicator import rank_order_reduce

    rows = np.array([[1e16, 1.0], [1.0, 1e16], [-1e16, -1e16]])
    out = np.empty(2)
    rank_order_reduce(rows, "sum", out)
    np.testing.assert_array_equal(out, [(1e16 + 1.0) - 1e16, (1.0 + 1e16) - 1e16])
    rank_order_reduce(rows, "mean", out)
    np.testing.assert_array_equal(out, [((1e16 + 1.0) - 1e16) / 3, ((1.0 + 1e16) - 1e16) / 3])
    rank_order_reduce(rows, "max", out)
    np.testing.assert_array_equal(out, [1e16, 1e16])
