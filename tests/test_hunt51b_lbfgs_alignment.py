"""Issue 17: L-BFGS keeps its history rows and vectors on 64-byte cache lines (optkern/_aligned.py).

NumPy puts large arrays 16 bytes past a line, where the push's vector loads straddle two lines (the
standalone copy of the kernel, which read 64-byte-aligned arrays, ran 15-20 points of the read probe
faster than the module fed NumPy's arrays). The kernels' sums must not depend on where the arrays
start -- only the optimizer's placement changes -- so the bits are pinned here across placements."""

import numpy as np
import pytest

from optkern import _aligned, _backend, get_num_threads, optim, set_num_threads

LINE = 64


def _on_line(a) -> bool:
    return a.ctypes.data % LINE == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 1023, (1 << 20) + 3])  # the last: 4 MiB and up, malloc's mmap
def test_empty_and_copy_start_on_a_line(n, dtype):
    a = _aligned.empty(n, dtype)
    assert a.shape == (n,) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert n == 0 or _on_line(a)
    src = np.random.default_rng(n).standard_normal(n).astype(dtype)
    c = _aligned.copy(src)
    assert c.dtype == dtype and (n == 0 or _on_line(c))
    np.testing.assert_array_equal(c, src)
    if n:
        c[0] += 1
        assert c[0] != src[0]  # a copy, not a view of src


def _at(a, offset_bytes):
    """A copy of ``a`` starting ``offset_bytes`` past a 64-byte line."""
    buf = np.empty(a.nbytes + 2 * LINE, np.uint8)
    start = -buf.ctypes.data % LINE + offset_bytes
    out = buf[start : start + a.nbytes].view(a.dtype)
    out[...] = a
    return out


def _passes(S, Y, g, pg0, d, offset, k):
    """push then direction on copies of every array placed ``offset`` bytes past a line: all results."""
    n, dt = len(g), g.dtype
    S, Y = [_at(s, offset) for s in S], [_at(y, offset) for y in Y]
    g, pg, d = _at(g, offset), _at(pg0, offset), _at(d, offset)
    sn, yn = _at(np.full(n, np.nan, dt), offset), _at(np.full(n, np.nan, dt), offset)
    out = np.full(5 * k + 4, np.nan)
    _backend.cpu.lbfgs_push_(S, Y, sn, yn, g, pg, d, 0.37, out)
    dd, o2 = _at(np.full(n, np.nan, dt), offset), np.full(2, np.nan)
    _backend.cpu.lbfgs_direction_(S, Y, [0.3 - 0.1 * j for j in range(k)], [-0.6] * k, g, -0.8, dd, o2)
    return [x.tobytes() for x in (out, sn, yn, pg, dd, o2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 3), (1023, 5), (32768 + 5, 4), (2 * 65536 + 17, 6)])
def test_pass_bits_do_not_depend_on_placement_or_threads(n, k, dtype):
    """Every offset past a line an element can start at (16: NumPy's large arrays), 1 and 2 threads:
    the same bits as the line-aligned placement L-BFGS uses."""
    rng = np.random.default_rng(n * 13 + k)
    S = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    g, pg0, d = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    size = np.dtype(dtype).itemsize
    old = get_num_threads()
    try:
        set_num_threads(1)
        want = _passes(S, Y, g, pg0, d, 0, k)
        got = {}
        for threads in (1, 2):
            set_num_threads(threads)
            for offset in range(0, LINE, size):
                got[threads, offset] = _passes(S, Y, g, pg0, d, offset, k)
    finally:
        set_num_threads(old)
    for key, results in got.items():
        assert results == want, key
    # and the values are the float64 products (the pair's y_new = g - prev_g, exactly)
    yn = np.frombuffer(want[2], dtype)
    np.testing.assert_array_equal(yn, g - pg0)
    ref = [float(np.dot(dtype(0.37) * d.astype(np.float64), Y[0].astype(np.float64)))]
    tol = 1e-4 if dtype == np.float32 else 1e-11
    assert np.frombuffer(want[0])[0] == pytest.approx(ref[0], rel=tol, abs=tol * np.sqrt(n))


def _rosen(x):
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _rosen_grad(x):
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lbfgs_buffers_start_on_a_line_and_after_a_load(dtype):
    """The rows, d, prev_g and a gathered flat gradient (several params) are line-aligned: fresh, after
    history_size pairs recycle the buffers, and in an optimizer that loaded the state dict."""
    rng = np.random.default_rng(5)
    parts = [rng.uniform(-1.5, 1.5, 7).astype(dtype), rng.uniform(-1.5, 1.5, (4, 254)).astype(dtype)]
    opt = optim.LBFGS(parts, lr=0.1, max_iter=6, history_size=3)
    seen = []

    def closure():
        x = np.concatenate([p.ravel() for p in parts]).astype(np.float64)
        g = _rosen_grad(x).astype(dtype)
        return _rosen(x), [g[:7].copy(), g[7:].reshape(4, 254).copy()]

    flat = opt._evaluate

    def spy(closure, copy):  # the flat gradient the kernels read
        r = flat(closure, copy)
        seen.append(r[1])
        return r

    opt._evaluate = spy
    for _ in range(3):
        opt.step(closure)
    assert len(opt._S) == 3  # full: the oldest pair's buffers held later pairs
    vecs = opt._S + opt._Y + [opt._d, opt._prev_g]
    assert seen and all(_on_line(v) for v in vecs + seen)
    loaded = optim.LBFGS([p.copy() for p in parts], max_iter=1)
    loaded.load_state_dict(opt.state_dict())
    assert len(loaded._S) == 3
    assert all(_on_line(v) for v in loaded._S + loaded._Y + [loaded._d, loaded._prev_g])
    for a, b in zip(opt._S + opt._Y, loaded._S + loaded._Y):
        np.testing.assert_array_equal(a, b)
