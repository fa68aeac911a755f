"""A loaded L-BFGS history's saved Gram matrices (``gram_sy[i, j] = s_i . y_j``, ``gram_yy[i, j] =
y_i . y_j``) checked against its vectors in ``O(k n)``, so that optkern's own checkpoints keep the
bits the run held (a resumed run is bit-identical) without the ``k^2 n`` rebuild
(``LBFGSHistory._gram_of``, for checkpoints that hold none). The step's own kernels do the passes
(threaded, float32 at full SIMD width, on the history's backend):

- the diagonal ``s_j . y_j``, ``y_j . y_j`` of each pair recomputed by a push over no history (the
  sums the push made when it added the pair: equal bits on the backend that saved them), within
  ``2 (2 gamma) |s_j| |y_j|`` of the saved one (``ro`` and ``H_diag`` are derived from it);
- every row by Freivalds' test, for ``_PROBES`` random vectors ``w_b = +-1 / |y_b|``: ``u = Y w``
  (one ``lbfgs_direction_``), then ``S u`` and ``Y u`` (one ``lbfgs_push_`` with ``g = d = u``)
  against ``gram_sy @ w``, ``gram_yy @ w``: an entry ``(a, b)`` off by ``delta`` moves its row's
  product by ``|delta| / |y_b|`` for every ``w``; several wrong entries of a row cancel for one
  ``w`` with probability at most 1/2, for all probes at most ``2**-_PROBES``. Allowed:
  ``2 (2 gamma + gamma_dir) |s_a| sum_b |w_b| |y_b| = 2 (2 gamma + gamma_dir) k |s_a|`` (each saved
  entry within ``gamma |s_a| |y_b|``, ``u`` within ``gamma_dir sum_b |w_b| |y_b|`` per element, the
  dot with it within ``gamma |s_a| |u|``): an entry off by less than ``2 (2 gamma + gamma_dir) k
  |s_a| |y_b|`` may pass (float32, n >= 32768, k = 100: 0.2 |s_a| |y_b|; n = 1023, k = 6: 5e-4);
- ``gram_yy`` exactly symmetric (the push writes both halves from one sum).

``gamma = gamma_m = m u / (1 - m u)`` (Higham 3.1) of the push's sums: each product summed in the
array type over a sub-block of ``L = min(n, 32768)`` elements in at least 4 lanes (the SSE clone;
AVX2 has 8, lane_sum 32), ``m = ceil(L / 4) + 64`` (the product, lane tree, tail), then float64 over
the sub-blocks (``+ gamma_64(n)``). ``gamma_dir = gamma_{2k+1}``: the direction's per-element sum.
These are bounds for the CPU's kernels; the CUDA kernels' sums were not analysed here.
"""

from __future__ import annotations

import numpy as np

from ._lbfgs_history import push_dots

#: random sign vectors per check
_PROBES = 3
#: the push's sub-block (cpp/lbfgs_blocks.hpp: kSub)
_SUB = 32768


def _gamma(m: int, u: float) -> float:
    return m * u / (1.0 - m * u)


