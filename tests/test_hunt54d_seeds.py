"""The curvature estimators' ``seed`` is checked with their other arguments, before any product: it was
checked only where a random vector was first drawn from it. With ``v0`` given, ``top_eigenvalues`` made
products and raised at the first breakdown (an invariant subspace: a random replacement vector), or
never, where none came; ``lanczos`` and ``power_iteration`` with ``v0``, and ``trace``'s exact Hutch++
(``num_matvecs >= 3 n``: no probes), took ``seed=-1``, ``"x"`` or ``1.5`` silently. And the same
seed gives the same estimate, bit for bit; seeds that differ give independent probes."""

import numpy as np
import pytest

from optkern import hessian as H

A = np.diag([5.0, 5.0, 5.0, 4.0, 1.0])  # (v0 = ones: its Krylov space breaks down after 3 products; a gap at k = 4)


def _counted():
    count = [0]

    def hvp(v):
        count[0] += 1
        return A @ v

    return H.from_hvp(hvp, 5), count


CALLS = {
    "top_eigenvalues": lambda op, s: H.top_eigenvalues(op, 3, v0=np.ones(5), seed=s),
    "top_eigenvalues_block": lambda op, s: H.top_eigenvalues(op, 2, v0=np.ones(5), block_size=2, seed=s),
    "lanczos": lambda op, s: H.lanczos(op, 3, v0=np.ones(5), seed=s),
    "power_iteration": lambda op, s: H.power_iteration(op, v0=np.ones(5), seed=s),
    "trace_exact": lambda op, s: H.trace(op, "hutch++", 15, seed=s),
    "trace": lambda op, s: H.trace(op, num_matvecs=4, seed=s),
    "spectral_density": lambda op, s: H.spectral_density(op, 2, 3, seed=s),
    "gradient_concentration": lambda op, s: H.gradient_concentration(op, np.arange(1.0, 6.0), 4, seed=s),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize(
    "seed, err, match",
    [
        (-1, ValueError, r"^seed: must be >= 0, got -1"),
        (2**64, ValueError, r"^seed: must be < 2\*\*64"),
        ("x", TypeError, r"^seed: expected an integer, got str"),
        (1.5, TypeError, r"^seed: expected an integer, got float"),
        (None, TypeError, r"^seed: expected an integer, got NoneType"),
        (True, TypeError, r"^seed: expected an integer, got bool"),
    ],
)
def test_a_bad_seed_is_refused_before_any_product(call, seed, err, match):
    op, count = _counted()
    with pytest.raises(err, match=match):
        CALLS[call](op, seed)
    assert count[0] == 0


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("seed", [0, 7, np.uint64(2**64 - 1), np.int8(3)])
def test_a_valid_seed_runs_and_repeats_bit_for_bit(call, seed):
    op, _ = _counted()
    a, b = CALLS[call](op, seed), CALLS[call](op, seed)
    assert repr(a) == repr(b)


def test_seeds_draw_independent_probes():
    """Hutchinson's estimates over seeds 0..399 of a dense symmetric matrix: their mean within 3
    standard errors of the trace, and consecutive seeds uncorrelated (|r| < 0.2: probe i of seed s
    is not probe i + 1 of seed s - 1)."""
    rng = np.random.default_rng(5)
    M = rng.standard_normal((9, 9))
    M = M + M.T
    est = np.array([H.trace(M, num_matvecs=3, seed=s).estimate for s in range(400)])
    se = est.std(ddof=1) / np.sqrt(len(est))
    assert abs(est.mean() - np.trace(M)) <= 3 * se
    assert abs(np.corrcoef(est[:-1], est[1:])[0, 1]) < 0.2
