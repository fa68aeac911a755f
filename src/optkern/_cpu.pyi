"""
optkern C++/OpenMP kernels
"""

from __future__ import annotations

import collections.abc
import typing

import numpy
import numpy.typing

__all__: list[str] = [
    "FLOAT32_LR_OPERANDS",
    "FLOAT32_LR_WHOSE",
    "HeldCapsules",
    "activation_fwd",
    "adadelta_",
    "adadelta_capturable",
    "adagrad_",
    "adagrad_capturable",
    "adagrad_norm_",
    "adam_",
    "adam_capturable",
    "all_finite",
    "amp_check_",
    "amp_unscale_",
    "amp_update_scale_",
    "build_info",
    "cg_curvature",
    "cg_direction_",
    "cg_direction_sum_",
    "cg_iteration_",
    "cg_iteration_known_",
    "cg_start_",
    "cg_thread_choice_trace",
    "cg_thread_stats_",
    "cg_update_",
    "cg_update_slice_",
    "channel_norm_backward",
    "channel_norm_forward",
    "channel_stats",
    "chunk_threads",
    "clamp_",
    "clip_scale_",
    "combine_rows_",
    "data_layouts",
    "dlpack_exchange_usable",
    "dropout_",
    "first_readonly_",
    "first_relaid_",
    "get_num_threads",
    "grad_norm",
    "grad_norm_chunk",
    "grad_norm_finish",
    "grad_norm_parts",
    "lanczos_orthogonalize_",
    "lanczos_orthogonalize_rows_",
    "lbfgs_direction_",
    "lbfgs_move_",
    "lbfgs_push_",
    "lbfgs_stats",
    "lbfgs_two_loop",
    "lowp_decode_map",
    "lowp_dequantize_blockwise",
    "lowp_from_half",
    "lowp_quantize_block_fp",
    "lowp_quantize_blockwise",
    "lowp_quantize_blockwise_reference",
    "lowp_quantize_fixed_point",
    "lowp_step",
    "lowp_to_half",
    "nadam_",
    "nadam_capturable",
    "norm_rop_bwd",
    "norm_rop_fwd",
    "orthonormalize_rows_",
    "penalty_grad_",
    "penalty_value",
    "philox4x32_10",
    "pool_install",
    "pool_release",
    "pool_restore",
    "pool_set_limit",
    "pool_stats",
    "precheck_step_",
    "probe_read",
    "probe_rmw_",
    "random_rademacher_",
    "random_uniform_",
    "rmsprop_",
    "rmsprop_capturable",
    "row_norm_backward",
    "row_norm_forward",
    "running_stats_",
    "sam_perturb_",
    "sam_restore_",
    "serial_below",
    "set_num_threads",
    "sgd_",
    "sgd_capturable",
    "softmax_xent_fwd",
    "softmax_xent_rop",
    "spans_clear",
    "swa_lerp_",
    "weight_norm_backward",
    "weight_norm_forward",
]

class HeldCapsules(list):
    """
    A list of DLPack capsules of host tensors that ``tensors`` (set before the call) holds: a native call that only reads them empties the list once it has read and checked every one (the capsules freed while in cache), and keeps the list, so the tensors, alive until it returns. ``shapes``, when set: a flat int64 array (each item's ndim, then its dims) that each capsule's shape must equal. ``api``, when set: a tensor type whose DLPack exchange API (``__dlpack_c_exchange_api__``) describes the items, then tensors of it instead of capsules (see ``dlpack_exchange_usable``).
    """

    tensors: list
    shapes: numpy.ndarray
    api: type

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
    Adadelta step in place: v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g, u <- rho u + (1 - rho) d^2, p <- p - lr d.
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
    counters: typing.Any,
    lr_buffer: typing.Any,
    found_inf: typing.Any = None,
) -> None:
    """
    Adadelta step in place: v <- rho v + (1 - rho) g^2, d = sqrt(u + eps) / sqrt(v + eps) g, u <- rho u + (1 - rho) d^2, p <- p - lr d. Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding [steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host `step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write nothing, counters included, unreported (no host reads the device's values).
    """

def adagrad_(
    params: typing.Any,
    grads: typing.Any,
    sums: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    lr_decay: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
    float32_lr: bool,
    step: typing.SupportsFloat | typing.SupportsIndex,
) -> None:
    """
    Adagrad step in place: s <- s + g^2, p <- p - clr g / (sqrt(s) + eps), clr = lr / (1 + (step - 1) lr_decay); float32_lr: clr in a float32 op, as torch computes it from a float32 tensor lr.
    """

def adagrad_capturable(
    params: typing.Any,
    grads: typing.Any,
    sums: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    lr_decay: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
    float32_lr: bool,
    step: typing.SupportsFloat | typing.SupportsIndex,
    counters: typing.Any,
    lr_buffer: typing.Any,
    found_inf: typing.Any = None,
) -> None:
    """
    Adagrad step in place: s <- s + g^2, p <- p - clr g / (sqrt(s) + eps), clr = lr / (1 + (step - 1) lr_decay); float32_lr: clr in a float32 op, as torch computes it from a float32 tensor lr. Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding [steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host `step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write nothing, counters included, unreported (no host reads the device's values).
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
    AdaGrad-Norm step in place: b_sq[0] += ||g_eff||^2 over all arrays (deterministic float64 sum), then p -= lr / sqrt(b_sq[0]) g_eff with g_eff = (-g if maximize else g) + weight_decay p; b_sq is a 1-element float64 array on the arrays' device, read and written there.
    """

