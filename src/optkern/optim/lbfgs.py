"""L-BFGS with torch.optim.LBFGS's semantics, its two-loop recursion as two native passes.

Each iteration does what torch's does, in the same order (the same stopping tests, the same
strong-Wolfe line search, :mod:`._line_search`), but the inverse-Hessian product runs in
coefficient space (``rules/second_order.hpp``, :mod:`._lbfgs_history`): one native pass adds
the new pair and takes every inner product the recursion needs, the recursion runs on ``k``
numbers, and a second pass forms the direction -- two reads of the history per iteration instead of torch's
``4 k`` Python-level dot / axpy calls. Results agree with torch to rounding (the sums are
associated differently), not bit for bit.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from .. import _aligned, _backend, _fixed_sums
from .._atomic import Uninterrupted
from .._pickling import NativeByName
from .._serial import serialized
from . import _closure, _lbfgs_state, _line_search
from ._given import GivenTensorsMixin, _bump_torch_versions, given_list, given_params
from ._hyper import nonnegative
from ._lbfgs_history import LBFGSHistory

_NAMES = ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size", "line_search_fn")


def _check_group(g: dict, where: str = "") -> tuple:
    """The group's hyper-parameters, checked; errors name them (inside ``where``, a state dict's group)."""
    n = (lambda k: f"{where}[{k!r}]") if where else (lambda k: k)
    lr = nonnegative(n("lr"), g["lr"])  # (_hyper's: a float16 NumPy lr refused)
    # (the limits and the history size at most 2**63 - 1: the native calls count the history in int64,
    # torch's checkpoints hold int64; 2**70 was stored, and its state_dict padded al towards it)
    top = _backend.INT64_MAX
    max_iter = _backend.integer(n("max_iter"), g["max_iter"], lo=1, hi=top)
    max_eval = _backend.integer(n("max_eval"), g["max_eval"], lo=1, hi=top)
    tol_grad = _tolerance(n("tolerance_grad"), g["tolerance_grad"])
    tol_change = _tolerance(n("tolerance_change"), g["tolerance_change"])
    history = _backend.integer(n("history_size"), g["history_size"], lo=1, hi=top)
    ls = g["line_search_fn"]
    if ls not in (None, "strong_wolfe"):
        raise ValueError(f"{n('line_search_fn')}: expected None or 'strong_wolfe', got {ls!r}")
    return lr, max_iter, max_eval, tol_grad, tol_change, history, ls


def _tolerance(name: str, value) -> float:
    """A stopping tolerance: >= 0, or +inf. torch's tests compare with it and check nothing, so +inf
    (the first test stops the step) is a choice there; optkern refused it as not finite. NaN (every
    comparison False: the rule silently off) and negative values stay refused by name."""
    if type(value) is not bool and isinstance(value, numbers.Real) and value == math.inf:
        return math.inf
    return _backend.nonnegative(name, value)


def _one_group(params) -> tuple:
    """``(params, the group's hyper-parameters)`` of torch's one-group form ``[{"params": [...], "lr":
    ...}]``, which torch.optim.LBFGS takes (it refuses more than one group); ``(params, {})`` for a
    list of arrays. The group was refused as "per-parameter options" where torch takes it."""
    if not isinstance(params, (list, tuple)) or not params or not isinstance(params[0], dict):
        return params, {}
    if len(params) > 1:
        raise ValueError("params: LBFGS doesn't support per-parameter options (parameter groups)")
    group = params[0]
    if "params" not in group:
        raise ValueError("params[0]: missing 'params'")
    unknown = [k for k in group if k != "params" and k not in _NAMES]
    if unknown:
        raise ValueError(f"params[0]: unknown hyper-parameter {unknown[0]!r} (LBFGS takes {', '.join(_NAMES)})")
    return group["params"], {k: v for k, v in group.items() if k != "params"}


def default_max_eval(max_iter) -> int:
    """torch's default ``max_eval``, ``max_iter * 5 // 4`` from a checked ``max_iter``, held to int64
    (``max_iter = 2**63 - 1`` must not make a default past the bound that ``max_eval`` is checked to)."""
    return min(_backend.integer("max_iter", max_iter, lo=1) * 5 // 4, _backend.INT64_MAX)


class LBFGS(LBFGSHistory, GivenTensorsMixin, NativeByName):
    """L-BFGS (``torch.optim.LBFGS``'s algorithm and defaults) over NumPy or CuPy arrays.

    Args:
      params: a list of float32/float64 arrays (one group; updated in place), or torch's form of
        that one group, ``[{"params": [...], "lr": ..., ...}]`` (its values override the arguments).
      lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search_fn:
        as in torch (``max_eval`` defaults to ``max_iter * 5 // 4``; the tolerances are >= 0 or
        +inf, which stops the step at its first test; ``line_search_fn`` is None or ``"strong_wolfe"``).

    ``step(closure)``: ``closure()`` computes the loss and gradients at the current values of
    the params and returns ``(loss, grads)`` (grads: a list matching params, or one array when
    there is one param; None for a param without a gradient reads as zeros, as in torch). It runs
    up to ``max_iter`` iterations and returns the first loss.
    A closure returning the wrong kind, shape or dtype, or a NaN/Inf loss or gradient, raises
    TypeError/ValueError naming ``closure``; the params are then put back to the last iterate
    (on the first evaluation of a step: nothing has been written), as they are when the closure
    itself raises (its exception propagates unchanged). The closure may reuse its gradient
    buffers between calls.

    Memory: ``2 (history_size + 1) + 3`` vectors of the parameter size (torch: about the same).
    """

    def __init__(
        self,
        params,
        lr=1,
        max_iter=20,
        max_eval=None,
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
        history_size=100,
        line_search_fn=None,
    ):
        if max_eval is None:
            max_eval = default_max_eval(max_iter)
        group = dict(
            zip(_NAMES, (lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search_fn))
        )
        _check_group(group)
        self.defaults = dict(group)
        if isinstance(params, dict):
            raise TypeError("params: expected a list of arrays, got a dict")
        params, own = _one_group(given_params(params))
        if own:  # (torch's one group: its values override the constructor's, max_eval's default kept)
            group.update(own)
            _check_group(group, "params[0]")
        params = given_params(params)
        given, params = given_list(params), _backend.as_list(params, "params")
        if not params:
            raise ValueError("params: optimizer got an empty parameter list")
        mod = _backend.backend(("params", params))
        for i, p in enumerate(params):
            _backend.check_written(p, params[0].dtype, f"params[{i}]")
            if p.dtype not in (np.float32, np.float64):
                raise TypeError(f"params[{i}]: expected float32 or float64, got {p.dtype}")
        _lbfgs_state.distinct(params)
        self.param_groups = [dict(group, params=list(params))]
        self._given_tensors = self._track(given, params)  # (followed to new memory: _lbfgs_state.follow_params)
        self._mod = mod
        self._xp = _backend.array_module(params[0])
        self._dtype = params[0].dtype
        self._n = sum(int(p.size) for p in params)
        self._reset()

    # ---- state -------------------------------------------------------------------------

    def _reset(self):
        self.state = {"func_evals": 0, "n_iter": 0}
        self._S, self._Y, self._ro = [], [], []  # history rows, oldest first; ro_j = 1 / s_j.y_j
        self._spare = None  # (s, y) buffers for the next pair
        # s_i . y_j and y_i . y_j of the rows in order, in [:k, :k]; grown with the pairs stored
        # (_grow), not allocated for history_size up front (10**6 would be 8 TB)
        self._sy = np.zeros((0, 0))
        self._yy = np.zeros((0, 0))
        self._d = self._t = self._prev_g = self._h_diag = self._prev_loss = None
        self._al = None
        self._x = None  # the iterate a line search starts from (flat copy of the params)

    @property
    def _params(self):
        return self.param_groups[0]["params"]

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # An unpickled or deep-copied optimizer's vectors are NumPy's new arrays (16 bytes past a line
        # when large), and its rows are recycled, never reallocated: put them where _vec does (on lines,
        # large ones staggered: _aligned; a shallow copy's, the original's own, are there already and
        # stay shared).
        line = _aligned.on_line
        for name in ("_S", "_Y"):
            if isinstance(getattr(self, name, None), list):
                setattr(self, name, [line(v) for v in getattr(self, name)])
        for name in ("_d", "_prev_g"):
            if getattr(self, name, None) is not None:
                setattr(self, name, line(getattr(self, name)))
        if getattr(self, "_spare", None) is not None:
            self._spare = tuple(line(v) for v in self._spare)

    def _vec(self):
        # (on a cache line, large ones staggered mod 4 KiB: the push and direction passes stream every
        # history row with vector loads)
        with _backend._device_of(self._params[0]):
            return _aligned.empty(self._n, self._dtype, self._xp)

    def _out(self, size):
        with _backend._device_of(self._params[0]):
            return self._xp.empty(size, dtype=np.float64)

    def _host(self, a) -> np.ndarray:
        return a if self._xp is np else a.get()

    # ---- the closure ----------------------------------------------------------------------

    def _evaluate(self, closure, copy: bool):
        """(loss, flat gradient) from the closure, checked; ``copy``: the flat gradient is ours."""
        loss, grads = _closure.call(closure)
        loss, grads = _closure.closure_loss(loss), _closure.closure_grads(grads, self._params)
        ps = self._params
        xp = self._xp
        if len(grads) == 1 and not copy and grads[0].flags.c_contiguous:
            flat = grads[0].reshape(-1)
        else:
            with _backend._device_of(ps[0]):  # (a fresh copy on a cache line, as the history rows: _vec)
                parts = [xp.ravel(g) for g in grads]
                flat = _aligned.empty(sum(int(p.size) for p in parts), xp.result_type(*parts), xp)
                if len(parts) > 1:
                    xp.concatenate(parts, out=flat)
                else:
                    flat[...] = parts[0]
        stats = self._out(2)
        self._mod.lbfgs_stats(flat, stats)
        gmax, gsum = (float(v) for v in self._host(stats))
        if not math.isfinite(gmax):
            raise ValueError("closure: returned a gradient with NaN or Inf entries")
        return loss, flat, gmax, gsum

    def _evaluate_or_restore(self, closure, copy: bool):
        """``_evaluate`` at a trial point; whatever it raises (a bad result, or the closure's own
        exception, even KeyboardInterrupt) puts the params back to the iterate first. The state
        then describes that iterate: the next step starts from it."""
        try:
            return self._evaluate(closure, copy)
        except BaseException:
            self._restore()
            raise

    def _restore(self):
        """Params back to the iterate ``self._x`` (after a failed evaluation at a trial point). The
        iteration is left as one that took a step of length 0, so the next step's update adds no
        pair (``s = 0``: the curvature test drops it) instead of reading an unset or stale ``t``,
        and repeats the iteration that failed: its direction from the same history and gradient,
        its step ``lr``. The run's first iteration is undone instead (``n_iter`` back to 0): it
        starts with the short step ``min(1, 1 / |g|_1) lr`` (no curvature known yet), which a
        repeat read as a later iteration replaced by ``lr`` -- a step ``|g|_1`` times longer
        than the one interrupted."""
        if self._x is not None and self._moved:
            self._mod.sam_restore_(self._params, self._x_views())
            _bump_torch_versions(self._given_tensors)
            self._moved = False
            self._t = 0.0
            if self.state["n_iter"] == 1:
                self.state["n_iter"] = 0

    def _x_views(self):
        out, o = [], 0
        for p in self._params:
            out.append(self._x[o : o + p.size])
            o += p.size
        return out

    def _move(self, t, save: bool, keep: bool = True):
        """save: x = p, p += t d;  else p = x + t d;  keep=False (the step's last move, which no
        evaluation follows): p += t d, no copy x kept -- n values fewer written."""
        if keep and self._x is None:
            self._x = self._vec()
        self._mod.lbfgs_move_(self._params, self._x if keep else None, self._d, float(t), save or not keep)
        # (torch tensors given as params: a graph that saved them refuses its backward, as after
        # torch's own in-place step, instead of differentiating the new values)
        _bump_torch_versions(self._given_tensors)
        self._moved = keep  # (nothing to restore without a copy; no evaluation follows such a move)

    # ---- step --------------------------------------------------------------------------

    @serialized
    def step(self, closure):
        """Up to ``max_iter`` L-BFGS iterations; returns the loss at the starting point.

        A Ctrl-C raises inside the closure as it would without the step; one that arrives while
        the step writes (the history, the direction, a move of the params) is held until the next
        closure call, where the step puts the params back to the iterate as when the closure
        raises, or until the step's end: the state always describes the params (``_atomic``)."""
        if not callable(closure):
            raise TypeError(f"closure: expected a callable returning (loss, grads), got {type(closure).__name__}")
        with Uninterrupted() as guard:
            return self._step(functools.partial(guard.call, closure))

    def _step(self, closure):
        lr, max_iter, max_eval, tol_grad, tol_change, history_size, ls = _check_group(self.param_groups[0])
        _lbfgs_state.follow_params(self)
        self._trim(history_size)
        state = self.state
        self._moved = False
        wolfe = ls is not None
        # torch's gtd, max |d|, |g| sums and maxima are tensors of the params' dtype, its tests on
        # them float32 for float32 params: the same here through numpy.float32 scalars
        # (_line_search's docstring), numpy.float64 otherwise: torch's float64 to the bit, and, like
        # its tensors, a division by zero in the cubic interpolation (a direction along which the
        # loss is linear: equal slopes, a zero denominator) gives inf / nan where a Python float
        # raised ZeroDivisionError out of the line search with the params at its trial point
        sc = np.float32 if self._dtype == np.float32 else np.float64
        loss, g, gmax, gsum = self._evaluate(closure, copy=wolfe)
        orig_loss = loss
        current_evals = 1
        state["func_evals"] += 1
        if sc(gmax) <= tol_grad:
            return orig_loss

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                self._S, self._Y, self._ro, self._spare = [], [], [], None
                self._h_diag = 1.0
                if self._prev_g is None:
                    self._prev_g = self._vec()
                self._prev_g[...] = g
                sg = yg = np.zeros(0)
            else:
                sg, yg = self._push(g, history_size)  # also prev_g = g
            gtd, dmax = self._direction(g, sg, yg)
            gtd, dmax = sc(gtd), sc(dmax)
            self._prev_loss = loss

            if state["n_iter"] == 1:
                with np.errstate(over="ignore"):  # (1 / a float32 sum may overflow: torch's is inf too)
                    t = min(1.0, 1.0 / sc(gsum)) * lr
            else:
                t = lr
            if gtd > -tol_change or (wolfe and t == 0):
                # (t = 0: lr = 0, or 1 / |g|_1 past the dtype's range: a step of length 0, nothing to
                # search; torch's cubic divided by the zero bracket, ZeroDivisionError out of the
                # line search after the history had advanced)
                break

            ls_func_evals = 0
            if wolfe:
                first = [True]

                def obj_func(tt, first=first):
                    self._move(tt, save=first[0])
                    first[0] = False
                    f, gn, _, _ = self._evaluate_or_restore(closure, copy=True)
                    return f, gn, sc(_fixed_sums.dot(gn, self._d))  # (not BLAS: the same bits for any thread count)

                loss, g, t, ls_func_evals = _line_search.strong_wolfe(
                    obj_func, t, dmax, loss, g, gtd, max_ls=max_eval - current_evals
                )
                self._move(t, save=False)
                gmax = float(self._host(self._stats(g))[0])
                opt_cond = sc(gmax) <= tol_grad
            else:
                last = n_iter == max_iter  # (no evaluation follows: the iterate needs no copy)
                self._move(t, save=True, keep=not last)
                opt_cond = False
                if not last:
                    loss, g, gmax, _ = self._evaluate_or_restore(closure, copy=False)
                    opt_cond = sc(gmax) <= tol_grad
                    ls_func_evals = 1
            self._t = t = float(t)  # (a float32 t is exact in a float: the state holds Python floats)
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if abs(sc(t)) * dmax <= tol_change:  # = max |t d| (torch's d.mul(t)): rounding is monotone
                break
            if abs(loss - self._prev_loss) < tol_change:
                break
        self._t = float(t)
        return orig_loss

    def _stats(self, g):
        out = self._out(2)
        self._mod.lbfgs_stats(g, out)
        return out

    # ---- checkpoints ----------------------------------------------------------------------

    @serialized
    def state_dict(self) -> dict:
        """torch's LBFGS state layout (``state[0]``: ``d``, ``t``, ``old_dirs`` = y's, ``old_stps`` = s's,
        ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``n_iter``, ``func_evals``, ``al``) plus the
        inner products optkern keeps (``gram_sy``, ``gram_yy``). Arrays are copies. (``load_state_dict``
        takes the inner products, ``ro`` and ``H_diag`` from the vectors, not from these entries.)"""
        from ._lbfgs_state import state_dict

        return state_dict(self)

    @serialized
    def _live_state_dict(self) -> dict:
        """:meth:`state_dict` over this optimizer's own vectors (not copies), for reading only (the
        ranks' digest of it, ``distributed.data_parallel``): the next step overwrites them."""
        from ._lbfgs_state import state_dict

        return state_dict(self, copy=False)

    @serialized
    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Restore from :meth:`state_dict` (or a torch LBFGS state dict converted to arrays); checks
        everything before changing anything, like ``Optimizer.load_state_dict`` (``strict=False``
        ignores unknown keys and keeps this optimizer's value of a missing hyper-parameter)."""
        from ._lbfgs_state import load_state_dict

        load_state_dict(self, state_dict, strict)

    def __repr__(self) -> str:
        g = self.param_groups[0]
        return "LBFGS(" + ", ".join(f"{k}={g[k]!r}" for k in _NAMES) + ")"
