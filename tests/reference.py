"""Independent NumPy references for the optimizers and clipping.

Written from the update formulas in the papers and in torch.optim's documentation
(not from optkern's C++ rules), one array at a time, in whatever dtype the arrays
have (float64 for the main comparisons, float32 for drift bounds). PyTorch's code
negates the gradient for ``maximize`` before adding weight decay; the references
follow that (its documentation's pseudo-code differs in the sign of the decay).

Each ``<name>_step(p, g, state, t, **hp)`` updates ``p`` and the dict ``state``
(PyTorch's state names) in place for step ``t`` (counting from 1).
"""

from __future__ import annotations

import numpy as np


def _grad(p, g, weight_decay, maximize):
    g = -g if maximize else g
    return g + weight_decay * p if weight_decay else g.copy()


def sgd_step(
    p,
    g,
    state,
    t,
    *,
    lr=1e-3,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
    maximize=False,
    momentum_form="pytorch",
):
    g = _grad(p, g, weight_decay, maximize)
    if momentum == 0:
        p -= lr * g
        return
    if momentum_form == "textbook":
        # Goodfellow et al. Alg. 8.2 (v <- mu v - lr g; p <- p + v) and Alg. 8.3 rewritten at the
        # look-ahead point: p <- p + mu v - lr g.
        if "momentum_buffer" not in state:
            v = -lr * g
        else:
            v = momentum * state["momentum_buffer"] - lr * (1 - dampening) * g
        state["momentum_buffer"] = v
        p += (momentum * v - lr * g) if nesterov else v
        return
    if "momentum_buffer" not in state:
        b = g.copy()
    else:
        b = momentum * state["momentum_buffer"] + (1 - dampening) * g
    state["momentum_buffer"] = b
    d = g + momentum * b if nesterov else b
    p -= lr * d


def adagrad_step(
    p, g, state, t, *, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, maximize=False
):
    g = _grad(p, g, weight_decay, maximize)
    s = state.setdefault("sum", np.full_like(p, initial_accumulator_value))
    clr = lr / (1 + (t - 1) * lr_decay)
    s += g * g
    p -= clr * g / (np.sqrt(s) + eps)


def rmsprop_step(
    p,
    g,
    state,
    t,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
    maximize=False,
    nesterov=False,
):
    g = _grad(p, g, weight_decay, maximize)
    v = state.setdefault("square_avg", np.zeros_like(p))
    v[...] = alpha * v + (1 - alpha) * g * g
    if centered:
        a = state.setdefault("grad_avg", np.zeros_like(p))
        a[...] = alpha * a + (1 - alpha) * g
        # optkern clamps v - a^2 at zero (rounding can take it below; torch gives NaN there)
        avg = np.sqrt(np.maximum(v - a * a, 0.0)) + eps
    else:
        avg = np.sqrt(v) + eps
    if momentum > 0:
        b = state.setdefault("momentum_buffer", np.zeros_like(p))
        b[...] = momentum * b + g / avg
        # Nesterov (Goodfellow et al. Alg. 8.6) at the look-ahead point the params hold.
        p -= lr * (g / avg + momentum * b) if nesterov else lr * b
    else:
        p -= lr * g / avg