def adam_(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    max_exp_avg_sqs: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    decoupled_weight_decay: bool,
    maximize: bool,
    float32_lr: bool,
    step: typing.SupportsFloat | typing.SupportsIndex,
) -> None:
    """
    Adam/AdamW/AMSGrad step in place (torch.optim.Adam): bias corrections 1 - beta^step; decoupled_weight_decay scales p by 1 - lr weight_decay first (AdamW), else L2; max_exp_avg_sqs given = AMSGrad. float32_lr: lr / bc1 and 1 - lr weight_decay in float32 ops, as torch computes them from a float32 tensor lr.
    """

def adam_capturable(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    max_exp_avg_sqs: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    decoupled_weight_decay: bool,
    maximize: bool,
    float32_lr: bool,
    step: typing.SupportsFloat | typing.SupportsIndex,
    counters: typing.Any,
    lr_buffer: typing.Any,
    found_inf: typing.Any = None,
) -> None:
    """
    Adam/AdamW/AMSGrad step in place (torch.optim.Adam): bias corrections 1 - beta^step; decoupled_weight_decay scales p by 1 - lr weight_decay first (AdamW), else L2; max_exp_avg_sqs given = AMSGrad. float32_lr: lr / bc1 and 1 - lr weight_decay in float32 ops, as torch computes them from a float32 tensor lr. Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding [steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host `step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write nothing, counters included, unreported (no host reads the device's values).
    """

def adam_given_(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    max_exp_avg_sqs: typing.Any,
    step_size: typing.SupportsFloat | typing.SupportsIndex,
    one_minus_beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    one_minus_beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    decay: typing.SupportsFloat | typing.SupportsIndex,
    bc2_sqrt: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
) -> None:
    """
    Adam/AdamW/AMSGrad step in place with its step scalars given (rules::AdamGiven): p <- p decay - step_size m / (sqrt(v or vmax) / bc2_sqrt + eps), m <- lerp(m, g, one_minus_beta1), v <- beta2 v + one_minus_beta2 g^2, g = (-g if maximize else g) + weight_decay p; each scalar rounded once to the arrays' dtype (torch.optim's for-loop with tensor hyper-parameters, computed by the caller).
    """

def adam_given_capturable(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    max_exp_avg_sqs: typing.Any,
    step_size: typing.SupportsFloat | typing.SupportsIndex,
    one_minus_beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    one_minus_beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    decay: typing.SupportsFloat | typing.SupportsIndex,
    bc2_sqrt: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
    counters: typing.Any,
    lr_buffer: typing.Any,
    found_inf: typing.Any = None,
) -> None:
    """
    Adam/AdamW/AMSGrad step in place with its step scalars given (rules::AdamGiven): p <- p decay - step_size m / (sqrt(v or vmax) / bc2_sqrt + eps), m <- lerp(m, g, one_minus_beta1), v <- beta2 v + one_minus_beta2 g^2, g = (-g if maximize else g) + weight_decay p; each scalar rounded once to the arrays' dtype (torch.optim's for-loop with tensor hyper-parameters, computed by the caller). Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding [steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host `step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write nothing, counters included, unreported (no host reads the device's values).
    """

def all_finite(arrays: typing.Any, out: typing.Any) -> None:
    """
    out[0] = 1.0 if every element of every array is finite, else 0.0 (out: a 1-element float64 array of the arrays' kind and device).
    """

def amp_check_(grads: typing.Any, grad_dtype: str, found_inf: typing.Any) -> None:
    """
    found_inf[0] = 1 when an element of the grads is inf or NaN (else left as it was); the grads are not written. grad_dtype: 'float32' (float32 arrays), 'bfloat16' or 'float16' (their bits as uint16 arrays, as lowp_step takes them): the check before a low-precision step that unscales its half grads itself (lowp_step's grad_scale). found_inf: a 1-element float32 array beside the grads.
    """

def amp_unscale_(grads: typing.Any, scale: typing.Any, found_inf: typing.Any) -> None:
    """
    g *= float(1 / double(scale[0])) over a list of float32 arrays, and found_inf[0] = 1 when an element was inf or NaN (else left as it was); scale, found_inf: 1-element float32 arrays beside the grads (no host synchronization on the GPU).
    """

