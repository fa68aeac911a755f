"""Batch norm's running statistics, updated inside the native forward (rules::running_stat): the
float64 formula (1 - momentum) running + momentum batch rounded once, the unbiased batch variance,
every argument checked before the buffers change."""

import numpy as np
import pytest

from optkern import _backend, norm


def _ref(x, rm, rv, momentum):
    """float64 reference of the updated buffers for x of shape (N, C, *spatial)."""
    xc = np.moveaxis(x.astype(np.float64), 1, 0).reshape(x.shape[1], -1)
    mean, var = xc.mean(axis=1), xc.var(axis=1, ddof=1)
    return (1 - momentum) * rm.astype(np.float64) + momentum * mean, (1 - momentum) * rv.astype(
        np.float64
    ) + momentum * var


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 1), (7, 3), (5, 4, 3, 3), (1023, 2)])
@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.5, 1.0])
def test_running_statistics_match_the_float64_formula(dtype, shape, momentum):
    rng = np.random.default_rng(sum(shape))
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    C = shape[1]
    rm, rv = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype)
    want_m, want_v = _ref(x, rm, rv, momentum)
    norm.batch_norm(x, running_mean=rm, running_var=rv, momentum=momentum)
    tol = 4 * float(np.finfo(dtype).eps) if dtype == np.float32 else 1e-13  # the batch moments' rounding
    np.testing.assert_allclose(rm, want_m, rtol=tol, atol=tol)
    np.testing.assert_allclose(rv, want_v, rtol=tol, atol=tol)


def test_momentum_one_takes_the_batch_exactly_and_zero_keeps_the_buffer():
    x = np.random.default_rng(0).standard_normal((9, 2)).astype(np.float32)
    rm, rv = np.full(2, 7.0, np.float32), np.full(2, 3.0, np.float32)
    _, saved = norm.batch_norm(x, running_mean=rm, running_var=rv, momentum=1.0)
    assert np.array_equal(rm, saved.mean)  # the batch mean, one rounding from float64: itself
    rm0, rv0 = np.full(2, 7.0, np.float32), np.full(2, 3.0, np.float32)
    norm.batch_norm(x, running_mean=rm0, running_var=rv0, momentum=0.0)
    assert np.array_equal(rm0, [7, 7]) and np.array_equal(rv0, [3, 3])


def test_huge_values_take_the_scaled_path_and_still_update():
    x = np.array([[1e30, -2e30], [3e30, 4e30], [-1e30, 1e30]], np.float32)  # squares overflow float32
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    norm.batch_norm(x, running_mean=rm, running_var=rv, momentum=0.5)
    want_m, want_v = _ref(x, np.zeros(2), np.ones(2), 0.5)
    np.testing.assert_allclose(rm, want_m, rtol=1e-6)
    assert np.all(want_v > np.finfo(np.float32).max) and np.isinf(rv).all()  # the variance overflows float32


def test_native_running_arguments_are_checked_before_anything_is_written():
    cpu = _backend.cpu
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    mean, rstd, var = (np.zeros(3, np.float32) for _ in range(3))
    cpu.channel_stats(x, mean, rstd, var, 4, 3, 1, 1e-5)
    y = np.zeros_like(x)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="^var: expected the batch's unbiased variance"):
        cpu.channel_norm_forward(x, mean, rstd, None, None, y, 4, 3, 1, None, rm, rv, 0.1)
    with pytest.raises(ValueError, match="^running_var: expected an array"):
        cpu.channel_norm_forward(x, mean, rstd, None, None, y, 4, 3, 1, var, rm, None, 0.1)
    with pytest.raises(ValueError, match="^momentum: must be in"):
        cpu.channel_norm_forward(x, mean, rstd, None, None, y, 4, 3, 1, var, rm, rv, 1.5)
    with pytest.raises(TypeError, match="^running_mean"):
        cpu.channel_norm_forward(x, mean, rstd, None, None, y, 4, 3, 1, var, rm.astype(np.float64), rv, 0.1)
    with pytest.raises(ValueError, match="running_mean"):  # aliasing the output
        cpu.channel_norm_forward(x, mean, rstd, None, None, y, 4, 3, 1, var, y.reshape(-1)[:3], rv, 0.1)
    assert np.array_equal(rm, [0, 0, 0]) and np.array_equal(rv, [1, 1, 1]) and not y.any()


def test_a_bad_output_leaves_the_running_buffers_alone():
    x = np.random.default_rng(2).standard_normal((6, 3)).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises((TypeError, ValueError), match="out"):
        norm.batch_norm(x, running_mean=rm, running_var=rv, out=np.zeros((6, 3), np.float64))
    assert np.array_equal(rm, [0, 0, 0]) and np.array_equal(rv, [1, 1, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 3, 7), (5, 2, 3, 3), (4, 1, 1023)])
