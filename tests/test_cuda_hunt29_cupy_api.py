"""CuPy's array API where it differs from NumPy's and optkern's Python code depends on it: found
after the CuPy stand-in of tools/cuda_emu (a NumPy subclass until then, as permissive as NumPy)
was made as strict as CuPy 14 (see its docstring).

- ``optkern.load`` into a CuPy array went through ``ndarray.set``, which takes a host array of the
  target's own shape into a contiguous target only: a 0-d target got ``np.ascontiguousarray``'s
  1-d array ("Shape mismatch"), a strided view ("Cannot set to non-contiguous array", unnamed,
  after the checks).
- ``SpectralDensity.cdf`` read ``t`` with ``np.asarray``, which CuPy refuses, while
  ``spectral_density`` takes a CuPy ``grid``.

The first test states the CuPy behaviour the stand-in emulates, so that a GPU run shows where the
two drift apart. Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu

cp, _cuda = require_gpu()

import optkern  # noqa: E402
from optkern import hessian  # noqa: E402


def test_cupy_differs_from_numpy_as_the_stand_in_says():
    a = cp.arange(6, dtype=cp.float32)
    assert not isinstance(a, np.ndarray)
    flags = a.flags
    assert flags.c_contiguous and flags.f_contiguous and flags.owndata
    for name in ("writeable", "aligned"):
        assert not hasattr(flags, name), name
    with pytest.raises(TypeError):
        np.asarray(a)
    assert isinstance(a.device, cp.cuda.Device) and a.device.id == 0 and int(a.device) == 0
    with pytest.raises(ValueError):
        a.set(np.zeros(5, np.float32))  # another shape
    with pytest.raises(TypeError):
        a.set(np.zeros(6, np.float64))  # another dtype
    with pytest.raises(ValueError):
        a[...] = np.ones(6, np.float32)  # a host array into a view: refused, as fill refuses it
    a[...] = 2.0
    a[cp.asarray([0, 5])] = np.array([1.0, 3.0], np.float32)  # advanced indexing takes host values
    np.testing.assert_array_equal(a.get(), [1, 2, 2, 2, 2, 3])


def test_load_into_a_0d_cupy_array(tmp_path):
    path = tmp_path / "c.npz"
    optkern.save(path, x=cp.full((), 2.5, dtype=cp.float32), xs=[cp.arange(3.0), cp.full((), 4.0)])
    x = cp.zeros((), dtype=cp.float32)
    xs = [cp.zeros(3), cp.zeros(())]
    optkern.load(path, x=x, xs=xs)
    assert x.shape == () and float(x) == 2.5
    np.testing.assert_array_equal(xs[0].get(), [0.0, 1.0, 2.0])
    assert xs[1].shape == () and float(xs[1]) == 4.0


def test_load_into_strided_and_transposed_cupy_views(tmp_path):
    path = tmp_path / "c.npz"
    want = np.arange(12.0).reshape(3, 4)
    optkern.save(path, every_other=cp.asarray(want.ravel()[::2]), t=cp.asarray(want).T)
    big = cp.full(12, -1.0)
    every_other = big[::2]
    t = cp.zeros((3, 4)).T  # (F-contiguous)
    optkern.load(path, every_other=every_other, t=t)
    np.testing.assert_array_equal(big.get()[::2], want.ravel()[::2])
    np.testing.assert_array_equal(big.get()[1::2], -1.0)  # the elements between are not written
    np.testing.assert_array_equal(t.get(), want.T)


def test_spectral_density_cdf_takes_a_cupy_t():
    rng = np.random.default_rng(5)
    q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    A = (q * np.linspace(1.0, 4.0, 12)) @ q.T
    r = hessian.spectral_density(cp.asarray(A), num_probes=2, steps=6, grid=cp.linspace(0.0, 5.0, 11))
    t = np.array([[0.5, 2.0], [3.0, 9.0]])
    got = r.cdf(cp.asarray(t))
    assert isinstance(got, np.ndarray) and got.shape == t.shape  # host arrays, as the density's
    np.testing.assert_array_equal(got, r.cdf(t))
    np.testing.assert_allclose(r.cdf(cp.asarray(9.0)), 1.0)