def amp_update_scale_(
    scale: typing.Any,
    growth_tracker: typing.Any,
    found_inf: typing.Any,
    growth_factor: typing.SupportsFloat | typing.SupportsIndex,
    backoff_factor: typing.SupportsFloat | typing.SupportsIndex,
    growth_interval: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    torch's _amp_update_scale_ in place: after a non-finite step scale *= backoff_factor and the tracker restarts; after growth_interval clean steps scale *= growth_factor (unless that overflows). scale, found_inf: 1-element float32 arrays, growth_tracker: 1-element int64.
    """

def build_info() -> dict:
    """
    How this module was built and what it runs on.
    """

def cg_curvature(p: typing.Any, y: typing.Any, damping: typing.SupportsFloat | typing.SupportsIndex) -> float:
    """
    CG's curvature along p from y = A p: p.(y + damping p), summed in float64 (deterministic). With damping = 0 a plain dot product.
    """

def cg_direction_(p: typing.Any, z: typing.Any, beta: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    p = z + beta p, in place.
    """

def cg_direction_sum_(p: typing.Any, z: typing.Any, beta: typing.SupportsFloat | typing.SupportsIndex) -> float:
    """
    p = z + beta p; returns p.p of the new p (float64, cg_curvature(p, p, 0)'s bits).
    """

def cg_iteration_(
    x: typing.Any,
    r: typing.Any,
    p: typing.Any,
    y: typing.Any,
    rz: typing.SupportsFloat | typing.SupportsIndex,
    damping: typing.SupportsFloat | typing.SupportsIndex,
    tol: typing.SupportsFloat | typing.SupportsIndex,
    stop_on_negative_curvature: bool,
) -> tuple:
    """
    One unpreconditioned CG iteration after y = A p, as cg_curvature, cg_update_ and cg_direction_ in turn (the same bits): pAp = p.(y + damping p); when pAp is finite and positive (any sign with stop_on_negative_curvature=False) and alpha = rz / pAp finite, x += alpha p, r -= alpha (y + damping p), rr = r.r; when sqrt(rr) > tol and beta = rr / rz finite, p = r + beta p. Returns (pAp, rr), rr NaN when x and r were not written.
    """

def cg_iteration_known_(
    x: typing.Any,
    r: typing.Any,
    p: typing.Any,
    y: typing.Any,
    pAp: typing.SupportsFloat | typing.SupportsIndex,
    rz: typing.SupportsFloat | typing.SupportsIndex,
    damping: typing.SupportsFloat | typing.SupportsIndex,
    tol: typing.SupportsFloat | typing.SupportsIndex,
    stop_on_negative_curvature: bool,
) -> tuple:
    """
    cg_iteration_ given pAp = p.(y + damping p) (an operator that tells it): when pAp is finite and positive (any sign with stop_on_negative_curvature=False) and alpha = rz / pAp finite, x += alpha p, r -= alpha (y + damping p), rr = r.r; when sqrt(rr) > tol and beta = rr / rz finite, p = r + beta p and pp = p.p (0 with damping 0). Returns (rr, pp): rr NaN when x and r were not written, pp NaN when p was not.
    """

def cg_start_(
    b: typing.Any, r: typing.Any, p: typing.Any, x: typing.Any, scale: typing.SupportsFloat | typing.SupportsIndex
) -> float:
    """
    hessian.cg's start in one pass: r = b / scale (scale a power of two), and with p, x (a cold start; else both None) p = r, x = 0. Returns r.r (float64, deterministic: cg_curvature(r, r, 0)'s bits).
    """

def cg_thread_choice_trace(serial_ns: typing.Any, parallel_ns: typing.Any) -> list:
    """
    The thread choices (True: all threads) a fresh cg_iteration_ timer makes over calls that take serial_ns[i] on one thread and parallel_ns[i] on all (a test of its rules).
    """

def cg_thread_stats_() -> dict:
    """
    hessian.cg's timed thread choices so far (cpp/cg_threads.hpp), by call site ('start', 'iteration', 'iteration_known', 'update_slice', 'direction_sum'; a site appears at its first call): a list of (n, threads, calls, chosen, parallel) per vector size, parallel True where all threads were chosen.
    """

def cg_update_(
    x: typing.Any,
    r: typing.Any,
    p: typing.Any,
    y: typing.Any,
    alpha: typing.SupportsFloat | typing.SupportsIndex,
    damping: typing.SupportsFloat | typing.SupportsIndex,
) -> float:
    """
    One pass: x += alpha p, r -= alpha (y + damping p); returns r.r (float64, deterministic).
    """

def cg_update_slice_(
    x: typing.Any,
    r: typing.Any,
    p: typing.Any,
    y: typing.Any,
    alpha: typing.SupportsFloat | typing.SupportsIndex,
    damping: typing.SupportsFloat | typing.SupportsIndex,
    transposed: bool = False,
) -> float:
    """
    CG's update on one slice of the vectors: x += alpha p, r -= alpha (y + damping p); returns the slice's r.r (float64, deterministic). y: the slice of A p, 1-D like x, or with transposed=True a C-contiguous 2-D array whose transpose, read in C order, is the slice.
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
    lo: typing.Any = None,
) -> None:
    """
    Batch-norm backward: dx (batch statistics when training, fixed ones otherwise), dweight, dbias. lo: channel_stats' mean low parts of the batch statistics (training only), or None: from x again.
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
    var: typing.Any = None,
    running_mean: typing.Any = None,
    running_var: typing.Any = None,
    momentum: typing.SupportsFloat | typing.SupportsIndex = 0.0,
    training: bool = False,
    lo: typing.Any = None,
) -> None:
    """
    out = weight[c] (x - mean[c]) rstd[c] + bias[c] for x viewed as (N, C, S); with running buffers (both, and the batch's unbiased variance var), each becomes (1 - momentum) running + momentum batch, after every argument is checked. training: mean and rstd are x's batch statistics (channel_stats), so channels far from 0 subtract the mean's low part too (rules::mean_lo): lo, channel_stats' (training only), or computed from x again where None. training=False (the default: fixed statistics, eval mode): a channel with |mean| rstd <= 8 and a finite fold computes out = x alpha + beta, alpha = rstd weight, beta = bias - mean alpha, as torch's CPU eval batch norm (rules::eval_fold); batch statistics must pass training=True.
    """

