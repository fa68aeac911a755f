"""optkern._cuda paths that need no GPU: import, device count, the contract's
names, and argument checking with stand-in CuPy arrays (objects that look
like cupy.ndarray to the checks but whose pointers are never launched).
The kernels themselves are tested in test_cuda_optim.py on a GPU."""

from __future__ import annotations

import os

import numpy as np
import pytest

import optkern
from optkern import _backend

try:
    _cuda = _backend.cuda_module()
except RuntimeError as e:  # built without CUDA, or cannot load
    pytest.skip(f"optkern._cuda is not available: {e}", allow_module_level=True)

HAVE_DEVICE = _cuda.device_count() > 0

CONTRACT = [
    "sgd_",
    "adagrad_",
    "rmsprop_",
    "adadelta_",
    "adam_",
    "nadam_",
    "adagrad_norm_",
    "grad_norm",
    "grad_sq_norm",
    "clip_scale_",
    "clamp_",
    "all_finite",
]


def test_device_count_is_a_count():
    n = _cuda.device_count()
    assert isinstance(n, int) and n >= 0
    assert optkern.info()["cuda_built"] is True
    assert optkern.info()["cuda_devices"] == n
    if not os.path.exists("/dev/nvidia0") and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        assert n == 0


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_functions_exist_with_docstrings(name):
    fn = getattr(_cuda, name)
    assert fn.__doc__ and len(fn.__doc__.splitlines()[-1]) > 20


def test_numpy_arrays_are_rejected_with_the_argument_named():
    p = [np.ones(3, np.float32)]
    with pytest.raises(TypeError, match=r"params\[0\]: expected a cupy.ndarray, got numpy.ndarray"):
        _cuda.sgd_(p, p, None, 0.1, 0.0, 0.0, 0.0, False, False, False, 1)
    with pytest.raises(TypeError, match=r"arrays\[0\]: expected a cupy.ndarray"):
        _cuda.clamp_(p, 1.0)
    with pytest.raises(TypeError, match="arrays: expected a list of arrays, got float"):
        _cuda.clamp_(3.0, 1.0)
    with pytest.raises(TypeError, match="arrays: expected a list of arrays, got numpy.ndarray"):
        _cuda.clamp_(p[0], 1.0)  # a bare array is not iterated element by element


def test_empty_lists_need_no_cupy_and_no_device():
    assert _cuda.sgd_([], [], None, 0.1, 0.0, 0.0, 0.0, False, False, False, 1) is None
    assert _cuda.adam_([], [], [], [], None, 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False, 1) is None
    assert _cuda.clamp_([], 1.0) is None


def test_scalar_arguments_are_checked_first():
    with pytest.raises(ValueError, match="norm_type"):
        _cuda.grad_norm([], 0.5, None)
    with pytest.raises(ValueError, match="norm_type"):
        _cuda.grad_norm([], float("nan"), None)
    with pytest.raises(ValueError, match="clip_value"):
        _cuda.clamp_([], -1.0)


# ---- stand-in CuPy arrays -----------------------------------------------------
# The checks read `size`, `dtype`, `_c_contiguous` and `data.ptr` /
# `data.device_id`, as on cupy.ndarray. Pointers are fake, so these tests only
# run where no device is visible (a call that passes every check must fail at
# the device lookup, never launch).


class _Mem:
    def __init__(self, ptr, device_id):
        self.ptr = ptr
        self.device_id = device_id


class ndarray:  # noqa: N801 - named like CuPy's so the module/name check accepts it
    __module__ = "cupy._stand_in"

    def __init__(self, ptr, size, dtype=np.float32, contiguous=True, device=0):
        self.size = size
        self.dtype = np.dtype(dtype)
        self._c_contiguous = contiguous
        self.data = _Mem(ptr, device)


_next = [1 << 32]


def fake(size, dtype=np.float32, **kw):
    """A stand-in at a fresh 256-byte aligned address."""
    ptr = _next[0]
    _next[0] += (size * np.dtype(dtype).itemsize + 511) // 256 * 256
    return ndarray(ptr, size, dtype, **kw)