def adadelta_step(p, g, state, t, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    g = _grad(p, g, weight_decay, maximize)
    v = state.setdefault("square_avg", np.zeros_like(p))
    u = state.setdefault("acc_delta", np.zeros_like(p))
    v[...] = rho * v + (1 - rho) * g * g
    d = np.sqrt(u + eps) / np.sqrt(v + eps) * g
    u[...] = rho * u + (1 - rho) * d * d
    p -= lr * d


def adam_step(
    p,
    g,
    state,
    t,
    *,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    maximize=False,
    decoupled_weight_decay=False,
):
    b1, b2 = betas
    if decoupled_weight_decay:
        p *= 1 - lr * weight_decay
        g = _grad(p, g, 0.0, maximize)
    else:
        g = _grad(p, g, weight_decay, maximize)
    m = state.setdefault("exp_avg", np.zeros_like(p))
    v = state.setdefault("exp_avg_sq", np.zeros_like(p))
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    if amsgrad:
        vmax = state.setdefault("max_exp_avg_sq", np.zeros_like(p))
        np.maximum(vmax, v, out=vmax)
        v = vmax
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw_step(p, g, state, t, *, weight_decay=1e-2, **hp):
    adam_step(p, g, state, t, weight_decay=weight_decay, decoupled_weight_decay=True, **hp)


def nadam_step(
    p,
    g,
    state,
    t,
    *,
    lr=2e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    momentum_decay=4e-3,
    decoupled_weight_decay=False,
    maximize=False,
):
    b1, b2 = betas
    if decoupled_weight_decay:
        p *= 1 - lr * weight_decay
        g = _grad(p, g, 0.0, maximize)
    else:
        g = _grad(p, g, weight_decay, maximize)

    def mu(i):
        return b1 * (1 - 0.5 * 0.96 ** (i * momentum_decay))

    prod_t = float(np.prod([mu(i) for i in range(1, t + 1)]))
    prod_next = prod_t * mu(t + 1)
    state["mu_product"] = prod_t
    m = state.setdefault("exp_avg", np.zeros_like(p))
    v = state.setdefault("exp_avg_sq", np.zeros_like(p))
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    m_hat = mu(t + 1) * m / (1 - prod_next) + (1 - mu(t)) * g / (1 - prod_t)
    v_hat = v / (1 - b2**t)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)


STEPS = {
    "SGD": sgd_step,
    "Adagrad": adagrad_step,
    "RMSprop": rmsprop_step,
    "Adadelta": adadelta_step,
    "Adam": adam_step,
    "AdamW": adamw_step,
    "NAdam": nadam_step,
}


def run(name, params, grad_seq, hp):
    """Apply ``len(grad_seq)`` steps of optimizer ``name`` to copies of ``params``.

    Returns (params, states) after the last step; ``grad_seq[k]`` is the list of gradients
    of step k + 1.
    """
    params = [p.copy() for p in params]
    states = [{} for _ in params]
    for t, grads in enumerate(grad_seq, start=1):
        for p, g, s in zip(params, grads, states):
            STEPS[name](p, g.astype(p.dtype), s, t, **hp)
    return params, states


def adagrad_norm_run(params, grad_seq, *, lr=1e-2, b0=1e-2, weight_decay=0.0, maximize=False):
    """AdaGrad-Norm (Ward, Wu & Bottou 2019): b_{t+1}^2 = b_t^2 + ||G_t||^2 over all arrays,
    x_{t+1} = x_t - lr / b_{t+1} G_t. Returns (params, b^2)."""
    params = [p.astype(np.float64) for p in params]
    b_sq = b0 * b0
    for grads in grad_seq:
        geff = [(-g if maximize else g).astype(np.float64) + weight_decay * p for p, g in zip(params, grads)]
        b_sq += sum(float(np.sum(e * e)) for e in geff)
        for p, e in zip(params, geff):
            p -= lr / np.sqrt(b_sq) * e
    return params, b_sq


def total_norm(grads, norm_type):
    """(sum_i sum_j |g_ij|^p)^(1/p) in float64, or max |g| for p = inf."""
    flat = np.concatenate([np.asarray(g, np.float64).ravel() for g in grads]) if grads else np.zeros(0)
    if np.isinf(norm_type):
        return float(np.max(np.abs(flat))) if flat.size else 0.0
    return float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))


def clip_by_norm(grads, max_norm, norm_type):
    """Gradients scaled by min(1, max_norm / (norm + 1e-6)), and the norm."""
    n = total_norm(grads, norm_type)
    c = min(1.0, max_norm / (n + 1e-6))
    return [np.asarray(g, np.float64) * c for g in grads], n
