"""optkern.init: fans and gains vs torch, variances within sampling error, orthogonality, seeding."""

import math

import numpy as np
import pytest

from optkern import init as I

SHAPES = [(300, 200), (64, 32, 3, 3), (16, 8, 5), (7, 3, 2, 2, 2)]


def fans(shape):
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


@pytest.mark.parametrize("shape", SHAPES + [(5, 1), (1, 9)])
def test_fans(shape):
    assert I.calculate_fan_in_and_fan_out(shape) == fans(shape)
    assert I.calculate_fan_in_and_fan_out(np.empty(shape)) == fans(shape)


def test_fans_and_gains_match_torch():
    torch = pytest.importorskip("torch")
    for shape in SHAPES:
        assert I.calculate_fan_in_and_fan_out(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    for nl, p in [
        ("linear", None),
        ("conv2d", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("selu", None),
    ]:
        assert I.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p), rel=1e-15)


def check_moments(w, var, uniform):
    """mean 0 and variance within 5 standard errors of the formula (normal: SE(var) = var sqrt(2/n))."""
    w = w.astype(np.float64).ravel()
    n = w.size
    se_var = var * math.sqrt((0.8 if uniform else 2.0) / n)  # U: kurtosis 1.8 -> Var(s^2) = 0.8 var^2 / n
    assert abs(w.mean()) < 5 * math.sqrt(var / n)
    assert abs(w.var() - var) < 5 * se_var, (w.var(), var)
    if uniform:
        assert np.abs(w).max() <= math.sqrt(3 * var) * (1 + 1e-6)


@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize(
    "name, var_fn, uniform",
    [
        ("lecun_normal_", lambda fi, fo: 1 / fi, False),
        ("lecun_uniform_", lambda fi, fo: 1 / fi, True),
        ("xavier_normal_", lambda fi, fo: 2 / (fi + fo), False),
        ("xavier_uniform_", lambda fi, fo: 2 / (fi + fo), True),
        ("geometric_normal_", lambda fi, fo: 1 / math.sqrt(fi * fo), False),
        ("geometric_uniform_", lambda fi, fo: 1 / math.sqrt(fi * fo), True),
    ],
)
def test_variance_scaling(shape, name, var_fn, uniform):
    w = np.empty(shape, np.float32)
    assert getattr(I, name)(w, rng=1) is w
    check_moments(w, var_fn(*fans(shape)), uniform)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nl, a, gain", [("relu", 0, 2.0), ("leaky_relu", 0.1, 2 / 1.01), ("tanh", 0, 25 / 9)])
@pytest.mark.parametrize("uniform", [False, True])
def test_kaiming(mode, nl, a, gain, uniform):
    shape = (96, 48, 3, 3)
    w = np.empty(shape)
    (I.kaiming_uniform_ if uniform else I.kaiming_normal_)(w, a=a, mode=mode, nonlinearity=nl, rng=4)
    fi, fo = fans(shape)
    check_moments(w, gain / (fi if mode == "fan_in" else fo), uniform)


def test_xavier_gain_and_geometric_c():
    w = I.xavier_normal((400, 300), gain=I.calculate_gain("tanh"), rng=0)
    check_moments(w, (5 / 3) ** 2 * 2 / 700, False)
    g = I.geometric_normal((400, 100), c=2.0, rng=0, dtype=np.float64)
    assert g.dtype == np.float64
    check_moments(g, 2.0 / 200, False)


@pytest.mark.parametrize("shape", [(50, 50), (30, 80), (80, 30), (16, 4, 3, 3), (4, 16, 3, 3)])
def test_orthogonal(shape):
    w = I.orthogonal(shape, gain=1.0, rng=2, dtype=np.float64)
    m = w.reshape(shape[0], -1)
    small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(small, np.eye(small.shape[0]), atol=1e-6)
    w2 = I.orthogonal_(np.empty(shape, np.float32), gain=2.0, rng=2)
    np.testing.assert_allclose(w2, 2 * w, rtol=1e-5, atol=1e-6)


def test_orthogonal_sign_fix_gives_positive_r_diagonal():
    w = I.orthogonal((40, 40), rng=9, dtype=np.float64)
    a = np.random.default_rng(9).standard_normal((40, 40))
    # Q R = A with the sign fix means diag(Q^T A) = diag(R') > 0
    assert (np.diag(w.T @ a) > 0).all()


def test_seeding_and_return_new():
    a = I.kaiming_normal((20, 10), rng=5)
    b = I.kaiming_normal_(np.empty((20, 10), np.float32), rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (20, 10)
    assert not np.array_equal(a, I.kaiming_normal((20, 10), rng=6))
    u = I.uniform_(np.empty(10000), -2.0, 4.0, rng=0)
    assert u.min() >= -2 and u.max() < 4 and abs(u.mean() - 1) < 0.1
    n = I.normal_(np.empty(10000), 3.0, 0.5, rng=0)
    assert abs(n.mean() - 3) < 0.05 and abs(n.std() - 0.5) < 0.05


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: I.calculate_fan_in_and_fan_out((5,)), ValueError, "at least 2"),
        (lambda: I.kaiming_normal_(np.empty((3, 3)), mode="fan"), ValueError, "mode"),
        (lambda: I.kaiming_normal_(np.empty((3, 3)), nonlinearity="gelu"), ValueError, "nonlinearity"),
        (lambda: I.xavier_normal_(np.empty((3, 3)), gain=-1), ValueError, "gain"),
        (lambda: I.geometric_normal_(np.empty((3, 3)), c=-1), ValueError, "c"),
        (lambda: I.orthogonal_(np.empty(5)), ValueError, "2 dimensions"),
        (lambda: I.lecun_normal_(np.empty((3, 3), np.int64)), TypeError, "floating"),
        (lambda: I.lecun_normal_([[1.0]]), TypeError, "w"),
        (lambda: I.lecun_normal_(np.empty((3, 3)), rng="a"), TypeError, "rng"),
        (lambda: I.uniform_(np.empty(3), 1.0, 0.0), ValueError, "b"),
    ],
)
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_read_only_rejected():
    w = np.empty((3, 3))
    w.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        I.xavier_uniform_(w)


def test_cupy_arrays_match_numpy_with_host_generator():
    cp = pytest.importorskip("cupy", reason="CuPy is not installed: CuPy initializers untested here")
    w = cp.empty((30, 20), cp.float32)
    I.xavier_normal_(w, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(cp.asnumpy(w), I.xavier_normal((30, 20), rng=3))
    q = I.orthogonal((20, 30), rng=1, xp=cp, dtype=cp.float64)
    np.testing.assert_allclose(cp.asnumpy(q @ q.T), np.eye(20), atol=1e-6)
