"""
optkern CUDA kernels
"""

from __future__ import annotations

import collections.abc
import typing

__all__: list[str] = [
    "activation_fwd",
    "adadelta_",
    "adadelta_capturable",
    "adagrad_",
    "adagrad_capturable",
    "adagrad_norm_",
    "adam_",
    "adam_capturable",
    "all_finite",
    "channel_norm_backward",
    "channel_norm_forward",
    "channel_stats",
    "clamp_",
    "clip_scale_",
    "device_count",
    "dropout_",
    "grad_norm",
    "lanczos_orthogonalize_",
    "nadam_",
    "nadam_capturable",
    "norm_rop_bwd",
    "norm_rop_fwd",
    "penalty_grad_",
    "penalty_value",
    "philox4x32_10",
    "random_rademacher_",
    "random_uniform_",
    "rmsprop_",
    "rmsprop_capturable",
    "row_norm_backward",
    "row_norm_forward",
    "runtime_version",
    "sgd_",
    "sgd_capturable",
    "softmax_xent_fwd",
    "softmax_xent_rop",
    "weight_norm_backward",
    "weight_norm_forward",
]

def activation_fwd(kind: str, z: typing.Any, a: typing.Any, d1: typing.Any = None, d2: typing.Any = None) -> None:
    """
    a = f(z), d1 = f'(z), d2 = f''(z) in one pass (d1, d2 optional).
    """

def adadelta_(
    params: typing.Any,
    grads: typing.Any,
    square_avgs: typing.Any,
    acc_deltas: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    rho: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
) -> None:
    """
    In-place Adadelta step (rules::Adadelta): v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g, u <- rho u + (1 - rho) d^2, p <- p - lr d.
    """

def adadelta_capturable(
    params: typing.Any,
    grads: typing.Any,
    square_avgs: typing.Any,
    acc_deltas: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    rho: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
    hp: typing.Any,
) -> None:
    """
    In-place Adadelta step (rules::Adadelta): v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g, u <- rho u + (1 - rho) d^2, p <- p - lr d. hp = [lr]. Capturable variant: the same arguments plus `hp`, a float64 device array from which the kernel reads the step-dependent scalars (layout in cuda/optim.cu); the host values of those arguments are ignored.
    """

def adagrad_(
    params: typing.Any,
    grads: typing.Any,
    sums: typing.Any,
    clr: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
) -> None:
    """
    In-place Adagrad step (rules::Adagrad): s <- s + g^2, p <- p - clr g / (sqrt(s) + eps), g including weight_decay p and the maximize sign; clr = lr / (1 + (t - 1) lr_decay) from the caller.
    """

def adagrad_capturable(
    params: typing.Any,
    grads: typing.Any,
    sums: typing.Any,
    clr: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
    hp: typing.Any,
) -> None:
    """
    In-place Adagrad step (rules::Adagrad): s <- s + g^2, p <- p - clr g / (sqrt(s) + eps), g including weight_decay p and the maximize sign; clr = lr / (1 + (t - 1) lr_decay) from the caller. hp = [clr]. Capturable variant: the same arguments plus `hp`, a float64 device array from which the kernel reads the step-dependent scalars (layout in cuda/optim.cu); the host values of those arguments are ignored.
    """

def adagrad_norm_(
    params: typing.Any,
    grads: typing.Any,
    b_sq: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
) -> None:
    """
    AdaGrad-Norm step: b_sq[0] += ||g_eff||^2 over all arrays (deterministic float64 reduction), then p -= lr / sqrt(b_sq[0]) * g_eff with g_eff = (-g if maximize else g) + weight_decay p; b_sq is a 1-element float64 CuPy array read and written on the device.
    """

def adam_(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    max_exp_avg_sqs: typing.Any,
    step_size: typing.SupportsFloat | typing.SupportsIndex,
    beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    decay: typing.SupportsFloat | typing.SupportsIndex,
    bc2_sqrt: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
) -> None:
    """
    In-place Adam/AdamW/AMSGrad step (rules::Adam): p <- decay p; g <- g + l2 p; m <- lerp(m, g, 1 - beta1); v <- beta2 v + (1 - beta2) g^2 (vmax <- max(vmax, v) with max_exp_avg_sqs); p <- p - step_size m / (sqrt(v or vmax) / bc2_sqrt + eps).
    """

