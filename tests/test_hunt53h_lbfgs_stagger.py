"""Issue 17: L-BFGS's large vectors staggered across the first half of a 4 KiB page (optkern/_aligned.py).

Every array of 4 MiB and up is its own mmap, so a history's rows all started at one offset mod 4 KiB;
they now take successive line offsets 5 lines apart in the first half page, still on 64-byte lines, and
an unpickled, deep-copied or loaded optimizer's arrays are put there too. Placement is the only thing
that changes: the passes' bits and the iterates must not."""

import copy
import pickle

import numpy as np
import pytest

from optkern import _aligned, _backend, get_num_threads, optim, set_num_threads

LINE, PAGE = _aligned.LINE, _aligned.PAGE
BIG = _aligned.STAGGER_FROM // 4 + 3  # float32 elements: just past the size that is staggered


def _offset(a) -> int:
    return a.ctypes.data % PAGE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_arrays_take_distinct_lines_in_the_first_half_page(dtype):
    n = _aligned.STAGGER_FROM // np.dtype(dtype).itemsize
    arrays = [_aligned.empty(n, dtype) for _ in range(PAGE // 2 // LINE)]
    offsets = [_offset(a) for a in arrays]
    assert all(o % LINE == 0 and o < PAGE // 2 for o in offsets)
    assert len(set(offsets)) == len(offsets)  # successive ones: every line of the half page once
    assert all(a.shape == (n,) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable for a in arrays)
    assert all(_aligned.placed(a) for a in arrays)
    small = _aligned.empty(n - 1, dtype)  # below the bound: on a line, wherever in its page
    assert small.ctypes.data % LINE == 0 and small.shape == (n - 1,)


def _at_page(a, offset):
    """A copy of ``a`` starting ``offset`` bytes past a 4 KiB page."""
    buf = np.empty(a.nbytes + PAGE, np.uint8)
    start = (offset - buf.ctypes.data) % PAGE
    out = buf[start : start + a.nbytes].view(a.dtype)
    out[...] = a
    return out


def test_on_line_keeps_placed_arrays_and_moves_the_others():
    src = np.random.default_rng(1).standard_normal(BIG).astype(np.float32)
    for offset, kept in ((0, True), (64, True), (PAGE // 2 - LINE, True), (PAGE // 2, False), (16, False)):
        a = _at_page(src, offset)
        b = _aligned.on_line(a)
        assert (b is a) == kept, offset
        assert _aligned.placed(b)
        np.testing.assert_array_equal(b, src)
    tiny = _at_page(src[:7], PAGE - LINE)  # small: a line is enough
    assert _aligned.on_line(tiny) is tiny


def _passes(S, Y, g, pg0, d, k, place):
    """push then direction on copies placed by ``place(i)`` (byte offset past a page of array i): all results."""
    n, dt = len(g), g.dtype
    arrays = [*S, *Y, g, pg0, d, np.full(n, np.nan, dt), np.full(n, np.nan, dt), np.full(n, np.nan, dt)]
    placed = [_at_page(a, place(i)) for i, a in enumerate(arrays)]
    S, Y, (g, pg, d, sn, yn, dd) = placed[:k], placed[k : 2 * k], placed[2 * k :]
    out = np.full(5 * k + 4, np.nan)
    _backend.cpu.lbfgs_push_(S, Y, sn, yn, g, pg, d, 0.37, out)
    o2 = np.full(2, np.nan)
    _backend.cpu.lbfgs_direction_(S, Y, [0.3 - 0.1 * j for j in range(k)], [-0.6] * k, g, -0.8, dd, o2)
    return [x.tobytes() for x in (out, sn, yn, pg, dd, o2)]


PLACES = {
    "one offset": lambda i: LINE,
    "staggered": lambda i: i * 5 % 32 * LINE,
    "just below g": lambda i: (16 - (i + 1) * LINE) % PAGE,  # every row a few lines under g (16: NumPy's)
    "whole page": lambda i: i * 37 * 16 % PAGE,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 3), (1023, 5), (32768 + 5, 4), (2 * 65536 + 17, 7)])
def test_pass_bits_do_not_depend_on_the_page_offsets(n, k, dtype):
    """Rows and vectors at several offset patterns mod 4 KiB (the staggered one among them), 1 and 2
    threads: the same bits as every array at a page start; the direction equals its float64 sum."""
    rng = np.random.default_rng(n + 31 * k)
    S = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    g, pg0, d = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    old = get_num_threads()
    try:
        set_num_threads(1)
        want = _passes(S, Y, g, pg0, d, k, lambda i: 0)
        got = {}
        for threads in (1, 2):
            set_num_threads(threads)
            for name, place in PLACES.items():
                got[threads, name] = _passes(S, Y, g, pg0, d, k, place)
    finally:
        set_num_threads(old)
    for key, results in got.items():
        assert results == want, key
    ref = -0.8 * g.astype(np.float64)
    for j in range(k):
        ref += -0.6 * Y[j].astype(np.float64) + (0.3 - 0.1 * j) * S[j].astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(np.frombuffer(want[4], dtype), ref, rtol=tol, atol=tol * (k + 1))
    np.testing.assert_array_equal(np.frombuffer(want[2], dtype), g - pg0)  # y_new = g - prev_g exactly


def _rosen_closure(x, dtype):
    def closure():
        z = x.astype(np.float64)
        g = np.zeros_like(z)
        g[:-1] = -400.0 * z[:-1] * (z[1:] - z[:-1] ** 2) - 2 * (1 - z[:-1])
        g[1:] += 200.0 * (z[1:] - z[:-1] ** 2)
        return float(np.sum(100.0 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2)), g.astype(dtype)

    return closure


def _vectors(opt):
    return opt._S + opt._Y + [opt._d, opt._prev_g] + list(opt._spare or ())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_staggered_lbfgs_iterates_equal_the_line_placed_ones(dtype, line_search, threads, monkeypatch):
    """The same problem from the same start, staggered (large vectors) vs on lines only: the same
    iterates bit for bit, through a full history that recycles its rows."""
    x0 = np.random.default_rng(3).uniform(-1.2, 1.2, BIG).astype(dtype)
    runs = []
    old = get_num_threads()
    try:
        set_num_threads(threads)
        for stagger_from in (_aligned.STAGGER_FROM, 1 << 62):
            monkeypatch.setattr(_aligned, "STAGGER_FROM", stagger_from)
            x = x0.copy()
            opt = optim.LBFGS([x], lr=0.5, max_iter=4, history_size=3, line_search_fn=line_search)
            for _ in range(3):
                opt.step(_rosen_closure(x, dtype))
            runs.append((x, opt))
    finally:
        set_num_threads(old)
    (xa, a), (xb, b) = runs
    assert len(a._S) == 3 and all(_aligned.placed(v) for v in _vectors(a))
    assert len({_offset(v) for v in _vectors(a)}) == len(_vectors(a))  # (fewer than 32 allocated: distinct)
    np.testing.assert_array_equal(xa, xb)
    for u, v in zip(_vectors(a), _vectors(b)):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy", "load"])
def test_a_copied_or_loaded_lbfgs_is_staggered(how):
    """NumPy's fresh arrays (an unpickled, deep-copied or loaded optimizer's) are put where _aligned
    places them (``placed``: on a 64-byte line, and staggered), the spare pair too; a shallow copy
    still shares the original's; the same values, and the next step is the same."""
    rng = np.random.default_rng(9)
    a = rng.uniform(0.5, 2.0, BIG).astype(np.float32)
    x = rng.standard_normal(BIG).astype(np.float32)
    opt = optim.LBFGS([x], lr=0.01, max_iter=1, history_size=3, tolerance_grad=0, tolerance_change=0)
    for _ in range(5):  # the history full: the spare pair is set
        opt.step(lambda: (0.0, a * x))
    if how == "load":
        y = x.copy()
        other = optim.LBFGS([y], lr=0.01, max_iter=1, history_size=3, tolerance_grad=0, tolerance_change=0)
        other.load_state_dict(opt.state_dict())
    else:
        copies = {"pickle": lambda o: pickle.loads(pickle.dumps(o)), "deepcopy": copy.deepcopy, "copy": copy.copy}
        other = copies[how](opt)
        y = other.param_groups[0]["params"][0]
    mine = opt._S + opt._Y + [opt._d, opt._prev_g]
    theirs = other._S + other._Y + [other._d, other._prev_g]
    assert len(theirs) == 8 and all(_aligned.placed(v) for v in theirs + list(other._spare or ()))
    for u, v in zip(mine, theirs):
        np.testing.assert_array_equal(u, v)
        assert (u is v) == (how == "copy")
    if how != "copy":
        opt.step(lambda: (0.0, a * x))
        other.step(lambda: (0.0, a * y))
        np.testing.assert_array_equal(x, y)
