"""Hunt 40i: a size whose arrays need more than 2**63 - 1 bytes (no array can hold them) is refused
naming the argument and the most it takes, nothing built: the norm modules (BatchNorm(2**62)
raised NumPy's unnamed "array is too big" ValueError from ``np.full``) and ``nn.MLP``, whose
constructor took an int64 count of parameters whose flat buffer ``init_params`` then failed to
allocate with the same unnamed error."""

import math
import re

import numpy as np
import pytest

from optkern import nn, norm

INT64_MAX = 2**63 - 1
MOST = r"must be <= {most} \(2\*\*63 - 1 bytes of {dt}\), got {got}$"
SHAPE = r"must hold <= {most} elements \(2\*\*63 - 1 bytes of {dt}\), got {got} in its nonzero dimensions\)$"


def _bound(itemsize):
    return INT64_MAX // itemsize


@pytest.mark.parametrize(
    "make,name,itemsize,got",
    [
        (lambda: norm.BatchNorm(2**62), "num_features", 4, 2**62),
        (lambda: norm.BatchNorm(2**61, dtype=np.float64), "num_features", 8, 2**61),
        (lambda: norm.BatchNorm(2**62, dtype=np.float16), "num_features", 4, 2**62),  # (float32 statistics)
        (lambda: norm.GroupNorm(1, 2**62), "num_channels", 4, 2**62),
    ],
)
def test_norm_modules_name_a_size_no_array_holds(make, name, itemsize, got):
    dt = {2: "float16", 4: "float32", 8: "float64"}[itemsize]
    with pytest.raises(ValueError, match="^" + name + ": " + MOST.format(most=_bound(itemsize), dt=dt, got=got)):
        make()


@pytest.mark.parametrize(
    "make,itemsize,got",
    [
        (lambda: norm.LayerNorm(2**62), 4, "(4611686018427387904,)"),
        (lambda: norm.LayerNorm((2**31, 2**31)), 4, "(2147483648, 2147483648)"),
        (lambda: norm.LayerNorm([2**31, 2**31], dtype=np.float64), 8, "(2147483648, 2147483648)"),
        (lambda: norm.RMSNorm(2**62), 4, "(4611686018427387904,)"),
        (lambda: norm.RMSNorm(2**62, dtype=np.float16), 2, "(4611686018427387904,)"),
        # (zero-size, but NumPy sizes it by its nonzero dimensions: "array is too big" too)
        (lambda: norm.LayerNorm((2**62, 4, 0)), 4, "(4611686018427387904, 4, 0)"),
        (lambda: norm.RMSNorm((2**61, 0)), 4, "(2305843009213693952, 0)"),
    ],
)
def test_norm_modules_name_a_shape_no_array_holds(make, itemsize, got):
    dt = {2: "float16", 4: "float32", 8: "float64"}[itemsize]
    n = math.prod(int(v) for v in re.findall(r"\d+", got) if int(v))
    want = SHAPE.format(most=_bound(itemsize), dt=dt, got=re.escape(f"{got} ({n}"))
    with pytest.raises(ValueError, match="^normalized_shape: " + want):
        make()


def test_sizes_without_the_arrays_are_not_bounded():
    # no affine parameters and no running statistics: nothing is allocated from the size
    norm.BatchNorm(2**62, affine=False, track_running_stats=False)
    norm.LayerNorm(2**62, elementwise_affine=False)
    norm.RMSNorm(2**62, elementwise_affine=False)


@pytest.mark.parametrize("dtype,itemsize", [(np.float32, 4), (np.float64, 8)])
def test_mlp_names_the_layer_whose_parameters_no_buffer_holds(dtype, itemsize):
    n = _bound(itemsize)  # sizes[0] * 1 weights + 1 bias: one past the bound
    with pytest.raises(ValueError, match=r"^sizes\[1\]: the layers up to it hold " + str(n + 1) + " parameters"):
        nn.MLP([n, 1], dtype=dtype)
    with pytest.raises(ValueError, match=rf"at most {n} {np.dtype(dtype).name} parameters"):
        nn.MLP([2**40, 2**22, 3], dtype=dtype)


def test_mlp_at_the_bound_is_built():
    n = _bound(4) - 1
    m = nn.MLP([n, 1])  # (built lazily: init_params is where the memory would be needed)
    assert m.num_params == n + 1 == _bound(4) and math.prod((n, 1)) == n
