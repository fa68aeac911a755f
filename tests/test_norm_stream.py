"""Large outputs are written with non-temporal stores (cpp/norm_cpu.hpp
stream_row). The streamed path must give the same bits as the plain one:
every normalization's forward and backward runs twice, once with the
threshold lowered to 0 bytes (everything streamed), on odd sizes and on
arrays whose data start is not 16-byte aligned (the scalar head and tail).
Also the backward functions' ``out=`` (the dx buffer a training loop reuses).
"""

import numpy as np
import pytest

from optkern import _cpu, norm


def _misaligned(a):
    """A C-contiguous copy of ``a`` whose data start is one element past an aligned address."""
    buf = np.empty(a.size + 1, a.dtype)
    out = buf[1:].reshape(a.shape)
    out[...] = a
    return out


def _cases(dtype, shape, misaligned):
    """Zero-argument calls, each returning a forward output and its backward's gradients."""
    rng = np.random.default_rng(sum(shape))
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    if misaligned:
        x, dy = _misaligned(x), _misaligned(dy)
    C = shape[1]
    w, b = (1 + 0.1 * rng.standard_normal(C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    wl, bl = (1 + 0.1 * rng.standard_normal(shape[-1])).astype(dtype), rng.standard_normal(shape[-1]).astype(dtype)

    def out():
        return _misaligned(np.zeros(shape, dtype)) if misaligned else None

    def layer():
        y, s = norm.layer_norm(x, shape[-1:], wl, bl, out=out())
        return (y,) + tuple(norm.layer_norm_backward(dy, x, wl, s))

    def rms():
        y, s = norm.rms_norm(x, shape[-1:], wl, out=out())
        return (y,) + tuple(norm.rms_norm_backward(dy, x, wl, s))

    def group():
        y, s = norm.group_norm(x, 3 if C % 3 == 0 else 1, w, b, out=out())
        return (y,) + tuple(norm.group_norm_backward(dy, x, w, s))

    def instance():
        y, s = norm.instance_norm(x, w, b)
        return (y,) + tuple(norm.instance_norm_backward(dy, x, w, s))

    def batch():
        y, s = norm.batch_norm(x, w, b, training=True)
        return (y,) + tuple(norm.batch_norm_backward(dy, x, w, s))

    return [layer, rms, group, batch] + ([instance] if len(shape) > 2 else [])  # (N, C): no spatial axis


def _run_all(dtype, shape, misaligned, threshold):
    old = _cpu._set_stream_bytes(threshold)
    try:
        return [[np.array(o) for o in f() if o is not None] for f in _cases(dtype, shape, misaligned)]
    finally:
        _cpu._set_stream_bytes(old)


@pytest.mark.parametrize("misaligned", [False, True])
@pytest.mark.parametrize("shape", [(1, 7, 3), (5, 3, 77), (2, 9, 1031), (64, 6, 2), (33, 1027)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_outputs_are_bitwise_equal(dtype, shape, misaligned):
    plain = _run_all(dtype, shape, misaligned, 1 << 62)
    streamed = _run_all(dtype, shape, misaligned, 0)
    for p, s in zip(plain, streamed):
        assert len(p) == len(s) >= 2
        for a, b in zip(p, s):
            assert np.array_equal(a, b)


def test_default_threshold_streams_only_large_outputs():
    old = _cpu._set_stream_bytes(16 << 20)
    assert _cpu._set_stream_bytes(old) == 16 << 20


def _backward_calls(dtype):
    """(name, backward(out) -> dx, ...) pairs with their inputs fixed."""
    rng = np.random.default_rng(7)
    x = (1 + rng.standard_normal((4, 6, 33))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    w = (1 + 0.1 * rng.standard_normal(6)).astype(dtype)
    wl = (1 + 0.1 * rng.standard_normal(33)).astype(dtype)
    _, sb = norm.batch_norm(x, w, w, training=True)
    _, sl = norm.layer_norm(x, (33,), wl, wl)
    _, sr = norm.rms_norm(x, (33,), wl)
    _, sg = norm.group_norm(x, 3, w, w)
    _, si = norm.instance_norm(x, w, w)
    return x, [
        ("batch", lambda out: norm.batch_norm_backward(dy, x, w, sb, out=out)),
        ("layer", lambda out: norm.layer_norm_backward(dy, x, wl, sl, out=out)),
        ("rms", lambda out: norm.rms_norm_backward(dy, x, wl, sr, out=out)),
        ("group", lambda out: norm.group_norm_backward(dy, x, w, sg, out=out)),
        ("instance", lambda out: norm.instance_norm_backward(dy, x, w, si, out=out)),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_out_is_written_and_returned(dtype):
    x, calls = _backward_calls(dtype)
    for name, f in calls:
        want = f(None)
        out = np.full_like(x, np.nan)
        got = f(out)
        assert got[0] is out, name
        assert np.array_equal(out, want[0]), name  # every element written, same bits
        for a, b in zip(got[1:], want[1:]):
            assert np.array_equal(a, b), name


def test_backward_out_is_checked():
    x, calls = _backward_calls(np.float32)
    for _name, f in calls:
        with pytest.raises(ValueError, match=r"^out: expected shape"):
            f(np.empty((4, 6, 32), np.float32))
        with pytest.raises(TypeError, match=r"^out: expected float32"):
            f(np.empty(x.shape, np.float64))
        with pytest.raises(ValueError, match=r"^out: array must be C-contiguous"):
            f(np.empty(x.shape[::-1], np.float32).T)
        with pytest.raises(ValueError, match=r"^out shares memory with x"):
            f(x)
