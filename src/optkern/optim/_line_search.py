"""Strong-Wolfe line search of torch.optim.LBFGS (ported from minFunc / torch's lswolfe.lua).

The same decisions in the same order as ``torch.optim.lbfgs._strong_wolfe``, on flat NumPy / CuPy
vectors, so that optkern's L-BFGS takes torch's steps. ``obj_func(t)`` returns ``(loss, flat_grad,
gtd)`` at ``x + t d`` (``gtd = flat_grad . d``); the gradients it returns must be fresh arrays (the
bracket keeps them).

The scalars are typed as torch's are: the losses are Python floats (torch takes ``float(loss)``),
while ``gtd``, ``gtd_new`` and ``d_norm`` are 0-d tensors of the params' dtype there, so every
expression touching them (the Armijo bound ``f + c1 t gtd``, the curvature test, the cubic's ``d1``,
``d2`` and minimizer, the bracket width ``|b1 - b0| d_norm``) rounds to that dtype, Python operands
cast to it first. The caller passes them as ``numpy.float64`` for float64 params and as
``numpy.float32`` for float32 ones: NumPy 2's scalar promotion (NEP 50: a Python float operand is
cast to the NumPy scalar's dtype) then rounds each operation, and each comparison, as torch's
float32 tensors do, and a ``t`` computed from them stays float32 as torch's does (float64 tensors
and numpy.float64 scalars round alike; like tensors, and unlike Python floats, they divide by
zero to inf / nan instead of raising: the cubic's denominator is 0 along a direction on which the
loss is linear, tests/test_second_hunt_lbfgs.py). At the float32 precision
floor this decides steps: a float64 Armijo test rejects the equal losses that torch's float32 test
accepts (tests/test_lbfgs_float32.py).
"""

from __future__ import annotations

import math

import numpy as np

# float32 scalars overflow or divide by zero as torch's tensors do, to inf / nan without a warning
_IEEE = {"over": "ignore", "divide": "ignore", "invalid": "ignore"}


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """Minimizer of the cubic through (x1, f1, g1), (x2, f2, g2), clamped to ``bounds`` (a
    ``numpy.float32`` when the slopes are: torch's is a float32 tensor then)."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    num, den = 3 * (f1 - f2), x1 - x2
    if isinstance(den, np.floating) and not isinstance(num, np.floating):
        # torch: a Python float (the losses are floats) over a 0-d tensor (either step one: a t
        # computed from gtd) is Tensor.__rtruediv__, i.e. ``den.reciprocal() * num``: 1 / den
        # rounded to the dtype, then the product rounded (NEP 50: num cast to the dtype first), not
        # one division. Along a nearly linear direction d1 below cancels, and this last-place
        # difference moved the next trial step (tests/test_lbfgs_hunt27_torch_rounding.py).
        quot = (1 / den) * num
    else:
        quot = num / den  # floats: Python's division; tensors both: torch's true division
    d1 = g1 + g2 - quot
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        # torch's d2_square.sqrt(): in the scalars' dtype (math.sqrt would return a Python float)
        d2 = np.sqrt(d2_square) if isinstance(d2_square, np.floating) else math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(obj_func, t, d_norm, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Returns ``(f_new, g_new, t, evaluations)``; ``d_norm = max |d|``. ``gtd``, ``d_norm`` and the
    ``gtd`` that ``obj_func`` returns: scalars of the params' dtype (see the module's docstring)."""
    outer = np.geterr()

    def evaluate(tt):
        with np.errstate(**outer):  # the closure runs under the caller's NumPy error handling
            return obj_func(tt)

    with np.errstate(**_IEEE):
        return _strong_wolfe(evaluate, t, d_norm, f, g, gtd, c1, c2, tolerance_change, max_ls)


def _strong_wolfe(obj_func, t, d_norm, f, g, gtd, c1, c2, tolerance_change, max_ls):
    f_new, g_new, gtd_new = obj_func(t)
    ls_func_evals = 1
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new, gtd_new = obj_func(t)
        ls_func_evals += 1
        ls_iter += 1

    if ls_iter >= max_ls:  # torch: ==, and it fails on a negative budget
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
        bracket_gtd = [gtd, gtd_new]  # torch leaves it unset here; only read if the zoom runs, which it cannot

    # zoom: refine the bracket until a point satisfies the strong Wolfe conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # too close to an end of the bracket: move 10% of its length inside
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new, gtd_new = obj_func(t)
        ls_func_evals += 1
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals
