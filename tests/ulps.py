"""Distances in units in the last place, shared by the tests (one definition each; they differ in
what they measure, so each has its own name):

- ``bits_apart_f32``: how many float32 values apart two float32 arrays are, from their bit
  patterns (exact; meant for values of one sign, as the int32 views order them);
- ``ulps_of_f32``: |got - ref| in units of the float32 spacing at ref (got and ref as float64:
  a float64 reference need not be a float32 value);
- ``ulps_in_f32``: the same with got and ref rounded to float32 first;
- ``spacing_lowp``: the spacing of float16's or bfloat16's values at |v|, subnormals kept.

(Single-use distances with other meanings stay with their tests: exact_moments.ulps and
test_hunt37_clip_pnorm's against exact sums, signed or not; test_hunt45f's in the spacing of a row's
largest value; test_hunt49g's and test_cuda_hunt44d's of scalars.)
"""

from __future__ import annotations

import numpy as np


def bits_apart_f32(a, b):
    """|int32 view of a - int32 view of b|, elementwise, as int64."""
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def ulps_of_f32(got, ref):
    """|got - ref| in float32 ulps of ref (elementwise float64; ref's spacing as float32's at |ref|)."""
    ref = np.asarray(ref, np.float64)
    return np.abs(np.asarray(got, np.float64) - ref) / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)


def ulps_in_f32(a, b):
    """|a - b| in float32 ulps of b, a and b rounded to float32 first (elementwise, as float64)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / np.spacing(np.abs(b)).astype(np.float64)


def spacing_lowp(v, dt):
    """The spacing of dt's values at |v| (dt: np.float16, else bfloat16; float64 in, float64 out)."""
    mant, emin = (10, -14) if dt == np.float16 else (7, -126)
    a = np.abs(np.asarray(v, np.float64))
    e = np.maximum(np.floor(np.log2(np.where(a > 0, a, 1.0))), emin)
    return 2.0 ** (e - mant)
