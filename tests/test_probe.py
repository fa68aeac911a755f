"""The bandwidth probe of bench/optim.py (optkern._cpu.probe_rmw_): written[k] += c * read[0]
against float64 references, and its bad-input errors."""

import numpy as np
import pytest

from optkern import _backend

SIZES = [0, 1, 7, 1031, 70001]  # 70001 > one 64K chunk: several chunks, parallel path


@pytest.mark.parametrize("nw", [1, 2, 3, 4])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probe_rmw_adds_c_times_read(dtype, n, nw):
    rng = np.random.default_rng(1000 * n + nw)
    r = rng.standard_normal(n).astype(dtype)
    w0 = [rng.standard_normal(n).astype(dtype) for _ in range(nw)]
    written = [w.copy() for w in w0]
    r_before = r.copy()
    assert _backend.cpu.probe_rmw_(written, [r], 0.5) is None
    np.testing.assert_array_equal(r, r_before)  # the read array is only read
    # exact sum of two floats of the dtype, in float64 (0.5 * r is exact)
    want = [w.astype(np.float64) + 0.5 * r.astype(np.float64) for w in w0]
    for k, (w, e) in enumerate(zip(written, want)):
        assert w.dtype == dtype and w.shape == (n,)
        if dtype == np.float64:
            np.testing.assert_allclose(w, e, rtol=1e-15, atol=0, err_msg=f"written[{k}]")
        else:  # one float32 rounding of the exact value
            err = np.abs(w.astype(np.float64) - e)
            assert np.all(err <= 2.0**-24 * np.abs(e) + 1e-45), f"written[{k}]: max error {err.max(initial=0)}"


def test_probe_rmw_default_c_leaves_values():
    rng = np.random.default_rng(3)
    r = rng.standard_normal(1031)
    w0 = rng.standard_normal(1031)
    w = w0.copy()
    _backend.cpu.probe_rmw_([w], [r])
    np.testing.assert_array_equal(w, w0)


def _arrays(rng, k, n=9, dtype=np.float64):
    return [rng.standard_normal(n).astype(dtype) for _ in range(k)]


def test_probe_rmw_rejects_bad_input_before_writing():
    f = _backend.cpu.probe_rmw_
    rng = np.random.default_rng(4)
    r = rng.standard_normal(9)
    five = _arrays(rng, 5)
    before = [w.copy() for w in five]
    with pytest.raises(ValueError, match=r"^written: expected 1 to 4 arrays"):
        f([], [r], 0.5)
    with pytest.raises(ValueError, match=r"^written: expected 1 to 4 arrays"):
        f(five, [r], 0.5)
    for w, b in zip(five, before):
        np.testing.assert_array_equal(w, b)
    w = _arrays(rng, 1)
    w_before = w[0].copy()
    with pytest.raises(ValueError, match=r"^read: expected exactly 1 array"):
        f(w, [r, rng.standard_normal(9)], 0.5)
    with pytest.raises(ValueError, match=r"^read: expected exactly 1 array"):
        f(w, [], 0.5)
    np.testing.assert_array_equal(w[0], w_before)
    r_copy = r.copy()
    with pytest.raises(ValueError, match=r"^read\[0\] shares memory with written\[0\]"):
        f([r], [r], 0.5)
    buf = rng.standard_normal(20)
    buf_before = buf.copy()
    with pytest.raises(ValueError, match=r"^read\[0\] shares memory with written\[1\]"):
        f([w[0], buf[:9]], [buf[5:14]], 0.5)
    with pytest.raises(ValueError, match=r"^written\[1\] shares memory with written\[0\]"):
        f([buf[:9], buf[8:17]], [r], 0.5)
    np.testing.assert_array_equal(r, r_copy)
    np.testing.assert_array_equal(buf, buf_before)
    np.testing.assert_array_equal(w[0], w_before)
    with pytest.raises(ValueError, match=r"^written\[0\]: expected 9 elements, got 8"):
        f([rng.standard_normal(8)], [r], 0.5)
    with pytest.raises(TypeError, match=r"^written\[0\]: expected float64, got float32"):
        f([np.ones(9, np.float32)], [r], 0.5)
    ro = rng.standard_normal(9)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"^written\[0\]: array is read-only"):
        f([ro], [r], 0.5)


@pytest.mark.parametrize("k", [1, 3, 23])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probe_read_sums_every_element_once(dtype, n, k):
    """Small integers: every partial sum is exact in the dtype, so the sum is exact and shows each
    element counted once (none skipped, none twice)."""
    rng = np.random.default_rng(100 * n + k)
    a = [rng.integers(-8, 9, n).astype(dtype) for _ in range(k)]
    before = [x.copy() for x in a]
    assert _backend.cpu.probe_read(a) == sum(float(x.astype(np.float64).sum()) for x in a)
    for x, b in zip(a, before):
        np.testing.assert_array_equal(x, b)


def test_probe_read_rejects_bad_input():
    f = _backend.cpu.probe_read
    with pytest.raises(ValueError, match=r"^arrays: expected at least 1 array"):
        f([])
    with pytest.raises(ValueError, match=r"^arrays\[1\]: expected 9 elements, got 8"):
        f([np.ones(9), np.ones(8)])
    with pytest.raises(TypeError, match=r"^arrays\[1\]: expected float64, got float32"):
        f([np.ones(9), np.ones(9, np.float32)])
    with pytest.raises(TypeError, match=r"^arrays"):
        f([np.ones(9, np.int32)])