# tools/cuda_emu (which sets OKEMU_BUILD) is a device, but in this process's memory: a stand-in that got
# past a check would crash the test there, not corrupt a GPU's context, so the checks run there too.
EMULATED = bool(os.environ.get("OKEMU_BUILD"))
need_no_device = pytest.mark.skipif(
    HAVE_DEVICE and not EMULATED, reason="stand-in pointers must never reach a real device"
)


def _adam(p, g, m, v, vmax=None, counters=None, lr_buffer=None):
    args = (p, g, m, v, vmax, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False, 1)
    if counters is None and lr_buffer is None:
        return _cuda.adam_(*args)
    return _cuda.adam_capturable(*args, counters, lr_buffer)


def _lists(sizes, dtype=np.float32):
    return [[fake(n, dtype) for n in sizes] for _ in range(4)]


@need_no_device
def test_stand_in_is_recognised_as_cupy():
    assert _backend.is_cupy(fake(3))
    with pytest.raises(
        TypeError,
        match=r"params\[1\]: is a numpy array but grads\[0\] is a cupy array|"
        r"params\[1\]: is a numpy array",
    ):
        _backend.backend(("grads", [fake(3)]), ("params", [fake(3), np.ones(3, np.float32)]))


@need_no_device
def test_bare_device_array_is_not_a_list():
    with pytest.raises(TypeError, match=r"grads: expected a list of arrays, got cupy.ndarray"):
        _adam([fake(3)], fake(3), [fake(3)], [fake(3)])


@pytest.mark.skipif(HAVE_DEVICE, reason="a valid call launches where there is a device, the emulated one included")
def test_valid_call_fails_cleanly_without_a_device():
    p, g, m, v = _lists([5, 0, 4097])
    with pytest.raises(RuntimeError, match="CUDA|CuPy"):
        _adam(p, g, m, v)


@need_no_device
def test_dtype_mismatch_names_list_and_index():
    p, g, m, v = _lists([5, 7])
    g[1] = fake(7, np.float64)
    with pytest.raises(TypeError, match=r"grads\[1\]: expected float32, got float64"):
        _adam(p, g, m, v)
    p2, g2, m2, v2 = _lists([5, 7], np.float64)
    v2[0] = fake(5, np.float32)
    with pytest.raises(TypeError, match=r"exp_avg_sqs\[0\]: expected float64, got float32"):
        _adam(p2, g2, m2, v2)
    with pytest.raises(TypeError, match=r"params\[0\]: expected float32 or float64, got float16"):
        _adam([fake(3, np.float16)], [fake(3, np.float16)], [fake(3, np.float16)], [fake(3, np.float16)])


@need_no_device
def test_sizes_counts_contiguity_alignment():
    p, g, m, v = _lists([5, 7])
    with pytest.raises(ValueError, match=r"exp_avgs\[1\]: expected 7 elements, got 8"):
        _adam(p, g, [m[0], fake(8)], v)
    with pytest.raises(ValueError, match=r"grads: expected 2 arrays, got 1"):
        _adam(p, g[:1], m, v)
    with pytest.raises(ValueError, match=r"grads\[0\]: array must be C-contiguous"):
        _adam(p, [fake(5, contiguous=False), g[1]], m, v)
    with pytest.raises(ValueError, match=r"params\[1\]: array data is misaligned"):
        _adam([p[0], ndarray(p[1].data.ptr + 2, 7)], g, m, v)


@need_no_device
def test_arrays_on_two_devices():
    p, g, m, v = _lists([5, 7])
    m[1] = fake(7, device=1)
    with pytest.raises(ValueError, match=r"exp_avgs\[1\]: is on device 1 but other arrays are on device 0"):
        _adam(p, g, m, v)


