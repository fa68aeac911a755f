"""
optkern C++/OpenMP kernels
"""

from __future__ import annotations

import collections.abc
import typing

__all__: list[str] = [
    "activation_fwd",
    "adadelta_",
    "adagrad_",
    "adagrad_norm_",
    "adam_",
    "all_finite",
    "build_info",
    "channel_norm_backward",
    "channel_norm_forward",
    "channel_stats",
    "chunk_threads",
    "clamp_",
    "clip_scale_",
    "dropout_",
    "get_num_threads",
    "grad_norm",
    "lanczos_orthogonalize_",
    "nadam_",
    "norm_rop_bwd",
    "norm_rop_fwd",
    "penalty_grad_",
    "penalty_value",
    "philox4x32_10",
    "precheck_step_",
    "probe_rmw_",
    "random_rademacher_",
    "random_uniform_",
    "rmsprop_",
    "row_norm_backward",
    "row_norm_forward",
    "set_num_threads",
    "sgd_",
    "softmax_xent_fwd",
    "softmax_xent_rop",
    "weight_norm_backward",
    "weight_norm_forward",
]

def _set_stream_bytes(bytes: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Testing hook: outputs of at least `bytes` use non-temporal stores; returns the old value.
    """

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
    Adadelta step in place.
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
    Adagrad step in place with the decayed rate clr = lr / (1 + (t - 1) lr_decay).
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
    AdaGrad-Norm step in place: b_sq[0] += ||g_eff||^2 over all arrays, p -= lr / sqrt(b_sq[0]) g_eff.
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
    Adam/AdamW step in place: step_size = lr / bc1, l2 = coupled decay, decay = 1 - lr wd (decoupled); max_exp_avg_sqs given = AMSGrad.
    """

def all_finite(arrays: typing.Any, out: typing.Any) -> None:
    """
    out[0] = 1.0 if every element of every array is finite, else 0.0.
    """

def build_info() -> dict:
    """
    How this module was built and what it runs on.
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
    arrays = clip(arrays, -clip_value, clip_value) in place.
    """

def clip_scale_(
    arrays: typing.Any, max_norm: typing.SupportsFloat | typing.SupportsIndex, total_norm_buf: typing.Any
) -> None:
    """
    arrays *= min(1, max_norm / (total_norm_buf[0] + 1e-6)) in place.
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

def chunk_threads(sizes: collections.abc.Sequence[typing.SupportsInt], work: typing.SupportsInt) -> list[int]:
    """
    The thread (0-based) that ran each chunk of arrays of these sizes in a parallel pass costing `work` (the split of every multi-array kernel; for tests).
    """

def get_num_threads() -> int:
    """
    OpenMP threads the next parallel region will use.
    """

def grad_norm(arrays: typing.Any, norm_type: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> float:
    """
    Total norm of all arrays (norm_type p >= 1 or inf) in float64, bitwise independent of the thread count; written to out[0] and returned.
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
    NAdam step in place: p += c_grad g / d + c_avg m / d with d = sqrt(v / bc2) + eps.
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
    grads[i] += l2*params[i] + l1*sign(params[i]) in place; with out (1-element float64) also writes l1*sum|p| + l2/2*sum p^2 to out[0] and returns it.
    """

def penalty_value(
    params: typing.Any,
    l1: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    out: typing.Any = None,
) -> float:
    """
    l1*sum|p| + l2/2*sum p^2 over all arrays (deterministic float64 sum); also written to out[0].
    """

def philox4x32_10(
    counter: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(4)"],
    key: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"],
) -> typing.Annotated[list[int], "FixedSize(4)"]:
    """
    Raw Philox4x32-10 of a 128-bit counter and 64-bit key (for known-answer tests).
    """

def precheck_step_(runs: list) -> None:
    """
    Check a multi-call optimizer step before it writes: runs of (dtype, written arrays, their names, grads, their params, grad names).
    """

def probe_rmw_(written: typing.Any, read: typing.Any, c: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
    """
    Bandwidth probe: written[k] += c * read[0] for every element (all arrays one flat size), moving the bytes of an in-place optimizer step with len(written) - 1 state arrays.
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
    RMSprop step in place; grad_avgs given = centered, momentum_buffers given = momentum (nesterov: Goodfellow Alg. 8.6 in look-ahead form).
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

def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    OpenMP threads for the following calls from this Python thread (omp_set_num_threads).
    """

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
    SGD step in place (torch.optim.SGD semantics; textbook=True: v <- mu v - lr g, p <- p + v). momentum_buffers=None runs plain SGD; first=True initialises the buffers from this step's gradient.
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
