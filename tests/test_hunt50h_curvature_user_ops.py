"""Curvature estimators over user operators (the 50th session's hunt): what a user's function returns,
where the operator reads it.

- ``from_grad``: a ``grad_fn`` that writes each gradient into one buffer it keeps (a model's ``.grad``,
  ``np.matmul(..., out=buf)``) made every product ``(g - g) / 2h = 0``: a zero operator, top eigenvalue
  and trace 0, no error. Integer or bool gradients (truncated, or not numbers one can difference) gave
  zero products or NumPy's unnamed errors. A ``rel_step`` below the dtype's eps moved no parameter
  (``params + h v`` rounded back to ``params``): every product 0, silently.
- ``from_hvp(into=)``: an ``into`` that returned None without writing ``out`` (or wrote part of it)
  left the buffer's earlier contents -- the Lanczos vector, the previous product -- to be read as
  ``A v``: ``lanczos`` stopped at step 1 with alpha 1 (an invariant subspace), no error.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian as H


def _spd(n, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a @ a.T + np.eye(n)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_from_grad_takes_a_gradient_written_into_one_buffer(n):
    A = _spd(n)
    p = np.random.default_rng(1).standard_normal(n)
    buf = np.empty(n)

    def grad_into_buffer(x):
        np.matmul(A, x, out=buf)
        return buf

    op = H.from_grad(grad_into_buffer, p)
    v = np.random.default_rng(2).standard_normal(n)
    np.testing.assert_allclose(op.matvec(v), A @ v, rtol=1e-6, atol=1e-6 * np.abs(A @ v).max())
    top = H.top_eigenvalues(op, k=1, tol=1e-6).eigenvalues[0]
    assert top == pytest.approx(np.linalg.eigvalsh(A)[-1], rel=1e-6)


def test_from_grad_takes_a_torch_grad_buffer():
    torch = pytest.importorskip("torch")
    n = 5
    A = _spd(n, 3)
    g = torch.zeros(n, dtype=torch.float64)

    def grad_fn(x):  # (the .grad of a parameter: one tensor, rewritten by each backward)
        g.copy_(torch.from_numpy(A @ x))
        return g

    op = H.from_grad(grad_fn, np.ones(n))
    assert H.trace(op, "hutch++", 3 * n).estimate == pytest.approx(np.trace(A), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint32, np.bool_, "U1", object, np.complex128])
def test_from_grad_refuses_gradients_that_are_not_real_floats_naming_grad_fn(dtype):
    A = _spd(4)

    def grad_fn(x):
        return np.asarray(A @ x * 1000).astype(dtype)

    op = H.from_grad(grad_fn, np.ones(4))
    with pytest.raises(TypeError, match="grad_fn"):
        op.matvec(np.ones(4))
    with pytest.raises(TypeError, match="grad_fn"):
        H.trace(op, num_matvecs=2)


def _into_writing(A, rows):
    def into(v, out):
        out[rows] = (A @ v)[rows]  # rows slice(0, 0): writes nothing, returns None

    return into


@pytest.mark.parametrize("rows", [slice(0, 0), slice(0, 3)])
def test_an_into_that_leaves_out_unwritten_is_refused_naming_into(rows):
    n = 7
    A = _spd(n, 4)
    op = H.from_hvp(lambda v: A @ v, n, into=_into_writing(A, rows))
    with pytest.raises(ValueError, match="into: .*unwritten"):
        H.lanczos(op, 4)
    with pytest.raises(ValueError, match="into: .*unwritten"):
        H.spectral_density(op, steps=4, grid=3)
    with pytest.raises(ValueError, match="into: .*unwritten"):
        op.matvec(np.ones(n), out=np.zeros(n))


def test_an_into_that_writes_every_entry_gives_the_products():
    n = 7
    A = _spd(n, 5)
    op = H.from_hvp(lambda v: A @ v, n, into=_into_writing(A, slice(None)))
    out = np.full(n, 3.0)
    v = np.arange(1.0, n + 1)
    assert op.matvec(v, out=out) is out
    np.testing.assert_allclose(out, A @ v, rtol=1e-14)
    lam = H.top_eigenvalues(op, k=2).eigenvalues
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(A)[::-1][:2], rtol=1e-10)


@pytest.mark.parametrize("bad", ["shape", "raises"])
def test_a_refused_matmat_block_is_not_counted_as_products(bad):
    n = 6
    A = _spd(n, 6)

    def matmat(V):
        if bad == "raises":
            raise RuntimeError("user failure")
        return (A @ V)[:-1]

    op = H.from_hvp(lambda v: A @ v, n, matmat=matmat)
    with pytest.raises((ValueError, RuntimeError)):
        op.matmat(np.eye(n))
    assert op.num_matvecs == 0
    op.matvec(np.ones(n))
    assert op.num_matvecs == 1
    good = H.from_hvp(lambda v: A @ v, n, matmat=lambda V: A @ V)
    good.matmat(np.eye(n)[:, :4])
    assert good.num_matvecs == 4


@pytest.mark.parametrize(("dtype", "rel_step"), [(np.float64, 1e-20), (np.float64, 1e-17), (np.float32, 1e-9)])
def test_from_grad_refuses_a_rel_step_below_the_dtype_eps_naming_rel_step(dtype, rel_step):
    A = np.diag([1.0, 2.0, 3.0, 4.0]).astype(dtype)
    with pytest.raises(ValueError, match=r"^rel_step: must be at least"):
        H.from_grad(lambda x: A @ x, np.full(4, 100.0, dtype=dtype), rel_step=rel_step)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_from_grad_takes_a_rel_step_of_eps_and_the_default(dtype):
    A = np.diag([1.0, 2.0, 3.0, 4.0]).astype(dtype)
    p = np.full(4, 100.0, dtype=dtype)
    H.from_grad(lambda x: A @ x, p, rel_step=float(np.finfo(dtype).eps))  # (the bound itself is taken)
    got = H.from_grad(lambda x: A @ x, p).matvec(np.ones(4, dtype=dtype))
    np.testing.assert_allclose(got, [1.0, 2.0, 3.0, 4.0], rtol=1e-2 if dtype == np.float32 else 1e-6)
