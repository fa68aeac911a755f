"""Hessian-free Newton-CG (Martens 2010) on optkern's curvature operators.

Each step solves ``(B + lambda I) p = -g`` by preconditioned CG (:func:`optkern.hessian.cg`) on a
curvature operator ``B`` (``hessian.from_mlp(..., kind="ggn")`` -- PSD, Martens' choice -- or
``kind="hessian"``, or any ``CurvatureOperator``), truncated by an iteration limit, a relative
residual and negative curvature; starts CG from ``warm_start`` times the previous step; takes
``p``, and adapts ``lambda`` by Levenberg-Marquardt from the reduction ratio
``rho = (f(w + p) - f(w)) / (g.p + p.B p / 2)``: ``lambda *= boost`` when ``rho < 1/4``,
``lambda *= drop`` when ``rho > 3/4``. A step that raises the loss is undone, and so is one whose
trial point has no finite loss (outside the function's domain: ``rho = -inf``, a boost).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _backend, _fixed_sums
from .._atomic import Uninterrupted
from .._pickling import NativeByName
from .._serial import serialized
from ..hessian._products import real_array
from ..hessian.cg import cg
from ..hessian.operators import CurvatureOperator, as_operator
from ..hessian.symmetry import require_symmetric
from ._closure import call, closure_grads, closure_loss
from ._given import GivenTensorsMixin, _bump_torch_versions, given_list, given_params
from ._lbfgs_state import count, distinct, follow_params, one_group, vector
from ._newton_cg_hyper import _HYPER, check_hyper


class NewtonCG(GivenTensorsMixin, NativeByName):
    """Hessian-free Newton-CG.

    Args:
      params: a list of float32/float64 arrays (updated in place; the operator acts on their
        concatenation).
      curvature: a ``CurvatureOperator`` that evaluates at the params' current values (like
        ``hessian.from_mlp(model, params, ...)``, which reads the params array on every product), or
        a callable ``() -> operator`` called once per step (``lambda: hessian.from_mlp(model,
        params, x, y, kind="ggn", fixed=True)``: the step's products then share one forward pass;
        the step uses the operator only before it moves the params).
      lr: step multiplier (1 = the CG solution).
      damping: initial ``lambda`` (> 0).
      max_cg_iter, cg_tol: CG truncation (iterations; relative residual ``||r|| <= cg_tol ||g||``).
      preconditioner: None, a positive diagonal (array), or a callable ``() -> diagonal``; CG uses
        ``(diag + lambda) ** precond_exponent`` (Martens: the diagonal of the squared gradients,
        exponent 0.75).
      warm_start: CG starts from ``warm_start * previous p`` (Martens: 0.95; 0 = cold).
      boost, drop, min_damping, max_damping: the Levenberg-Marquardt rule and its bounds (``damping``
        must lie within them).
      reuse_trial_gradient: the closure's result at an accepted trial point (after a rejected one:
        at the start point) starts the next step (saves one evaluation per step; do not change the
        params or the data between steps then). False: every step calls the closure at its start.

    ``step(closure)``: ``closure() -> (loss, grads)`` at the current params (a None grad reads as
    zeros); returns the loss at the start. Counters: ``num_grad_evals``, ``num_hvps``; ``last`` holds the step's
    diagnostics (rho, damping, CG iterations and exit). A zero gradient makes ``p = 0``: the step
    then ends there (no trial evaluation, the damping kept, ``rho`` NaN); so does a step over params
    of total size 0 (the closure evaluated and its loss returned, the curvature not built or used).
    A trial point whose loss is NaN or infinite is a rejected step, not an error (Martens 2010 /
    Levenberg-Marquardt: the step left the region where the model or the function is defined): the
    params go back, the damping is boosted as for ``rho < 1/4`` (``last``: ``rho`` -inf,
    ``accepted`` False, ``new_loss`` that loss), its gradient is not read, the step returns the
    start's loss; the next step retries from there with the shorter step. A step that raises (a bad
    closure result -- a NaN / inf loss or gradient at the params, a NaN / inf gradient beside a
    finite trial loss: TypeError / ValueError naming ``closure``; or whatever the closure or the
    operator raise, propagated unchanged) leaves the params and the optimizer's state as they were
    before it. ``max_damping`` must be finite in the params' dtype (the boosts stop there).
    """

    def __init__(
        self,
        params,
        curvature,
        lr=1.0,
        damping=1.0,
        max_cg_iter=50,
        cg_tol=5e-4,
        preconditioner=None,
        precond_exponent=0.75,
        warm_start=0.95,
        boost=1.5,
        drop=2.0 / 3.0,
        min_damping=1e-8,
        max_damping=1e8,
        reuse_trial_gradient=True,
    ):
        params = given_params(params)
        given, params = given_list(params), _backend.as_list(params, "params")
        if not params:
            raise ValueError("params: optimizer got an empty parameter list")
        for i, p in enumerate(params):
            if not hasattr(p, "dtype") or p.dtype not in (np.float32, np.float64):
                raise TypeError(f"params[{i}]: expected a float32 or float64 array")
            _backend.check_written(p, params[0].dtype, f"params[{i}]")
        distinct(params)
        if not (isinstance(curvature, CurvatureOperator) or hasattr(curvature, "matvec") or callable(curvature)):
            raise TypeError(
                f"curvature: expected a CurvatureOperator or a callable returning one, got {type(curvature).__name__}"
            )
        if preconditioner is not None and not callable(preconditioner) and not hasattr(preconditioner, "shape"):
            raise TypeError("preconditioner: expected None, a diagonal array or a callable returning one")
        self._xp = _backend.array_module(params[0])
        self._n = sum(int(p.size) for p in params)
        self._dtype = params[0].dtype
        self.curvature = curvature
        if preconditioner is not None and not callable(preconditioner):
            self._checked_diag(preconditioner)  # (a fixed one no step takes: refused here, not after a closure)
        self.preconditioner = preconditioner
        # (bool() of anything took "no" or None as a choice, and an array's ambiguous truth value
        # raised without naming the argument)
        self.reuse_trial_gradient = _backend.flag("reuse_trial_gradient", reuse_trial_gradient)
        hyper = (lr, damping, max_cg_iter, cg_tol, precond_exponent, warm_start, boost, drop, min_damping, max_damping)
        group = {"params": list(params), **dict(zip(_HYPER, hyper))}
        self._check(group, dtype=self._dtype)
        self.param_groups = [group]
        self._given_tensors = self._track(given, params)  # (followed to new memory: follow_params)
        self.num_grad_evals = 0
        self.num_hvps = 0
        self.last: dict = {}
        self._p = None  # previous step (warm start)
        self._cache = None  # (loss, flat grad) at the current params

    _check = staticmethod(check_hyper)  # (also _group_hyper's, and load_state_dict's)

    @property
    def _params(self):
        return self.param_groups[0]["params"]

    def _flat(self, arrays):
        """The arrays' concatenation as one fresh vector, ours (one array: a copy of it; several: their
        ``concatenate``, fresh already -- a copy of it as well cost a pass and a vector per call)."""
        xp = self._xp
        if len(arrays) == 1:
            return xp.array(arrays[0].reshape(-1))
        return xp.concatenate([a.reshape(-1) for a in arrays])

    def _set(self, flat):
        o = 0
        for p in self._params:
            p[...] = flat[o : o + p.size].reshape(p.shape)
            o += p.size
        # (torch tensors given as params: a graph that saved them refuses its backward, as after
        # torch's own in-place step, instead of differentiating the new values)
        _bump_torch_versions(self._given_tensors)

    def _evaluate(self, closure, trial: bool = False):
        """(loss, flat gradient) from the closure, checked (the caller counts the evaluation). At a
        ``trial`` point a NaN / inf loss is returned, with no gradient (the step is rejected)."""
        loss, grads = call(closure)
        loss, grads = closure_loss(loss, finite=not trial), closure_grads(grads, self._params)
        if not math.isfinite(loss):
            return loss, None
        g = self._flat(grads)  # ours: the closure may reuse its buffers
        if not bool(self._xp.isfinite(g).all()):
            raise ValueError("closure: returned a gradient with NaN or Inf entries")
        return loss, g

    def _precond_diag(self, damping, exponent):
        pc = self.preconditioner
        if pc is None:
            return None
        d = self._checked_diag(pc() if callable(pc) else pc)
        return (d + damping) ** exponent

    def _checked_diag(self, d):
        """The preconditioner's diagonal ``d`` as a real array of the parameters' size, finite and >= 0."""
        # real numbers, named here: a complex diagonal was refused as cg's "precond_diag", a string
        # one by a bare NumPy comparison error, neither naming this argument
        d = real_array(self._xp, d, "preconditioner")
        if d.shape != (self._n,):
            raise ValueError(f"preconditioner: expected a diagonal of shape ({self._n},), got {tuple(d.shape)}")
        if not bool((d >= 0).all()) or not bool(self._xp.isfinite(d).all()):
            raise ValueError("preconditioner: the diagonal must be finite and >= 0 (SPD after damping)")
        return d

    @serialized
    def step(self, closure):
        """One Newton-CG step; returns the loss at the start. Counters, damping, the warm start and
        the cached evaluation change only when the step completes.

        The closure and the solve (the user's operator: a product may be a forward and two backward
        passes) write nothing and stay interruptible; a Ctrl-C while the step moves the params or
        records the step is held until the trial point's closure call (the params go back to the
        start, as when the closure raises) or the step's end (``_atomic``)."""
        if not callable(closure):
            raise TypeError(f"closure: expected a callable returning (loss, grads), got {type(closure).__name__}")
        with Uninterrupted() as guard:
            hp, loss, g, p, res, evals, hvps, q = guard.call(self._solve, closure)
            if q is None:  # p = 0 (_solve tested it)
                return self._null_step(loss, g, p, res, evals, hp[1])
            return self._take(functools.partial(guard.call, closure), hp, loss, g, p, res, evals, hvps, q)

    def _check_operator(self, op) -> CurvatureOperator:
        """``op`` as the operator the step takes its own product from: a dense or SciPy sparse matrix
        wrapped (the step's product along a first-iteration negative-curvature direction was
        ``op.matvec(p)`` on the raw matrix: an AttributeError). Its vectors are the params' kind and
        dtype: cg solves in the operator's, and the step's arrays are the params' (the solve failed
        inside, with a TypeError naming cg's ``b`` or the step's ``y``, after a closure evaluation),
        and symmetric where that can be seen (a dense matrix: cg's check named its own ``A``, after
        the closure had run)."""
        op = require_symmetric(op, "curvature", "Newton-CG")
        op = as_operator(op, "curvature")
        xp = getattr(op, "xp", np)
        if xp.__name__ != self._xp.__name__:
            raise TypeError(f"curvature: works on {xp.__name__} vectors, but the params are {self._xp.__name__} arrays")
        if np.dtype(op.dtype) != self._dtype:
            raise TypeError(f"curvature: its dtype is {np.dtype(op.dtype)}, but the params are {self._dtype}")
        return op

    def _solve(self, closure) -> tuple:
        """The step's Newton direction: ``(hyper-parameters, loss, g, p, CG result, evaluations,
        products, model decrease q of lr p)``; nothing written."""
        hp = self._check(self.param_groups[0], dtype=self._dtype)
        if follow_params(self):
            self._cache = None  # (the gradient of the values the tensors held before)
        if self._n == 0:
            # nothing to solve for (an operator is n x n, n >= 1: not built); as LBFGS and the
            # first-order optimizers, the step evaluates (and checks) the closure and ends, p = 0
            loss, g = self._evaluate(closure) if self._cache is None else self._cache
            return hp, loss, g, g, None, int(self._cache is None), 0, None
        lr, lam, max_cg, cg_tol, expo, warm = hp[:6]
        op = self.curvature() if callable(self.curvature) and not hasattr(self.curvature, "matvec") else self.curvature
        if getattr(op, "shape", None) != (self._n, self._n):
            raise ValueError(
                f"curvature: expected an operator of shape ({self._n}, {self._n}), got {getattr(op, 'shape', None)}"
            )
        # (cg takes op itself: a composite's distributed part keeps its lockstep, hessian._lockstep,
        # which the wrapper would hide)
        wrapped = self._check_operator(op)
        diag = self._precond_diag(lam, expo)
        evals = int(self._cache is None)
        loss, g = self._evaluate(closure) if evals else self._cache
        x0 = None
        if warm > 0 and self._p is not None:
            x0 = self._p * warm
        res = cg(op, -g, x0, rtol=cg_tol, maxiter=max_cg, precond_diag=diag, damping=lam)
        hvps = res.num_matvecs
        p = res.x
        xp = self._xp
        if res.negative_curvature and res.iterations == 0:
            # the first CG direction, M^-1 r0: from a cold start r0 = -g, a descent direction; from a
            # warm start x0, r0 = -g - (B + lambda I) x0, which may point uphill (g.p > 0). Along a
            # direction of negative curvature both signs lower the model; the one with g.p <= 0
            # lowers it more (and is the descent direction this exit promises): take that one
            p = res.direction
            if _fixed_sums.dot(g, p) > 0.0:
                p = -p
        pp = _fixed_sums.dot(p, p)  # (the model's dots: not BLAS's, whose bits follow the thread count)
        # p = 0 told by the sum of squares the model takes anyway; only a p.p of 0 (p below ~1e-162:
        # an underflow) is looked at again, by an any pass, which ran on every step before
        if pp == 0.0 and not bool(xp.any(p)):
            return hp, loss, g, p, res, evals, hvps, None  # (q None: step() ends at p = 0)
        # model decrease with the undamped curvature: p.B p = p.(A + lam I) p - lam |p|^2, and
        # (A + lam I) x = -g - r from the recursion (exact arithmetic) when p is the CG iterate
        if p is res.x:
            # p.(-g - r) as -(p.(g + r)), the same bits ((-g) - r = -(g + r) and the sum is sign-
            # symmetric); g + r in place in r, cg's own array (read nowhere else): -g, then the
            # difference, were two vectors and two passes a step
            s = res.residual
            s = xp.add(s, g, out=s) if s.dtype == g.dtype else g + s  # (an operator of another dtype: promoted)
            pAp = -_fixed_sums.dot(p, s) - lam * pp
        else:
            pAp = _fixed_sums.dot(p, wrapped.matvec(p))
            hvps += 1
        q = lr * _fixed_sums.dot(g, p) + 0.5 * lr * lr * pAp
        return hp, loss, g, p, res, evals, hvps, q

    def _take(self, closure, hp, loss, g, p, res, evals, hvps, q):
        """The trial point ``w + lr p`` evaluated, the step kept or undone, the damping adapted."""
        lr, lam, _, _, _, _, boost, drop, lam_min, lam_max = hp
        w = self._flat(self._params)
        t = p * lr  # (w + lr p with one new vector: lr p + w is the same sum; promoted as before)
        t = self._xp.add(t, w, out=t) if t.dtype == w.dtype else w + t
        self._set(t)
        try:
            new_loss, new_g = self._evaluate(closure, trial=True)
        except BaseException:  # a bad result, or the closure's own error: back to w, the step undone
            self._set(w)
            raise
        self.num_grad_evals += evals + 1
        self.num_hvps += hvps
        # a trial loss that is not finite (NaN: rho NaN, neither boosted nor dropped; -inf: an
        # unbounded "decrease" the next step cannot start from): the model says nothing there, a
        # rejected step like rho < 1/4 (it raised with the damping unchanged: every retry the same)
        finite = math.isfinite(new_loss)
        rho = (new_loss - loss) / q if q < 0 and finite else -math.inf
        if rho < 0.25:
            lam = min(lam * boost, lam_max)
        elif rho > 0.75:
            lam = max(lam * drop, lam_min)
        self.param_groups[0]["damping"] = lam
        accepted = finite and new_loss < loss
        if accepted:
            self._cache = (new_loss, new_g) if self.reuse_trial_gradient else None
        else:  # back at w: its evaluation is the next start only when evaluations carry over
            self._cache = (loss, g) if self.reuse_trial_gradient else None
            self._set(w)
        self._p = p
        self.last = {
            "rho": rho,
            "damping": lam,
            "accepted": accepted,
            "cg_iterations": res.iterations,
            "cg_info": res.info,
            "negative_curvature": res.negative_curvature,
            "loss": loss,
            "new_loss": new_loss,
        }
        return loss

    def _null_step(self, loss, g, p, res, evals, lam):
        """The end of a step whose CG solution is ``p = 0`` (a zero gradient: ``cg`` returns 0 at
        once): the trial point would be ``w`` itself, so it is not evaluated, and the reduction
        ratio is 0 / 0, which says nothing of the model: the damping stays (a ratio read as
        ``-inf`` would boost it on every such step). The params are not touched."""
        self.num_grad_evals += evals
        self.num_hvps += 0 if res is None else res.num_matvecs
        self._cache = (loss, g) if self.reuse_trial_gradient else None  # still the params' evaluation
        self._p = p  # the step taken: the next one starts CG cold
        self.last = {
            "rho": math.nan,
            "damping": lam,
            "accepted": False,
            "cg_iterations": 0 if res is None else res.iterations,  # (None: no solve, size 0)
            "cg_info": 0 if res is None else res.info,
            "negative_curvature": False if res is None else res.negative_curvature,
            "loss": loss,
            "new_loss": loss,
        }
        return loss

    @serialized
    def state_dict(self) -> dict:
        """``{"state": {0: {"num_grad_evals", "num_hvps", "prev_step"}}, "param_groups": [group]}``:
        the counters, the last step taken (a copy; absent before the first: CG's warm start) and the
        one group's hyper-parameters with ``"params"`` as indices (torch's layout)."""
        g = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        g["params"] = list(range(len(self._params)))
        st = {"num_grad_evals": self.num_grad_evals, "num_hvps": self.num_hvps}
        if self._p is not None:
            st["prev_step"] = self._xp.array(self._p)
        return {"state": {0: st}, "param_groups": [g]}

    @serialized
    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Restore from :meth:`state_dict`; checks everything before changing anything, like
        ``Optimizer.load_state_dict`` (``strict=False`` ignores unknown keys and keeps this
        optimizer's value of a missing hyper-parameter)."""
        group, where, st = one_group(self, state_dict, _HYPER, ("num_grad_evals", "num_hvps", "prev_step"), strict)
        self._check(group, "state_dict['param_groups'][0]", self._dtype)
        evals, hvps = (count(st, k, where, strict) for k in ("num_grad_evals", "num_hvps"))
        p = st.get("prev_step")
        if p is not None:
            p = vector(p, self._params[0], self._n, f"{where}['prev_step']")
        # everything checked: now change the optimizer
        self.param_groups[0].update(group)
        self.num_grad_evals, self.num_hvps = evals, hvps
        self._p, self._cache = p, None