def gammas(n: int, k: int, dtype) -> tuple[float, float]:
    """``(gamma, gamma_dir)`` of the module docstring for ``n`` elements, ``k`` pairs. At least float32's
    unit roundoff: a float32 run's history cast to float64 (torch's ``model.double()`` mid-run; the
    optimizer casts its state) keeps the Gram matrices its float32 push summed."""
    u = max(float(np.finfo(np.dtype(dtype)).eps), float(np.finfo(np.float32).eps)) / 2
    m = -(-min(max(n, 1), _SUB) // 4) + 64
    return _gamma(m, u) + _gamma(n, 2.0**-53), _gamma(2 * k + 1, u)


class _Passes:
    """The step's kernels over the history ``S``, ``Y`` of ``opt`` (its buffers' makers, its module)."""

    def __init__(self, opt, S: list, Y: list):
        self.opt, self.S, self.Y = opt, S, Y
        self.s_new, self.y_new, self.zero, self.u = (opt._vec() for _ in range(4))
        self.out = opt._out(5 * len(S) + 4)

    def push(self, S: list, Y: list, g, d):
        """The push's dots of the pair ``(g, d)`` (``y = g - 0``, ``s = 1 d``) against ``S``, ``Y``."""
        self.zero[...] = 0  # (the push writes prev_g = g)
        self.opt._mod.lbfgs_push_(S, Y, self.s_new, self.y_new, g, self.zero, d, 1.0, self.out)
        return push_dots(self.opt._host(self.out), len(S))

    def probe(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(S u, Y u)`` for ``u = Y^T w``."""
        k = len(self.S)
        self.zero[...] = 0
        self.opt._mod.lbfgs_direction_(
            self.S, self.Y, [0.0] * k, list(map(float, w)), self.zero, 0.0, self.u, self.opt._out(2)
        )
        rows, _ = self.push(self.S, self.Y, self.u, self.u)
        return rows[:, 1].copy(), rows[:, 0].copy()  # (s_j . y_new, s_new . y_j: y_new = s_new = u)


def check(opt, S: list, Y: list, sy: np.ndarray, yy: np.ndarray, where: str) -> None:
    """ValueError naming the entry unless the k x k float64 ``sy``, ``yy`` (finite, checked before)
    are the Gram matrices of the pairs ``S``, ``Y`` (``k >= 1`` vectors of ``opt``'s) within the
    push's rounding (module docstring)."""
    k = len(S)
    if not np.array_equal(yy, yy.T):
        i, j = np.argwhere(yy != yy.T)[0]
        raise ValueError(
            f"{where}['gram_yy']: not symmetric ([{i}, {j}] = {float(yy[i, j])!r}, [{j}, {i}] = {float(yy[j, i])!r})"
        )
    p = _Passes(opt, S, Y)
    g, g_dir = gammas(opt._n, k, opt._dtype)
    diag = np.array([p.push([], [], Y[j], S[j])[1][:2] for j in range(k)])  # (s.y, y.y) of each pair
    ny = np.sqrt(np.abs(diag[:, 1]))
    ns = np.array([_norm(opt, s) for s in S])
    for key, saved, j_ref in (("gram_sy", sy, 0), ("gram_yy", yy, 1)):
        bad = np.abs(np.diag(saved) - diag[:, j_ref]) > 4 * g * (ns if j_ref == 0 else ny) * ny
        if bad.any():
            j = int(np.argmax(bad))
            _refuse(where, key, f"[{j}, {j}] = {float(saved[j, j])!r}, the pair's {float(diag[j, j_ref])!r}")
    # (fixed probes: a checkpoint loads or is refused the same way every time)
    rng = np.random.default_rng(0x5EED)
    # (w_b = +-1 / |y_b|: each column weighs alike -- with +-1, the large early pairs' rounding hid a wrong
    # entry of a late pair, whose |y| is orders smaller near a minimum)
    scale = 1.0 / np.where(ny > 0, ny, 1.0)
    bound = 2 * (2 * g + g_dir) * (scale * ny).sum()
    for _ in range(_PROBES):
        w = rng.choice([-1.0, 1.0], size=k) * scale
        for key, saved, ref, norm in zip(("gram_sy", "gram_yy"), (sy, yy), p.probe(w), (ns, ny)):
            off = np.abs(saved @ w - ref) > bound * norm
            if off.any():
                _refuse(where, key, f"row {int(np.argmax(off))}")


def _norm(opt, s) -> float:
    """``|s|``, in float64 where the array type's sum of squares overflows."""
    v = float(opt._xp.linalg.norm(s))
    return v if np.isfinite(v) else float(opt._xp.linalg.norm(s.astype(np.float64)))


def _refuse(where: str, key: str, what: str):
    raise ValueError(
        f"{where}[{key!r}]: not the inner products of old_stps / old_dirs ({what}, beyond the push's "
        "rounding): a stale or tampered checkpoint"
    )
