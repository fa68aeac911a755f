"""Normalization layers and dropout: functional forward / backward and small modules.

Every function takes NumPy arrays (C++/OpenMP kernels) or CuPy arrays (CUDA
kernels) of float32, float64, or float16 / bfloat16 storage, and returns
arrays of the same kind. On the CPU bfloat16 is ``ml_dtypes.bfloat16`` (see
:mod:`optkern.lowp`). Half storage computes as float32 on both backends: each
element loaded to float32, the float32 statistics, each result rounded to
nearest even. Inputs must be C-contiguous; weights, bias, ``out`` and the
gradients share the input's dtype; statistics (``mean``, ``rstd``, running
buffers, weight norm's ``norm``) are float64 for float64 input and float32
otherwise.

Forward functions return ``(y, saved)``, where ``saved`` is a small named
tuple holding what the matching ``*_backward`` needs (per-row or per-channel
mean and reciprocal standard deviation ``rstd = 1 / sqrt(var + eps)``). The
math, written once in ``cpp/include/optkern/rules/norm.hpp``::

    x̂ = (x - mean) * rstd,   y = weight * x̂ + bias
    dx = rstd * (g - mean(g) - x̂ * mean(g * x̂)),   g = weight * dy
    dweight = Σ dy * x̂,   dbias = Σ dy

The saved ``mean`` is the exact mean rounded to its dtype (float32 and half input; float64 rows keep
the rounding of their sums in double: within an ulp of the row's largest |x|, not of a mean whose
values cancel). Rows and channels far from 0 (``|mean| * rstd > 1``) form x̂ around the exact mean,
``(x - mean) - lo`` with ``lo`` the rounding's remainder: layer, group and instance norm (the
backward computes lo again from x), training-mode batch norm (``BatchNormSaved.lo``) and the
batch / layer-norm R-operator of ``optkern.nn``. Float32 rows of ``1e7 + N(0, 1)`` get y within a
few ulps, not half of the mean's ulp times rstd. Batch and instance norm's eval modes, whose fixed
running statistics are given, fold them as torch's CPU kernel does, ``y = x * alpha + beta`` with
``alpha = rstd * weight`` and ``beta = bias - mean * alpha`` (each rounded to the statistics' dtype, both
multiply-adds fused: torch's bits), in every channel with ``|mean| * rstd <= 8``; farther channels
(where torch's fold loses up to 8e5 ulps) keep ``weight * x̂ + bias`` around the rounded mean.

``eps`` (every forward, and the native ``row_norm_forward`` / ``channel_stats``): > 0 and finite,
and, where the statistics are float32 (float32 and half input), finite and nonzero in float32;
anything else is a ValueError naming ``eps`` before anything is written. torch takes any float:
``eps=inf`` (or one that overflows the statistics' dtype) gives ``rstd = 0``, y = bias and zero
input gradients (a normalization that normalizes nothing), NaN or a negative eps NaN outputs
(torch's batch norm refuses ``eps <= 0`` in training only): refused here, as an optimizer's
hyper-parameter not finite in the arrays' dtype is.

The batch, layer, RMS, group and instance norm forwards and backwards take
``out=`` for their big output (``y``, ``dx``): a training loop that passes the
same buffers every step skips the allocation and, for outputs of tens of MB,
the page faults of fresh memory, which cost more than the kernel itself. The
result's first element is then ``out`` itself, as NumPy's ``out=`` returns it: a
torch tensor (any foreign array) in, that object back, not its NumPy view (a
torch one with its version counter bumped, written as by an in-place torch op).

Statistics are computed with a shifted two-pass / Chan merge scheme (never
E[x²] - E[x]²), and reductions use a fixed blocking, so results are bitwise
identical for any number of OpenMP threads and run to run on a GPU.

Layout: ``functional`` (layer, RMS, group, instance norm, and batch norm from
``_channel_norm``, the per-channel kernels), ``weight`` (weight norm), ``_dropout``,
``modules`` (the stateful classes) and ``_common`` (saved tuples, argument
helpers); everything public is imported here.
"""

from __future__ import annotations

from ._common import BatchNormSaved, RMSNormSaved, RowNormSaved, WeightNormSaved
from ._dropout import dropout, dropout_backward
from .functional import (
    batch_norm,
    batch_norm_backward,
    group_norm,
    group_norm_backward,
    instance_norm,
    instance_norm_backward,
    layer_norm,
    layer_norm_backward,
    rms_norm,
    rms_norm_backward,
)
from .modules import BatchNorm, GroupNorm, LayerNorm, RMSNorm
from .weight import weight_norm, weight_norm_backward

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "layer_norm",
    "layer_norm_backward",
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
    "rms_norm",
    "rms_norm_backward",
    "weight_norm",
    "weight_norm_backward",
    "dropout",
    "dropout_backward",
    "BatchNorm",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
    "BatchNormSaved",
    "RowNormSaved",
    "RMSNormSaved",
    "WeightNormSaved",
]