@need_no_device
def test_aliasing_is_rejected():
    p, g, m, v = _lists([5, 7])
    with pytest.raises(ValueError, match="shares memory"):
        _adam(p, p, m, v)  # params passed as grads
    with pytest.raises(
        ValueError,
        match=r"exp_avg_sqs\[1\] shares memory with exp_avgs\[1\]|"
        r"exp_avgs\[1\] shares memory with exp_avg_sqs\[1\]",
    ):
        _adam(p, g, m, [v[0], m[1]])
    # overlapping views of one allocation: the second starts inside the first
    inside = ndarray(p[0].data.ptr + 8, 7)
    with pytest.raises(ValueError, match="shares memory"):
        _adam([p[0], inside], g, m, v)
    # two read-only lists may share memory; a read array may not overlap a written one
    with pytest.raises(ValueError, match="shares memory"):
        _cuda.clip_scale_([p[0]], 1.0, ndarray(p[0].data.ptr, 1, np.float64))


@need_no_device
def test_device_buffers_are_checked():
    p, g, m, v = _lists([5])
    with pytest.raises(ValueError, match=r"counters: expected 1 element, got 2"):
        _adam(p, g, m, v, counters=fake(2, np.float64))
    with pytest.raises(TypeError, match=r"counters: expected float64, got float32"):
        _adam(p, g, m, v, counters=fake(1, np.float32))
    with pytest.raises(ValueError, match=r"lr_buffer: expected 1 element, got 3"):
        _adam(p, g, m, v, lr_buffer=fake(3, np.float64))
    with pytest.raises(TypeError, match=r"counters: expected a cupy.ndarray, got numpy.ndarray"):
        _adam(p, g, m, v, counters=np.zeros(1))
    with pytest.raises(ValueError, match=r"counters: expected 2 elements, got 1"):  # NAdam: step, mu_product
        _cuda.nadam_capturable(
            p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 4e-3, False, False, False, False, 1, 1.0, fake(1, np.float64), None
        )
    with pytest.raises(TypeError, match=r"out: expected a cupy.ndarray, got numpy.ndarray"):
        _cuda.grad_norm(p, 2.0, np.zeros(1))
    with pytest.raises(ValueError, match=r"b_sq: expected 1 element, got 2"):
        _cuda.adagrad_norm_(p, g, fake(2, np.float64), 0.1, 0.0, False)
    with pytest.raises(TypeError, match=r"sums: expected a list of arrays, got None"):
        _cuda.adagrad_(p, g, None, 0.1, 0.0, 0.0, 1e-10, False, False, 1)


# ---- CuPy helpers of _backend (pure NumPy paths) ---------------------------------


def test_scalar_buffer_and_asarray_like_on_numpy():
    like = np.ones(4, np.float32)
    b = _backend.scalar_buffer(like, 2.5)
    assert isinstance(b, np.ndarray) and b.dtype == np.float64 and b.shape == (1,) and b[0] == 2.5
    x = _backend.asarray_like([1, 2, 3, 4], like)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(_backend.to_numpy(x), [1, 2, 3, 4])


def test_on_array_device_selects_the_first_cupy_arguments_device(monkeypatch):
    """Outputs are allocated (CuPy: on the current device) where the inputs live."""
    import contextlib
    import types

    from optkern import _backend

    class ndarray:  # noqa: N801 - looks like CuPy's to _backend.is_cupy
        def __init__(self, dev):
            self.device = types.SimpleNamespace(id=dev)

    ndarray.__module__ = "cupy._fake"
    entered = []

    @contextlib.contextmanager
    def device_of(a):
        entered.append(a.device.id if _backend.is_cupy(a) else None)
        yield

    monkeypatch.setattr(_backend, "_device_of", device_of)
    f = _backend.on_array_device(lambda *a, **k: entered[-1] if entered else "none")
    assert f("kind", ndarray(3), ndarray(1)) == 3  # first CuPy argument, not the first argument
    assert f([ndarray(2)], like=None) == 2  # a list of arrays (optimizer-style)
    assert f(1.0, like=ndarray(5)) == 5  # keyword arguments too
    entered.clear()
    assert f(np.ones(2), [np.ones(1)]) == "none" and entered == []  # NumPy: no device switch
