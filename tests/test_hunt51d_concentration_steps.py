"""gradient_concentration's ``max_steps`` is a cap on operator products: ``max_steps = k`` (the least
it took) was raised to ``k + 1`` inside (the extra Ritz pair that tells whether the top-k space is
unique) and the operator was applied ``k + 1`` times. Now a cap below ``k + 1`` is refused naming
max_steps before any product, and every run makes at most ``max_steps`` products (counted)."""

import numpy as np
import pytest

from optkern import hessian as H


def _counted(n: int, seed: int):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(np.linspace(1.0, 9.0, n) ** 3) @ Q.T
    A = (A + A.T) / 2
    count = [0]

    def hvp(v):
        count[0] += v.shape[1] if v.ndim == 2 else 1
        return A @ v

    return A, H.from_hvp(hvp, n, dtype=np.float64), count


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_cap_below_k_plus_one_is_refused_before_any_product(k):
    A, op, count = _counted(23, k)
    g = np.random.default_rng(9).standard_normal(23)
    with pytest.raises(ValueError, match=rf"^max_steps: the top-{k + 1} Ritz pairs did not converge in {k} products"):
        H.gradient_concentration(op, g, k, max_steps=k)
    assert count[0] == 0


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("extra", [1, 2, 5, 11, 40])
def test_products_never_exceed_max_steps(k, extra):
    n = 23
    A, op, count = _counted(n, 10 * k + extra)
    g = np.random.default_rng(extra).standard_normal(n)
    cap = k + extra
    try:
        f = H.gradient_concentration(op, g, k, max_steps=cap, tol=1e-8)
    except ValueError as e:  # (too few products for k + 1 converged pairs: said, not overshot)
        assert str(e).startswith("max_steps: the top-")
    else:
        w, V = np.linalg.eigh(A)
        top = V[:, np.argsort(w)[::-1][:k]]
        assert f == pytest.approx(float(np.sum((top.T @ g) ** 2) / (g @ g)), abs=1e-8)
    assert 0 < count[0] <= cap


def test_k_equal_to_n_needs_only_n_products():
    # (no (k+1)-th pair exists: max_steps = k = n is enough, and the fraction is 1)
    A, op, count = _counted(5, 3)
    g = np.random.default_rng(3).standard_normal(5)
    assert H.gradient_concentration(op, g, 5, max_steps=5) == pytest.approx(1.0, abs=1e-12)
    assert count[0] <= 5