def adam_capturable(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    max_exp_avg_sqs: typing.Any,
    step_size: typing.SupportsFloat | typing.SupportsIndex,
    beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    decay: typing.SupportsFloat | typing.SupportsIndex,
    bc2_sqrt: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
    hp: typing.Any,
) -> None:
    """
    In-place Adam/AdamW/AMSGrad step (rules::Adam): p <- decay p; g <- g + l2 p; m <- lerp(m, g, 1 - beta1); v <- beta2 v + (1 - beta2) g^2 (vmax <- max(vmax, v) with max_exp_avg_sqs); p <- p - step_size m / (sqrt(v or vmax) / bc2_sqrt + eps). hp = [step_size, bc2_sqrt, decay]. Capturable variant: the same arguments plus `hp`, a float64 device array from which the kernel reads the step-dependent scalars (layout in cuda/optim.cu); the host values of those arguments are ignored.
    """

def all_finite(arrays: typing.Any, out: typing.Any) -> None:
    """
    out[0] = 1.0 if every element of every array is finite, else 0.0 (1-element float64 CuPy array).
    """

def channel_norm_backward(
    dy: typing.Any,
    x: typing.Any,
    mean: typing.Any,
    rstd: typing.Any,
    weight: typing.Any,
    dx: typing.Any,
    dweight: typing.Any,
    dbias: typing.Any,
    N: typing.SupportsInt | typing.SupportsIndex,
    C: typing.SupportsInt | typing.SupportsIndex,
    S: typing.SupportsInt | typing.SupportsIndex,
    training: bool,
) -> None:
    """
    Batch-norm backward: dx (batch statistics when training, fixed ones otherwise), dweight, dbias.
    """