def test_instance_norm_running_statistics_match_the_float64_formula(dtype, shape):
    """Instance norm averages its per-instance statistics over the batch, then the same update."""
    rng = np.random.default_rng(sum(shape) + 1)
    x = (1 + 3 * rng.standard_normal(shape)).astype(dtype)
    x[:, 0] = 1 + 3e-4 * rng.standard_normal(x[:, 0].shape)  # a variance (9e-8) far below eps (1e-5)
    C = shape[1]
    rm, rv = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype)
    rv[0] = 0  # (so that the small variance is not lost in (1 - momentum) rv)
    inst = x.astype(np.float64).reshape(shape[0], C, -1)
    want_m = 0.7 * rm.astype(np.float64) + 0.3 * inst.mean(axis=2).mean(axis=0)
    want_v = 0.7 * rv.astype(np.float64) + 0.3 * inst.var(axis=2, ddof=1).mean(axis=0)
    strided_m, strided_v = np.zeros(2 * C, dtype), np.zeros(2 * C, dtype)
    strided_m[::2], strided_v[::2] = rm, rv  # strided buffers: updated through contiguous copies
    norm.instance_norm(x, running_mean=strided_m[::2], running_var=strided_v[::2], momentum=0.3)
    # the unbiased variances come from the moments (not back from rstd = 1 / sqrt(var + eps), which an
    # atol of 1e-5 let pass): relative, with the moments' and the batch average's rounding
    tol = 8 * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(strided_m[::2], want_m, rtol=tol, atol=tol)
    np.testing.assert_allclose(strided_v[::2], want_v, rtol=tol, atol=0)
    assert not strided_m[1::2].any() and not strided_v[1::2].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.1, 0.7])
def test_instance_norm_running_var_of_constant_instances_is_exactly_zero(dtype, c, eps):
    """Constant instances have variance 0 (torch's too): 1 / rstd² - eps from a rounded rstd gave
    -1.2e-12 (float32, eps 1e-5) or 4e-8 (eps 0.7), a negative or made-up running variance."""
    x = np.full((2, 3, 8), c, dtype)
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    norm.instance_norm(x, running_mean=rm, running_var=rv, momentum=1.0, eps=eps)
    np.testing.assert_array_equal(rv, np.zeros(3))
    np.testing.assert_array_equal(rm, np.full(3, c))
    rv[:] = 2.0
    norm.instance_norm(x, running_mean=rm, running_var=rv, momentum=0.25, eps=eps)
    np.testing.assert_array_equal(rv, np.full(3, 1.5))  # (1 - momentum) 2 + momentum 0, exact


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("std", [1e-2, 1e-4, 1e-5, 1e-6])
def test_instance_norm_running_var_of_a_small_spread_matches_float64(dtype, std):
    """A variance far below eps (1e-5) is kept to the rounding of the data's moments: from rstd it was
    0.5% off at std 1e-5 and 20% at 1e-6 in float32 (and 1e-9 relative in float64 at 1e-6)."""
    rng = np.random.default_rng(int(-np.log10(std)))
    x = (1.0 + std * rng.standard_normal((3, 2, 64))).astype(dtype)
    rm, rv = np.zeros(2, dtype), np.ones(2, dtype)
    norm.instance_norm(x, running_mean=rm, running_var=rv, momentum=1.0)
    want = x.astype(np.float64).var(axis=2, ddof=1).mean(axis=0)  # of the data as rounded
    np.testing.assert_allclose(rv, want, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=0)
    np.testing.assert_allclose(rm, x.astype(np.float64).mean(axis=(0, 2)), rtol=4 * np.finfo(dtype).eps)


def test_instance_norm_with_buffers_normalizes_as_without():
    """With running buffers the statistics come from the channel kernels (the (1, N C, S) view): the
    output, saved statistics and gradients agree with the row kernels' to rounding."""
    rng = np.random.default_rng(5)
    x, dy = (2 + rng.standard_normal((3, 4, 37))).astype(np.float32), rng.standard_normal((3, 4, 37))
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    y1, s1 = norm.instance_norm(x, w, b)
    y2, s2 = norm.instance_norm(x, w, b, np.zeros(4, np.float32), np.ones(4, np.float32))
    tol = 16 * float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(y2, y1, rtol=tol, atol=tol)
    np.testing.assert_allclose(s2.mean, s1.mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(s2.rstd, s1.rstd, rtol=tol)
    assert s2.mean.shape == s1.mean.shape == (3, 4) and s2.groups == s1.groups == 4
    g1 = norm.instance_norm_backward(dy.astype(np.float32), x, w, s1)
    g2 = norm.instance_norm_backward(dy.astype(np.float32), x, w, s2)
    for a, b_ in zip(g1, g2):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="^weight: array must be C-contiguous"):
        norm.instance_norm(x, np.ones(8, np.float32)[::2], None, np.zeros(4, np.float32), np.ones(4, np.float32))


def test_native_running_stats_checks():
    cpu = _backend.cpu
    m, v = np.ones(3, np.float32), np.full(3, 2.0, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="^momentum: must be in"):
        cpu.running_stats_(rm, rv, m, v, -0.1)
    with pytest.raises(ValueError, match="^running_var"):
        cpu.running_stats_(rm, rv[:2], m, v, 0.1)
    with pytest.raises(TypeError, match="^running_mean"):
        cpu.running_stats_(rm.astype(np.float64), rv, m, v, 0.1)
    with pytest.raises(ValueError, match="running_mean"):
        cpu.running_stats_(rm, rm, m, v, 0.1)  # the two buffers alias
    assert np.array_equal(rm, [0, 0, 0]) and np.array_equal(rv, [1, 1, 1])
    cpu.running_stats_(rm, rv, m, v, 0.25)
    np.testing.assert_array_equal(rm, np.float32(0.25))
    np.testing.assert_array_equal(rv, np.float32(1.25))
