"""The L-BFGS history and direction: the LBFGS mixin that keeps the curvature pairs (``s``, ``y``,
``ro``) and their inner products (the Gram matrices ``s_i . y_j`` and ``y_i . y_j``), adds a pair
and drops the oldest (``lbfgs_push_``), and forms the direction ``d = -H g`` by the two-loop
recursion in coefficient space (``lbfgs_two_loop``, then ``lbfgs_direction_``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _backend

#: the least curvature ``s . y`` of a pair the step keeps (torch's rule ``ys > 1e-10``): the push and
#: a loaded history (``_lbfgs_state``) both ask :func:`keeps_pair`
MIN_CURVATURE = 1e-10


def keeps_pair(ys: float) -> bool:
    """Whether the step keeps a pair of curvature ``ys = s . y`` (False for NaN)."""
    return bool(ys > MIN_CURVATURE)


def push_dots(dots: np.ndarray, k: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """``lbfgs_push_``'s output over ``k`` history rows, decoded: ``(rows, (ys, yy, gs, gy))``.
    ``rows[j]`` holds, for history row ``j``: ``s_new . y_j``, ``s_j . y_new``, ``y_new . y_j``,
    ``g . s_j``, ``g . y_j`` (``rules::PushDot``); then the new pair's own ``s.y``, ``y.y``, ``g.s``,
    ``g.y`` (``rules::PushSelf``). The one place that reads the layout."""
    rows = dots[: 5 * k].reshape(k, 5)
    ys, yy, gs, gy = (float(v) for v in dots[5 * k : 5 * k + 4])
    return rows, (ys, yy, gs, gy)


def place_pair(sy: np.ndarray, yy: np.ndarray, k: int, rows: np.ndarray, ys: float, yy_new: float) -> None:
    """Writes the products of a new pair ``k`` with the pairs ``0 .. k-1`` (``rows``: :func:`push_dots`'
    rows of those pairs) and with itself into the Gram matrices ``sy`` (``s_i . y_j``), ``yy``."""
    sy[k, :k] = rows[:, 0]  # s_new . y_j
    sy[:k, k] = rows[:, 1]  # s_j . y_new
    sy[k, k] = ys
    yy[k, :k] = yy[:k, k] = rows[:, 2]
    yy[k, k] = yy_new


class LBFGSHistory:
    """LBFGS's pairs and Gram matrices (``_S``, ``_Y``, ``_ro``, ``_sy``, ``_yy``) and the direction
    ``_d`` formed from them (uses the optimizer's buffers: ``_vec``, ``_out``, ``_host``, ``_mod``)."""

    if TYPE_CHECKING:
        _S: list
        _Y: list
        _ro: list
        _al: Any
        _sy: np.ndarray
        _yy: np.ndarray
        _mod: Any  # (the optimizer's: the native module, and its buffers' makers)
        _vec: Any
        _out: Any
        _host: Any

    def _push(self, g, history_size):
        """Adds the pair (g - prev_g, t d) when :func:`keeps_pair` (s.y > 1e-10, torch's rule); returns (sg, yg)."""
        k = len(self._S)
        if self._spare is None:
            self._spare = (self._vec(), self._vec())
        s_new, y_new = self._spare
        out = self._out(5 * k + 4)
        self._mod.lbfgs_push_(self._S, self._Y, s_new, y_new, g, self._prev_g, self._d, float(self._t), out)
        dots = self._host(out)
        if not np.isfinite(dots).all():  # (the kernels' float32 sums, as torch's: y.y of |y| ~ 2e19 is inf)
            raise ValueError(
                f"closure: the iterates diverge: an inner product of the newest L-BFGS pair overflows "
                f"{np.dtype(self._dtype).name} (torch's step would make the params NaN); the pair is not "
                "kept, the params are the last point evaluated: a smaller lr can go on from there"
            )
        rows, (ys, yy, gs, gy) = push_dots(dots, k)
        sg, yg = rows[:, 3].copy(), rows[:, 4].copy()
        if not keeps_pair(ys):
            return sg, yg
        keep = slice(0, k)
        if k == history_size:  # drop the oldest pair; its buffers hold the next one
            self._spare = (self._S.pop(0), self._Y.pop(0))
            self._ro.pop(0)
            keep = slice(1, k)
            self._sy[: k - 1, : k - 1] = self._sy[1:k, 1:k]
            self._yy[: k - 1, : k - 1] = self._yy[1:k, 1:k]
            sg, yg = sg[1:], yg[1:]
            k -= 1
        else:
            self._spare = None
            self._grow(k + 1, history_size)
        place_pair(self._sy, self._yy, k, rows[keep], ys, yy)
        self._S.append(s_new)
        self._Y.append(y_new)
        self._ro.append(1.0 / ys)
        self._h_diag = ys / yy
        return np.append(sg, gs), np.append(yg, gy)

    def _gram_of(self, S: list, Y: list) -> tuple[np.ndarray, np.ndarray]:
        """The Gram matrices ``(s_i . y_j, y_i . y_j)`` of the pairs ``S``, ``Y`` (oldest first), each
        entry the bits the step's own push gave it: pair ``j`` pushed again after pairs ``0 .. j-1``
        (``lbfgs_push_`` with ``d = s_j``, ``t = 1``, ``g = y_j``, ``prev_g = 0``, so that its new pair
        is ``(s_j, y_j)`` exactly), which the kernel sums in the order it did when the step added it.
        For a checkpoint without them (torch's): ``k`` passes over up to ``k`` rows, ``k^2 n`` reads;
        optkern's own are checked in ``O(k n)`` instead (:mod:`._lbfgs_gram`)."""
        k = len(S)
        sy, yy = np.zeros((k, k)), np.zeros((k, k))
        if not k:
            return sy, yy
        s_new, y_new, zero = self._vec(), self._vec(), self._vec()
        out = self._out(5 * k + 4)
        for j in range(k):
            zero[...] = 0  # (the push writes prev_g = g)
            self._mod.lbfgs_push_(S[:j], Y[:j], s_new, y_new, Y[j], zero, S[j], 1.0, out)
            rows, (ys, yy_j, _, _) = push_dots(self._host(out), j)
            place_pair(sy, yy, j, rows, ys, yy_j)
        return sy, yy

    def _grow(self, rows: int, history_size: int):
        """Room for ``rows`` pairs in the Gram matrices: doubled when full, up to ``history_size``."""
        c = self._sy.shape[0]
        if rows <= c:
            return
        c, old = min(max(rows, 2 * c, 8), max(rows, history_size)), c
        for name in ("_sy", "_yy"):
            grown = np.zeros((c, c))
            grown[:old, :old] = getattr(self, name)
            setattr(self, name, grown)

    def _direction(self, g, sg, yg):
        """d = -H g (two-loop recursion); returns (g.d, max |d|)."""
        k = len(self._S)
        if self._d is None:
            self._d = self._vec()
        if k:
            al, cs, cy, g_scale = _backend.cpu.lbfgs_two_loop(
                k, self._sy[:k, :k], self._yy[:k, :k], sg, yg, np.asarray(self._ro), float(self._h_diag)
            )
            self._al = al
        else:
            cs, cy, g_scale = [], [], -float(self._h_diag)
        out = self._out(2)
        self._mod.lbfgs_direction_(self._S, self._Y, cs, cy, g, g_scale, self._d, out)
        gtd, dmax = (float(v) for v in self._host(out))
        return gtd, dmax

    def _trim(self, history_size):
        """A smaller ``history_size`` set between steps drops the oldest pairs."""
        k = len(self._S)
        if k > history_size:
            drop = k - history_size
            del self._S[:drop], self._Y[:drop], self._ro[:drop]
            if self._al is not None:  # (al[i] is pair i's: kept, they outlived a step that stops early)
                self._al = self._al[drop:]
            self._sy[: k - drop, : k - drop] = self._sy[drop:k, drop:k].copy()
            self._yy[: k - drop, : k - drop] = self._yy[drop:k, drop:k].copy()