def channel_norm_forward(
    x: typing.Any,
    mean: typing.Any,
    rstd: typing.Any,
    weight: typing.Any,
    bias: typing.Any,
    out: typing.Any,
    N: typing.SupportsInt | typing.SupportsIndex,
    C: typing.SupportsInt | typing.SupportsIndex,
    S: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    out = weight[c] (x - mean[c]) rstd[c] + bias[c] for x viewed as (N, C, S).
    """

def channel_stats(
    x: typing.Any,
    mean: typing.Any,
    var: typing.Any,
    N: typing.SupportsInt | typing.SupportsIndex,
    C: typing.SupportsInt | typing.SupportsIndex,
    S: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    Per-channel mean and biased variance of x viewed as (N, C, S).
    """

def clamp_(arrays: typing.Any, clip_value: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    g = clamp(g, -clip_value, clip_value) in place for every array.
    """

def clip_scale_(
    arrays: typing.Any, max_norm: typing.SupportsFloat | typing.SupportsIndex, total_norm_buf: typing.Any
) -> None:
    """
    g *= min(1, max_norm / (total_norm + 1e-6)) for every array, total_norm read by the kernel from total_norm_buf[0] (float64 device array), so clipping needs no host synchronization.
    """

def device_count() -> int:
    """
    Number of visible CUDA devices (0 without a driver).
    """

def dropout_(
    x: typing.Any,
    out: typing.Any,
    p: typing.SupportsFloat | typing.SupportsIndex,
    seed: typing.SupportsInt | typing.SupportsIndex,
    offset: typing.SupportsInt | typing.SupportsIndex,
    mask: typing.Any = None,
) -> None:
    """
    out = x * keep / (1 - p) with keep = philox uniform(offset + i) >= float32(p); out may be x.
    """

def grad_norm(arrays: typing.Any, norm_type: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> None:
    """
    Total norm (sum_i sum_j |x_ij|^p)^(1/p) over a list of CuPy arrays, or max |x| for norm_type=inf, accumulated in float64 with a deterministic two-stage reduction (same bits every run), written to out[0] (1-element float64 CuPy array). Returns None: no host synchronization.
    """

def lanczos_orthogonalize_(
    Q: typing.Any,
    k: typing.SupportsInt | typing.SupportsIndex,
    w: typing.Any,
    coeffs: typing.Any,
    passes: typing.SupportsInt | typing.SupportsIndex = 2,
) -> float:
    """
    Orthogonalize w against rows Q[:k] twice (CGS2; once with passes=1, enough for a w already orthogonal to Q[:k] to about sqrt(eps)), normalize it in place and return its norm before normalization (w is left unscaled when the norm is 0). coeffs[:k] (float64) receives the total projection coefficients Q[:k] w of the passes. Deterministic (any thread count; the same bits run to run on a GPU).
    """

def nadam_(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    c_grad: typing.SupportsFloat | typing.SupportsIndex,
    c_avg: typing.SupportsFloat | typing.SupportsIndex,
    beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    decay: typing.SupportsFloat | typing.SupportsIndex,
    bc2: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
) -> None:
    """
    In-place NAdam step (rules::NAdam): p <- decay p; g <- g + l2 p; m, v as Adam; denom = sqrt(v / bc2) + eps; p <- p + c_grad g / denom + c_avg m / denom.
    """

def nadam_capturable(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    c_grad: typing.SupportsFloat | typing.SupportsIndex,
    c_avg: typing.SupportsFloat | typing.SupportsIndex,
    beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    decay: typing.SupportsFloat | typing.SupportsIndex,
    bc2: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
    hp: typing.Any,
) -> None:
    """
    In-place NAdam step (rules::NAdam): p <- decay p; g <- g + l2 p; m, v as Adam; denom = sqrt(v / bc2) + eps; p <- p + c_grad g / denom + c_avg m / denom. hp = [c_grad, c_avg, bc2, decay]. Capturable variant: the same arguments plus `hp`, a float64 device array from which the kernel reads the step-dependent scalars (layout in cuda/optim.cu); the host values of those arguments are ignored.
    """

def norm_rop_bwd(
    h: typing.Any,
    mean: typing.Any,
    rstd: typing.Any,
    dy: typing.Any,
    rdy: typing.Any,
    weight: typing.Any,
    vweight: typing.Any,
    rxhat: typing.Any,
    m_xrh: typing.Any,
    dh: typing.Any,
    rdh: typing.Any,
    rdweight: typing.Any,
    rdbias: typing.Any,
    axis: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    Backward and its R-operator: dh, R{dh}, R{dweight}, R{dbias}.
    """

def norm_rop_fwd(
    h: typing.Any,
    mean: typing.Any,
    rstd: typing.Any,
    rh: typing.Any,
    weight: typing.Any,
    vweight: typing.Any,
    vbias: typing.Any,
    ry: typing.Any,
    rxhat: typing.Any,
    m_xrh: typing.Any,
    axis: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    R-forward of batch norm (axis 0) / layer norm (axis 1) on (N, D): R{y}, R{xhat}, mean(xhat R{h}).
    """

def penalty_grad_(
    params: typing.Any,
    grads: typing.Any,
    l1: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    out: typing.Any = None,
) -> typing.Any:
    """
    grads[i] += l2*params[i] + l1*sign(params[i]) in place; with out (1-element float64) also writes l1*sum|p| + l2/2*sum p^2 to out[0]. Returns None (no host sync).
    """

def penalty_value(
    params: typing.Any,
    l1: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    out: typing.Any,
) -> typing.Any:
    """
    l1*sum|p| + l2/2*sum p^2 over all arrays into out[0] (deterministic). Returns None (no host sync).
    """

def philox4x32_10(
    counter: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(4)"],
    key: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"],
) -> typing.Annotated[list[int], "FixedSize(4)"]:
    """
    Raw Philox4x32-10 of a 128-bit counter and 64-bit key (for known-answer tests).
    """

def random_rademacher_(
    out: typing.Any, seed: typing.SupportsInt | typing.SupportsIndex, offset: typing.SupportsInt | typing.SupportsIndex
) -> None:
    """
    Fill float32/float64 `out` with Philox4x32-10 Rademacher signs (+1/-1).
    """

def random_uniform_(
    out: typing.Any, seed: typing.SupportsInt | typing.SupportsIndex, offset: typing.SupportsInt | typing.SupportsIndex
) -> None:
    """
    Fill float32/float64 `out` with Philox4x32-10 uniforms in [0, 1) (see philox.hpp).
    """

def rmsprop_(
    params: typing.Any,
    grads: typing.Any,
    square_avgs: typing.Any,
    grad_avgs: typing.Any,
    momentum_buffers: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    alpha: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    momentum: typing.SupportsFloat | typing.SupportsIndex,
    nesterov: bool,
    maximize: bool,
) -> None:
    """
    In-place RMSprop step (rules::RMSprop): v <- alpha v + (1 - alpha) g^2; with grad_avgs (centered) the denominator is sqrt(v - mean(g)^2) + eps; with momentum_buffers b <- mu b + g / avg, p <- p - lr b (nesterov: p <- p - lr (g / avg + mu b)); else p <- p - lr g / avg.
    """

def rmsprop_capturable(
    params: typing.Any,
    grads: typing.Any,
    square_avgs: typing.Any,
    grad_avgs: typing.Any,
    momentum_buffers: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    alpha: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    momentum: typing.SupportsFloat | typing.SupportsIndex,
    nesterov: bool,
    maximize: bool,
    hp: typing.Any,
) -> None:
    """
    In-place RMSprop step (rules::RMSprop): v <- alpha v + (1 - alpha) g^2; with grad_avgs (centered) the denominator is sqrt(v - mean(g)^2) + eps; with momentum_buffers b <- mu b + g / avg, p <- p - lr b (nesterov: p <- p - lr (g / avg + mu b)); else p <- p - lr g / avg. hp = [lr]. Capturable variant: the same arguments plus `hp`, a float64 device array from which the kernel reads the step-dependent scalars (layout in cuda/optim.cu); the host values of those arguments are ignored.
    """

def row_norm_backward(
    dy: typing.Any,
    x: typing.Any,
    weight: typing.Any,
    mean: typing.Any,
    rstd: typing.Any,
    dx: typing.Any,
    dweight: typing.Any,
    dbias: typing.Any,
    rows: typing.SupportsInt | typing.SupportsIndex,
    groups: typing.SupportsInt | typing.SupportsIndex,
    group_channels: typing.SupportsInt | typing.SupportsIndex,
    spatial: typing.SupportsInt | typing.SupportsIndex,
    rms: bool,
) -> None:
    """
    Backward of row_norm_forward: dx, and dweight / dbias when given.
    """

def row_norm_forward(
    x: typing.Any,
    weight: typing.Any,
    bias: typing.Any,
    out: typing.Any,
    mean: typing.Any,
    rstd: typing.Any,
    rows: typing.SupportsInt | typing.SupportsIndex,
    groups: typing.SupportsInt | typing.SupportsIndex,
    group_channels: typing.SupportsInt | typing.SupportsIndex,
    spatial: typing.SupportsInt | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    rms: bool,
) -> None:
    """
    Layer / group / instance / RMS norm forward over rows of x (see cpp/norm_rows.cpp for the layout).
    """

def runtime_version() -> int: ...
def sgd_(
    params: typing.Any,
    grads: typing.Any,
    momentum_buffers: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    momentum: typing.SupportsFloat | typing.SupportsIndex,
    dampening: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    nesterov: bool,
    maximize: bool,
    first: bool,
    textbook: bool,
) -> None:
    """
    In-place SGD step over lists of CuPy arrays (rules::Sgd): d = g (+ wd p, negated to maximize); with momentum_buffers b <- mu b + (1 - dampening) d (b <- d when first), d = d + mu b (nesterov) or b; p <- p - lr d. textbook=True uses v <- mu v - lr d, p <- p + v. Enqueued on CuPy's current stream.
    """

def sgd_capturable(
    params: typing.Any,
    grads: typing.Any,
    momentum_buffers: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    momentum: typing.SupportsFloat | typing.SupportsIndex,
    dampening: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    nesterov: bool,
    maximize: bool,
    first: bool,
    textbook: bool,
    hp: typing.Any,
) -> None:
    """
    In-place SGD step over lists of CuPy arrays (rules::Sgd): d = g (+ wd p, negated to maximize); with momentum_buffers b <- mu b + (1 - dampening) d (b <- d when first), d = d + mu b (nesterov) or b; p <- p - lr d. textbook=True uses v <- mu v - lr d, p <- p + v. Enqueued on CuPy's current stream. hp = [lr, first (0.0/1.0)]. Capturable variant: the same arguments plus `hp`, a float64 device array from which the kernel reads the step-dependent scalars (layout in cuda/optim.cu); the host values of those arguments are ignored.
    """

def softmax_xent_fwd(
    logits: typing.Any,
    labels: typing.Any,
    loss: typing.Any,
    logp: typing.Any = None,
    dlogits: typing.Any = None,
    label_smoothing: typing.SupportsFloat | typing.SupportsIndex = 0.0,
    confidence_penalty: typing.SupportsFloat | typing.SupportsIndex = 0.0,
    scale: typing.SupportsFloat | typing.SupportsIndex = 1.0,
) -> None:
    """
    Per-row softmax cross-entropy loss; optionally log-probs and scale * dloss/dlogits.
    """

def softmax_xent_rop(
    logp: typing.Any,
    r: typing.Any,
    out: typing.Any,
    confidence_penalty: typing.SupportsFloat | typing.SupportsIndex = 0.0,
    scale: typing.SupportsFloat | typing.SupportsIndex = 1.0,
) -> None:
    """
    out = scale * (Hessian of the row loss w.r.t. logits) @ r, given saved log-probs.
    """

def weight_norm_backward(
    dw: typing.Any,
    v: typing.Any,
    g: typing.Any,
    norm: typing.Any,
    dv: typing.Any,
    dg: typing.Any,
    rows: typing.SupportsInt | typing.SupportsIndex,
    M: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    Gradients of weight_norm_forward with respect to v and g.
    """

def weight_norm_forward(
    v: typing.Any,
    g: typing.Any,
    out: typing.Any,
    norm: typing.Any,
    rows: typing.SupportsInt | typing.SupportsIndex,
    M: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    out[r] = g[r] v[r] / ||v[r]|| for v viewed as (rows, M); norm[r] = ||v[r]||.
    """