def channel_stats(
    x: typing.Any,
    mean: typing.Any,
    rstd: typing.Any,
    var: typing.Any,
    N: typing.SupportsInt | typing.SupportsIndex,
    C: typing.SupportsInt | typing.SupportsIndex,
    S: typing.SupportsInt | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    lo: typing.Any = None,
) -> None:
    """
    Per-channel mean, rstd = 1 / sqrt(biased variance + eps) and unbiased variance (for running statistics) of x viewed as (N, C, S), all from the same merged moments; into lo (optional) the means' low parts (rules::mean_lo, 0 where not needed) that channel_norm_forward / _backward take in training, so that they do not compute them from x again.
    """

def chunk_threads(
    sizes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex],
    work: typing.SupportsInt | typing.SupportsIndex,
) -> list[int]:
    """
    The thread (0-based) that ran each chunk of arrays of these sizes in a parallel pass costing `work` (the split of every multi-array kernel; for tests).
    """

def clamp_(arrays: typing.Any, clip_value: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    arrays = clip(arrays, -clip_value, clip_value) in place, for every array (clip_value >= 0).
    """

def clip_scale_(
    arrays: typing.Any,
    max_norm: typing.SupportsFloat | typing.SupportsIndex,
    total_norm_buf: typing.Any,
    norm_dtype: str = "",
) -> None:
    """
    arrays *= min(1, max_norm / (total_norm_buf[0] + 1e-6)) in place (max_norm >= 0 or inf; a NaN norm makes NaN arrays, as in torch), total_norm_buf a 1-element float64 array read where the arrays are (on the GPU by the kernel: no host synchronization); the factor computed in norm_dtype ('' the arrays' dtype) as torch computes it in its norm's dtype.
    """

def combine_rows_(C: typing.Any, V: typing.Any, out: typing.Any, transpose: bool = False) -> None:
    """
    out[i] = sum_j C[i, j] V[j] for C (k, m) and V (m, n) rows (out (k, n); (n, k), its transpose, with transpose=True), each entry summed in the order j = 0, 1, ..., m - 1, a product and an add rounded in the arrays' dtype at a time (no fused multiply-add: the bits of NumPy's and CuPy's elementwise multiply and add, for any thread count). out may be V's first k rows in place (the same array data), else must not overlap C or V.
    """

def data_layouts(tensors: typing.Any, type: typing.Any) -> bytes:
    """
    Where each tensor's elements are: the address of its first element (its data pointer), its dtype (DLPack code | bits << 8 | lanes << 16), ndim, shape and strides (in elements; C order's where DLPack gives none), as the native-endian int64s of one bytes object, read through the DLPack exchange API of ``type`` (``dlpack_exchange_usable``); TypeError naming the first item that is not a ``type`` or that the API refuses. (optkern.torch's check that its cached views still view its params' memory as the params lay it out: one call, no int made per tensor.)
    """

def dlpack_exchange_usable(type: typing.Any) -> bool:
    """
    Whether a tensor type's DLPack exchange API (``__dlpack_c_exchange_api__``, major version 1) can describe the items of a ``HeldCapsules`` list (its ``api``).
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
    out = x * keep / (1 - p), keep = Philox word(offset + i) >= round(p * 2**32) (philox.hpp); out may be x.
    """

def first_readonly_(arrays: list) -> int:
    """
    The position of the first read-only NumPy array in `arrays`, or -1.
    """

def first_relaid_(arrays: list, layout: typing.Any) -> int:
    """
    The position of the first NumPy array in `arrays` whose shape or strides differ from `layout` (int64: per array its ndim, dims and strides, back to back), or -1.
    """

def forked() -> bool:
    """
    Whether this process was forked (by any fork(), Python's or C's) after the module was loaded.
    """

def get_num_threads() -> int:
    """
    OpenMP threads the next parallel region will use.
    """

def grad_norm(arrays: typing.Any, norm_type: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> float:
    """
    Total norm (sum_i sum_j |x_ij|^p)^(1/p) of a list of float32/float64 arrays (norm_type p in [1, 960]), or max |x| for norm_type=inf, accumulated in float64 in a fixed blocking (the same bits for any thread count, every run), written to out[0] (a 1-element float64 array of the arrays' kind and device). optkern._cpu returns it too; optkern._cuda returns None (no host synchronization).
    """

def grad_norm_chunk() -> int:
    """
    The elements of one of grad_norm_parts' partial sums: each array cut into chunks of this many from its first element (the last one shorter).
    """

def grad_norm_finish(
    parts: typing.Any, norm_type: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any
) -> float:
    """
    The norm from grad_norm_parts' partial sums (every rank's, concatenated in rank order; zeros between them add nothing), combined and rooted as grad_norm combines and roots its own, out[0] holding the max |x| on entry (p other than 1 and 2); the norm written to out[0]. optkern._cpu returns it too; optkern._cuda returns None (no host synchronization).
    """

def grad_norm_parts(
    arrays: typing.Any, norm_type: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any
) -> numpy.typing.NDArray[numpy.float64]:
    """
    grad_norm's partial sums for a finite norm_type (in [1, 960]), one a chunk of grad_norm_chunk() elements, in the order grad_norm combines them, in a new float64 array of the arrays' kind; the terms of p other than 1 and 2 scaled by the power of two of out[0] (the max |x| of every array the norm takes; out is checked as grad_norm's, not written): a distributed norm gathers every rank's and finishes them with grad_norm_finish. No host synchronization on the GPU.
    """

def grad_sq_norm(arrays: typing.Any, out: typing.Any) -> float:
    """
    Sum of the squares of every element of a list of arrays (grad_norm's 2-norm before its square root), accumulated as grad_norm's, written to out[0] (a 1-element float64 array of the arrays' kind and device). optkern._cpu returns it too; optkern._cuda returns None (no host synchronization).
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

def lanczos_orthogonalize_rows_(
    Q: typing.Any,
    k: typing.SupportsInt | typing.SupportsIndex,
    W: typing.Any,
    coeffs: typing.Any,
    betas: typing.Any,
    passes: typing.SupportsInt | typing.SupportsIndex = 2,
) -> None:
    """
    lanczos_orthogonalize_ for each row W[v] of a (b, n) block, reading Q[:k] once for the block: each row is orthogonalized against Q[:k] (not against the other rows) and normalized in place, coeffs[v, :k] (float64, shape (b, >= k)) receives its coefficients and betas[v] (float64, b) its norm before normalization. Each row gets the bits lanczos_orthogonalize_ gives it alone (any thread count).
    """

def lbfgs_direction_(
    S: typing.Any,
    Y: typing.Any,
    coef_s: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex],
    coef_y: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex],
    g: typing.Any,
    g_scale: typing.SupportsFloat | typing.SupportsIndex,
    d: typing.Any,
    out: typing.Any,
) -> None:
    """
    One pass: d = g_scale g + sum_j coef_y[j] Y[j] + coef_s[j] S[j] (accumulated in the array type); out[0] = g.d, out[1] = max |d| (float64).
    """

def lbfgs_move_(
    params: typing.Any, x: typing.Any, d: typing.Any, t: typing.SupportsFloat | typing.SupportsIndex, save: bool
) -> None:
    """
    Over the params (a list, read as one flat vector): save=True: x = p, p = p + t d; save=False: p = x + t d; x None (save=True only): p = p + t d, no copy kept.
    """

def lbfgs_push_(
    S: typing.Any,
    Y: typing.Any,
    s_new: typing.Any,
    y_new: typing.Any,
    g: typing.Any,
    prev_g: typing.Any,
    d: typing.Any,
    t: typing.SupportsFloat | typing.SupportsIndex,
    out: typing.Any,
) -> None:
    """
    One pass over the history (lists S, Y of k rows, oldest first): y_new = g - prev_g, s_new = t d, prev_g = g, and into out (float64, 5 k + 4): for each row j s_new.y_j, y_new.s_j, y_new.y_j, g.s_j, g.y_j; then y_new.s_new, y_new.y_new, g.s_new, g.y_new. Deterministic (fixed blocking, float64 sums).
    """

def lbfgs_stats(g: typing.Any, out: typing.Any) -> None:
    """
    out[0] = max |g|, out[1] = sum |g| (float64).
    """

def lbfgs_two_loop(
    k: typing.SupportsInt | typing.SupportsIndex,
    sy: typing.Any,
    yy: typing.Any,
    sg: typing.Any,
    yg: typing.Any,
    ro: typing.Any,
    h: typing.SupportsFloat | typing.SupportsIndex,
) -> tuple[list[float], list[float], list[float], float]:
    """
    The L-BFGS two-loop recursion on inner products (rules/second_order.hpp): returns (al, coef_s, coef_y, g_scale) for lbfgs_direction_. sy, yy: float64 (k, k) Gram blocks, sg, yg, ro: float64 (k) (NumPy arrays, any layout; another dtype is refused). Host-only: both modules' L-BFGS call it.
    """

def lowp_decode_map(signed: bool) -> numpy.typing.NDArray[numpy.float32]:
    """
    The 256 values of the dynamic 8-bit map (code -> value / scale).
    """

def lowp_dequantize_blockwise(
    codes: typing.Any, scales: typing.Any, out: typing.Any, block: typing.SupportsInt | typing.SupportsIndex
) -> None:
    """
    Inverse of lowp_quantize_blockwise.
    """

def lowp_from_half(x: typing.Any, out: typing.Any, dtype: str) -> None:
    """
    bfloat16/float16 bits (uint16 x) -> float32 out, exact.
    """

def lowp_quantize_block_fp(
    x: typing.Any,
    out: typing.Any,
    bits: typing.SupportsInt | typing.SupportsIndex,
    block: typing.SupportsInt | typing.SupportsIndex,
    stochastic: bool,
    seed: typing.SupportsInt | typing.SupportsIndex,
    stream: typing.SupportsInt | typing.SupportsIndex,
    offset: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    SWALP's block floating point (one exponent per block, 0: whole array): x -> out (may be x).
    """

def lowp_quantize_blockwise(
    x: typing.Any, codes: typing.Any, scales: typing.Any, block: typing.SupportsInt | typing.SupportsIndex
) -> None:
    """
    Blockwise dynamic 8-bit quantization of float32 x (rules/lowp.hpp).
    """

def lowp_quantize_blockwise_reference(
    x: typing.Any, codes: typing.Any, scales: typing.Any, block: typing.SupportsInt | typing.SupportsIndex
) -> None:
    """
    lowp_quantize_blockwise by the scalar rules element by element (CPU only: the tests' definition).
    """

def lowp_quantize_fixed_point(
    x: typing.Any,
    out: typing.Any,
    bits: typing.SupportsInt | typing.SupportsIndex,
    frac: typing.SupportsInt | typing.SupportsIndex,
    stochastic: bool,
    seed: typing.SupportsInt | typing.SupportsIndex,
    stream: typing.SupportsInt | typing.SupportsIndex,
    offset: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    SWALP's fixed point <bits, frac>: x -> out (may be x), stochastic or nearest-even rounding.
    """

def lowp_step(
    rule: str,
    scalars: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex],
    flags: collections.abc.Sequence[bool],
    params: typing.Any,
    grads: typing.Any,
    masters: typing.Any,
    states: typing.Any,
    scales: typing.Any,
    param_dtype: str,
    state_dtype: str,
    stochastic: bool,
    seed: typing.SupportsInt | typing.SupportsIndex,
    step: typing.SupportsInt | typing.SupportsIndex,
    block: typing.SupportsInt | typing.SupportsIndex,
    grad_scale: typing.Any = None,
    bases: typing.Any = None,
) -> typing.Any:
    """
    One optimizer step with low-precision storage: rule 'sgd' (scalars [lr, momentum, dampening, weight_decay], flags [nesterov, maximize, first, textbook]), 'adam' ([lr, beta1, beta2, eps, weight_decay], [maximize, decoupled, float32_lr]; 3 state lists: AMSGrad), 'rmsprop' ([lr, alpha, eps, weight_decay, momentum], [nesterov, maximize, centered]), 'adagrad' ([lr, lr_decay, weight_decay, eps], [maximize, float32_lr]), 'adadelta' ([lr, rho, eps, weight_decay], [maximize]) or 'nadam' ([lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product], [maximize, decoupled, float32_lr]; returns the new mu_product, the other rules None). param_dtype 'float32', 'bfloat16' or 'float16' (halves as uint16 bits, with float32 masters), state_dtype 'float32', 'bfloat16' or 'int8' (uint8 codes, one float32 scale per `block` values). stochastic: round the params stochastically (Philox stream `step` of `seed`; bf16 states always are). grad_scale: None, or GradScaler's scale (a 1-element float32 array beside the arrays): every grad is multiplied by float(1 / double(scale)) after widening to float32, before the rule. bases: None (the call's elements numbered in order from 0) or one int per param, the index of its element 0 in the Philox counters of stochastic rounding.
    """

def lowp_to_half(
    x: typing.Any,
    out: typing.Any,
    dtype: str,
    stochastic: bool,
    seed: typing.SupportsInt | typing.SupportsIndex,
    stream: typing.SupportsInt | typing.SupportsIndex,
    offset: typing.SupportsInt | typing.SupportsIndex,
) -> None:
    """
    float32 x -> bfloat16/float16 bits in uint16 out (nearest even, or stochastic rounding).
    """

def nadam_(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    momentum_decay: typing.SupportsFloat | typing.SupportsIndex,
    decoupled_weight_decay: bool,
    maximize: bool,
    float64_product: bool,
    float32_lr: bool,
    step: typing.SupportsFloat | typing.SupportsIndex,
    mu_product: typing.SupportsFloat | typing.SupportsIndex,
) -> typing.Any:
    """
    NAdam step in place (torch.optim.NAdam); mu_product is the product of the momentum schedule up to step - 1 (1.0 before the first step). Returns the new mu_product (None with device counters), rounded to the arrays' dtype, or kept in float64 with float64_product. float32_lr: the lr coefficients and 1 - lr weight_decay in float32 ops, as torch computes them from a float32 tensor lr.
    """

def nadam_capturable(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    lr: typing.SupportsFloat | typing.SupportsIndex,
    beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    momentum_decay: typing.SupportsFloat | typing.SupportsIndex,
    decoupled_weight_decay: bool,
    maximize: bool,
    float64_product: bool,
    float32_lr: bool,
    step: typing.SupportsFloat | typing.SupportsIndex,
    mu_product: typing.SupportsFloat | typing.SupportsIndex,
    counters: typing.Any,
    lr_buffer: typing.Any,
    found_inf: typing.Any = None,
) -> typing.Any:
    """
    NAdam step in place (torch.optim.NAdam); mu_product is the product of the momentum schedule up to step - 1 (1.0 before the first step). Returns the new mu_product (None with device counters), rounded to the arrays' dtype, or kept in float64 with float64_product. float32_lr: the lr coefficients and 1 - lr weight_decay in float32 ops, as torch computes them from a float32 tensor lr. Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding [steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host `step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write nothing, counters included, unreported (no host reads the device's values).
    """

def nadam_given_(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    c_grad: typing.SupportsFloat | typing.SupportsIndex,
    c_avg: typing.SupportsFloat | typing.SupportsIndex,
    one_minus_beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    one_minus_beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    decay: typing.SupportsFloat | typing.SupportsIndex,
    bc2: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
) -> None:
    """
    NAdam step in place with its step scalars given (rules::NAdamGiven): p <- p decay + c_grad g / d + c_avg m / d, d = sqrt(v / bc2) + eps, m <- lerp(m, g, one_minus_beta1), v <- beta2 v + one_minus_beta2 g^2, g = (-g if maximize else g) + weight_decay p; each scalar rounded once to the arrays' dtype (torch.optim's for-loop with tensor betas, computed by the caller, who keeps mu_product).
    """

def nadam_given_capturable(
    params: typing.Any,
    grads: typing.Any,
    exp_avgs: typing.Any,
    exp_avg_sqs: typing.Any,
    c_grad: typing.SupportsFloat | typing.SupportsIndex,
    c_avg: typing.SupportsFloat | typing.SupportsIndex,
    one_minus_beta1: typing.SupportsFloat | typing.SupportsIndex,
    beta2: typing.SupportsFloat | typing.SupportsIndex,
    one_minus_beta2: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    weight_decay: typing.SupportsFloat | typing.SupportsIndex,
    decay: typing.SupportsFloat | typing.SupportsIndex,
    bc2: typing.SupportsFloat | typing.SupportsIndex,
    maximize: bool,
    counters: typing.Any,
    lr_buffer: typing.Any,
    found_inf: typing.Any = None,
) -> None:
    """
    NAdam step in place with its step scalars given (rules::NAdamGiven): p <- p decay + c_grad g / d + c_avg m / d, d = sqrt(v / bc2) + eps, m <- lerp(m, g, one_minus_beta1), v <- beta2 v + one_minus_beta2 g^2, g = (-g if maximize else g) + weight_decay p; each scalar rounded once to the arrays' dtype (torch.optim's for-loop with tensor betas, computed by the caller, who keeps mu_product). Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding [steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host `step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write nothing, counters included, unreported (no host reads the device's values).
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

def orthonormalize_rows_(
    Q: typing.Any, sines: typing.Any, max_passes: typing.SupportsInt | typing.SupportsIndex = 3
) -> int:
    """
    The rows of Q (r, n) made orthonormal in place, in order: row i normalized, then CGS2 passes of lanczos_orthogonalize_ against Q[:i] (at most max_passes) while a pass leaves less than half of it; a row left zero, or still cancelling after them, is zeroed (in the span of the rows before). sines[i] (float64, r) receives the fraction of row i left by its first pass (0 for a zero row, NaN for a row not finite, kept as it is). Returns the number of rows kept. Each row gets the bits of the lanczos_orthogonalize_ calls (any thread count).
    """

def penalty_grad_(
    params: typing.Any,
    grads: typing.Any,
    l1: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    out: typing.Any = None,
) -> typing.Any:
    """
    grads[i] += l2*params[i] + l1*sign(params[i]) in place; with out (a 1-element float64 array) also writes l1*sum|p| + l2/2*sum p^2 to out[0] (the same pass over p). optkern._cpu returns that value (None without out); optkern._cuda returns None (no host synchronization).
    """

def penalty_value(
    params: typing.Any,
    l1: typing.SupportsFloat | typing.SupportsIndex,
    l2: typing.SupportsFloat | typing.SupportsIndex,
    out: typing.Any = None,
) -> float:
    """
    l1*sum|p| + l2/2*sum p^2 over all arrays (a deterministic float64 sum), written to out[0] (a 1-element float64 array). optkern._cpu returns it, out optional; optkern._cuda requires out and returns None (no host synchronization).
    """

def philox4x32_10(
    counter: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(4)"],
    key: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"],
) -> typing.Annotated[list[int], "FixedSize(4)"]:
    """
    Raw Philox4x32-10 of a 128-bit counter and 64-bit key (for known-answer tests).
    """

def pool_install() -> typing.Any:
    """
    Make optkern's caching allocator NumPy's data allocator in the current context; returns the previous handler for pool_restore.
    """

def pool_release() -> None:
    """
    Free every block the pool holds.
    """

def pool_restore(prev: typing.Any) -> None:
    """
    Put back the handler pool_install returned.
    """

def pool_set_limit(limit: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    The most bytes of freed blocks the pool keeps (0: none); frees what is over it.
    """

def pool_stats() -> dict:
    """
    limit, cached bytes, hits and misses of the pool.
    """

def precheck_step_(runs: list) -> None:
    """
    Check a multi-call optimizer step before it writes: runs of (dtype, written arrays, their names, grads, their params, grad names).
    """

def probe_read(arrays: typing.Any) -> float:
    """
    Bandwidth probe: reads every element of `arrays` (float32/float64, all one size) once, chunk by chunk across the arrays (as many streams as arrays), and returns their sum (no writes).
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
    RMSprop step in place; grad_avgs given = centered (v - a^2 clamped at 0), momentum_buffers given = momentum (nesterov: Goodfellow Alg. 8.6 in look-ahead form).
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
    counters: typing.Any,
    lr_buffer: typing.Any,
    found_inf: typing.Any = None,
) -> None:
    """
    RMSprop step in place; grad_avgs given = centered (v - a^2 clamped at 0), momentum_buffers given = momentum (nesterov: Goodfellow Alg. 8.6 in look-ahead form). Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding [steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host `step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write nothing, counters included, unreported (no host reads the device's values).
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

def running_stats_(
    running_mean: typing.Any,
    running_var: typing.Any,
    mean: typing.Any,
    var: typing.Any,
    momentum: typing.SupportsFloat | typing.SupportsIndex,
) -> None:
    """
    running_mean, running_var <- (1 - momentum) running + momentum (mean, var), in place (the update channel_norm_forward makes; instance norm's batch averages).
    """

def sam_perturb_(
    params: typing.Any,
    grads: typing.Any,
    backups: typing.Any,
    rho: typing.SupportsFloat | typing.SupportsIndex,
    eps: typing.SupportsFloat | typing.SupportsIndex,
    out: typing.Any,
    adaptive: bool = False,
) -> float:
    """
    SAM's ascent step: out[0] = ||grads|| (float64, deterministic), scale = rho / (||grads|| + eps) (0 when rho = 0), backups = params, params += scale grads; two passes, one call. adaptive=True (ASAM): out[0] = ||params * grads||, params += scale params^2 grads.
    """

def sam_restore_(params: typing.Any, backups: typing.Any) -> None:
    """
    params = backups (SAM's return to w).
    """

def serial_below() -> int:
    """
    The work (elements times arrays streamed) below which a kernel runs on one thread, for the current thread count: measured once per count from the wake-up time of a parallel region (cpp/parallel_cost.cpp), or OPTKERN_SERIAL_BELOW.
    """

def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    OpenMP threads of every following optkern call, from any Python thread (process-wide).
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
    textbook: bool,
    step: typing.SupportsFloat | typing.SupportsIndex,
) -> None:
    """
    SGD step in place (torch.optim.SGD semantics; textbook=True: v <- mu v - lr g, p <- p + v). momentum_buffers=None runs plain SGD; step counts the buffers' steps: step=1 initialises them from this step's gradient.
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
    textbook: bool,
    step: typing.SupportsFloat | typing.SupportsIndex,
    counters: typing.Any,
    lr_buffer: typing.Any,
    found_inf: typing.Any = None,
) -> None:
    """
    SGD step in place (torch.optim.SGD semantics; textbook=True: v <- mu v - lr g, p <- p + v). momentum_buffers=None runs plain SGD; step counts the buffers' steps: step=1 initialises them from this step's gradient. Capturable variant: the same arguments plus `counters`, a float64 array on the arrays' device holding [steps taken] (NAdam: [steps taken, mu_product]), read by the kernel (this step is steps taken + 1; the host `step`/`mu_product` are ignored) and advanced on the device after the update, and `lr_buffer` (None, or one float64 element there replacing `lr`), and `found_inf` (None, or one float32 element there: when nonzero the step writes nothing and the counters stay, GradScaler's skipped step). Nothing is synchronized: the launches can be captured in a CUDA graph. The CPU reads `counters` and `lr_buffer` and refuses a bad value (ValueError, nothing written); on CuPy the kernels apply the same checks and a value the CPU refuses makes the step write nothing, counters included, unreported (no host reads the device's values).
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

def spans_clear(
    ptrs: list,
    nbytes: typing.Annotated[numpy.typing.ArrayLike, numpy.int64],
    itemsizes: typing.Annotated[numpy.typing.ArrayLike, numpy.int64],
    wlo: typing.Annotated[numpy.typing.ArrayLike, numpy.int64],
    reach: typing.Annotated[numpy.typing.ArrayLike, numpy.int64],
) -> bool:
    """
    Whether every span [ptrs[i], ptrs[i] + nbytes[i]) is aligned to itemsizes[i] and overlaps no written span (wlo: their sorted starts, reach[k]: the furthest end among the first k + 1).
    """

def swa_lerp_(averages: typing.Any, params: typing.Any, weight: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    averages[i] <- lerp(averages[i], params[i], weight), float32 or float64 (all of averages[0]'s dtype), one pass.
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

# float32_lr's float32 operands ({hyper-parameter: the flag it also needs, or None}) and why
# they meet float32 (signatures_optim_checks.hpp: kFloat32Operands, kFloat32Lr)
FLOAT32_LR_OPERANDS: dict[str, str | None]
FLOAT32_LR_WHOSE: str
