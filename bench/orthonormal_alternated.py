"""The native in-order orthonormalization (``orthonormalize_rows_``) against the per-call loop it replaced
(41st hunt, b), alternated in one process.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=src python bench/orthonormal_alternated.py [--repeats 7]

"old": ``_orthonormal.orthonormalize_rows``'s loop of ``lanczos_orthogonalize_`` calls (the CPU module
seen as the GPU's is); "new": this tree. Both give the same bits (tests/test_hunt41b_orthonormal.py).
Cases: Hutch++'s sketch basis alone (s = 100 rows of n = 1e5, the sketch of the diagonal operator of
bench/block_orth_alternated.py) and the whole Hutch++ m = 300 on it; gradient_concentration on the
MLP 784-256-10 (batch 128) with k = 5 / 20 given Ritz vectors (its own work: the orthonormalization
and the projection), and k = 5 with its Lanczos run. Medians [quartiles] and the ratio of each round.
"""

from __future__ import annotations

import numpy as np
from block_orth_alternated import alternated, diag_op, mlp_op, timed

from optkern import _cpu, hessian
from optkern.hessian import _orthonormal


class _NoNative:
    def __getattr__(self, name):
        return getattr(_cpu, name)


class Paths:
    def __init__(self):
        self.backend = _orthonormal._backend.backend
        self.proxy = _NoNative()

    def use(self, which):
        b = self.backend
        if which == "old":
            _orthonormal._backend.backend = lambda *a: self.proxy if b(*a) is _cpu else b(*a)
        else:
            _orthonormal._backend.backend = b


def cases():
    D = diag_op(100_000, np.float64)
    Y = D.matmat(np.random.default_rng(1).choice([-1.0, 1.0], (100_000, 100)))
    Y0 = np.ascontiguousarray(Y.T)

    def sketch():
        Q = Y0.copy()
        mod = _orthonormal.kernel(np, Q.dtype)
        _orthonormal.orthonormalize_rows(mod, Q, _orthonormal.coefficients(np, Q.shape[0]))

    yield "Hutch++ sketch basis s=100, n=1e5 float64", timed(sketch)
    yield "Hutch++ m=300, n=1e5 float64 (diagonal op)", timed(lambda: hessian.trace(D, "hutch++", 300, seed=1))
    H = mlp_op()
    n = H.shape[0]
    rng = np.random.default_rng(2)
    g = rng.standard_normal(n).astype(np.float32)
    for k in (5, 20):
        V = rng.standard_normal((n, k)).astype(np.float32)
        yield (
            f"gradient_concentration MLP 784-256-10 (n={n}) k={k}, eigenvectors given",
            timed(lambda V=V, k=k: hessian.gradient_concentration(H, g, k, eigenvectors=V)),
        )
    yield (
        f"gradient_concentration MLP (n={n}) k=5 with Lanczos",
        timed(lambda: hessian.gradient_concentration(H, g, 5, seed=0)),
    )


if __name__ == "__main__":
    alternated(((name, ("old", "new"), fn) for name, fn in cases()), Paths())
