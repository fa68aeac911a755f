"""Determinism hunt (33rd session): results that must not depend on the thread count, and a run
resumed from a checkpoint that goes on as the uninterrupted one.

Each thread-count check runs a small script in fresh processes with OMP_NUM_THREADS (which NumPy's OpenBLAS
reads too) and OPENBLAS_NUM_THREADS set to 1, 2 and 3, and compares the printed bytes: float64
dot products of more than 10,000 elements go through OpenBLAS, which splits them into one partial
sum per thread, so a norm or dot taken with NumPy changes its last bits with the thread count
(on a machine with one CPU every count gives the same bits: the checks then pass trivially).
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import optkern

THREADS = (1, 2, 3)


def _bytes_by_thread_count(script: str) -> dict:
    """{threads: stdout} of ``script`` run in a fresh interpreter per thread count (the optkern under
    test importable there, the rest of the environment inherited)."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
    out = {}
    for n in THREADS:
        env = dict(os.environ, OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n))
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
        r = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        out[n] = r.stdout
    return out


def _assert_same(out: dict) -> None:
    ref = out[THREADS[0]]
    assert ref.strip()
    for n, got in out.items():
        lines = [i for i, (a, b) in enumerate(zip(ref.splitlines(), got.splitlines())) if a != b]
        assert got == ref, f"lines {lines} differ between {THREADS[0]} and {n} threads"


_FROM_GRAD = """
    import hashlib
    import numpy as np
    from optkern import hessian
    for seed in range(4):
        n = 70_001
        d = np.random.default_rng(seed).uniform(0.5, 2.0, n)
        q = np.random.default_rng(seed + 9).standard_normal(n)
        op = hessian.from_grad(lambda x: d * x, q)
        print(hashlib.sha256(op.matvec(np.random.default_rng(seed + 7).standard_normal(n)).tobytes()).hexdigest())
"""


def test_from_grad_products_do_not_depend_on_the_thread_count():
    # (the finite-difference step is scaled by ||params|| and ||v||: both were NumPy norms, OpenBLAS's
    # dot, and 2 of 4 seeds here gave other bits at 2 threads than at 1)
    _assert_same(_bytes_by_thread_count(_FROM_GRAD))


_START = """
    import hashlib
    import numpy as np
    from optkern import hessian
    from optkern.hessian.operators import unit_vector
    for seed in range(4):
        n = 70_001
        op = hessian.from_hvp(lambda v: v, n, dtype=np.float64)
        v0 = np.random.default_rng(seed).standard_normal(n)
        print(hashlib.sha256(unit_vector(op, v0).tobytes()).hexdigest())
"""


def test_start_vectors_do_not_depend_on_the_thread_count():
    # the start vector v0 / ||v0|| of lanczos(v0=...), top_eigenvalues, spectral_density and
    # power_iteration
    _assert_same(_bytes_by_thread_count(_START))


# ---- a data loader resumed from a checkpoint taken inside an epoch ----------------------------------


def _batches_seen(loader, epochs, stop=None):
    """The labels of every batch of ``epochs`` epochs; with ``stop = (epoch, k)`` the loader's state
    dict taken after the k-th batch of that epoch (while the loop runs) is returned too."""
    seen, saved = [], None
    for e in range(epochs):
        for k, (_, yb) in enumerate(loader):
            seen.append(yb.copy())
            if stop == (e, k):
                saved = loader.state_dict()
    return seen, saved


def test_batch_loader_resumed_inside_an_epoch_continues_with_the_next_batch():
    from optkern import data

    x = np.arange(103.0).reshape(103, 1)
    y = np.arange(103)
    whole, _ = _batches_seen(data.BatchLoader(x, y, 10, seed=4), 3)
    for e, k in [(0, 0), (1, 4), (1, 10), (2, 7)]:
        first, saved = _batches_seen(data.BatchLoader(x, y, 10, seed=4), 3, stop=(e, k))
        resumed = data.BatchLoader(x, y, 10, seed=4)
        resumed.load_state_dict(saved)
        rest = [yb for _, yb in resumed] + [yb for _ in range(2 - e) for _, yb in resumed]
        done = 11 * e + k + 1  # batches taken before the checkpoint (11 a epoch)
        assert len(whole[:done]) + len(rest) == len(whole)
        for a, b in zip(whole[done:], rest):
            np.testing.assert_array_equal(a, b)
        assert resumed.epoch == 3


def test_batch_loader_position_is_checked_and_old_states_load():
    from optkern import data

    loader = data.BatchLoader(np.arange(10.0), None, 3, seed=5)  # 4 batches an epoch
    loader.load_state_dict({"epoch": 2, "seed": 5})  # (saved before loaders kept a position)
    assert loader.state_dict() == {"epoch": 2, "seed": 5, "batch": 0}
    for bad, exc in [(-1, ValueError), (5, ValueError), (1.5, TypeError)]:
        with pytest.raises(exc, match=r"^state\['batch'\]: "):
            loader.load_state_dict({"epoch": 3, "seed": 6, "batch": bad})
        assert loader.state_dict() == {"epoch": 2, "seed": 5, "batch": 0}
    loader.load_state_dict({"epoch": 3, "seed": 5, "batch": 4})  # (the epoch's last batch was taken)
    assert list(loader) == [] and loader.epoch == 4


def test_batch_loader_batches_from_a_start():
    from optkern import data

    loader = data.BatchLoader(np.arange(10.0), None, 3, seed=5)
    whole = list(loader.batches(2))
    rest = list(loader.batches(2, start=2))
    assert len(rest) == 2
    for a, b in zip(whole[2:], rest):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="^start: "):
        next(loader.batches(2, start=-1))


_DOTS = """
    import hashlib
    import numpy as np
    from optkern import hessian, optim

    def h(*arrays):
        return hashlib.sha256(b"".join(np.asarray(a, dtype=np.float64).tobytes() for a in arrays)).hexdigest()

    n = 40_001
    rng = np.random.default_rng(3)
    d = rng.uniform(0.5, 2.0, n)
    d[:3] = [9.0, 7.0, 5.0]

    class Diag:
        shape = (n, n)
        dtype = np.float64

        def matvec(self, v):
            return d * v

    op = hessian.as_operator(Diag())
    r = hessian.power_iteration(op, max_iter=5, tol=1e-30, seed=1)
    print("power", h([r.eigenvalue], r.eigenvector))
    g = rng.standard_normal(n)
    print("concentration", h([hessian.gradient_concentration(op, g, k=2, seed=1)]))

    # L-BFGS with the strong Wolfe line search, and Newton-CG's model decrease (its rho)
    target = rng.standard_normal(n)
    def closure_of(x):
        def closure():
            r = x - target
            return 0.5 * float(np.sum(d * r * r)), d * r
        return closure
    x = np.zeros(n)
    opt = optim.LBFGS([x], line_search_fn="strong_wolfe", max_iter=4)
    opt.step(closure_of(x))
    print("lbfgs", h(x))
    y = np.zeros(n)
    ncg = optim.NewtonCG([y], curvature=op, max_cg_iter=3)
    ncg.step(closure_of(y))
    print("newton-cg", h(y, [ncg.last["rho"]]))
"""


def test_power_iteration_concentration_lbfgs_and_newton_cg_do_not_depend_on_the_thread_count():
    # power_iteration's Rayleigh quotient, gradient_concentration's dots, the strong Wolfe line
    # search's directional derivative and Newton-CG's model decrease were NumPy dots (BLAS: one
    # partial sum per thread for float64 vectors past ~10,000 elements)
    _assert_same(_bytes_by_thread_count(_DOTS))
