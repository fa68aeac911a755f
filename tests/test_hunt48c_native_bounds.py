"""optkern._cpu's own checks of sizes and counts, called directly (the Python layer checks some of
them first; the native module is public too, and the CUDA module shares the layout checks):

- the norms' layouts given as sizes (N * C * S, rows * group_channels * spatial, rows * M) were
  multiplied in int64 unchecked: a product past 2**63 wrapped, and one that wrapped onto x's size
  passed -- channel_stats(N=2, C=2, S=2**62 + 1) on 4 elements segfaulted, row_norm_forward raised
  std::length_error's "cannot create std::vector larger than max_size()" naming nothing;
- set_num_threads took any count >= 1: 100000 threads, and the next kernel segfaulted (OpenMP makes
  the team there); the Python wrapper's bound (threads.MAX_THREADS) is now the module's;
- chunk_threads counted its chunks into memory: sizes [2**62] hung the call;
- spans_clear cast its pointers one by one: a str, None, a float or an int past int64 raised
  pybind11's "Unable to cast" RuntimeError;
- pool_restore passed anything to NumPy, whose refusal ("Capsule must be named ...") named nothing."""

import numpy as np
import pytest

from optkern import _cpu, threads

BIG = 2**62 + 1  # x 4 = 2**64 + 4, which wraps to 4


def _named(kind, start, fn, *args):
    with pytest.raises(kind) as e:
        fn(*args)
    assert str(e.value).startswith(start), str(e.value)


def test_channel_layout_past_int64_is_refused():
    x = np.ones(4, np.float32)
    outs = [np.full(2, 7.0, np.float32) for _ in range(3)]
    for N, C, S in [(2, 2, BIG), (BIG, 2, 2), (0, BIG, 4)]:
        _named(ValueError, "x: expected N * C * S = ", _cpu.channel_stats, x, *outs, N, C, S, 1e-5)
    assert all((o == 7.0).all() for o in outs)
    _cpu.channel_stats(x, *outs, 1, 2, 2, 1e-5)  # (the same arrays, a layout that fits)
    np.testing.assert_allclose(outs[0], [1.0, 1.0])


def test_row_layout_past_int64_is_refused():
    x = np.ones(4, np.float32)
    out, mean, rstd = np.full(4, 7.0, np.float32), np.full(2, 7.0, np.float32), np.full(2, 7.0, np.float32)
    for rows, groups, cg, s in [(2, 1, BIG, 2), (2, 2, BIG, 2), (0, 1, BIG, 4)]:
        args = (x, None, None, out, mean[:rows], rstd[:rows], rows, groups, cg, s, 1e-5, False)
        _named(ValueError, "x: expected rows * group_channels * spatial = ", _cpu.row_norm_forward, *args)
    assert (out == 7.0).all() and (mean == 7.0).all() and (rstd == 7.0).all()


def test_weight_norm_rows_past_int64_are_refused():
    v = np.ones(4, np.float32)
    g, out, norm = np.ones(4, np.float32), np.full(4, 7.0, np.float32), np.full(4, 7.0, np.float32)
    _named(ValueError, "v: expected rows * M = ", _cpu.weight_norm_forward, v, g, out, norm, 4, BIG)
    _named(ValueError, "v: expected rows * M = 3 elements", _cpu.weight_norm_forward, v, g, out, norm, 3, 1)
    _named(ValueError, "v: ", _cpu.weight_norm_forward, v, g, out, norm, 4, 0)
    assert (out == 7.0).all() and (norm == 7.0).all()


def test_set_num_threads_bound_is_the_python_one():
    before = _cpu.get_num_threads()
    try:
        for n in (threads.MAX_THREADS + 1, 100_000, 2**31 - 1):
            _named(ValueError, "n: must be in [1, ", _cpu.set_num_threads, n)
        assert _cpu.get_num_threads() == before
        _cpu.set_num_threads(threads.MAX_THREADS)  # (taken; no region runs before it is put back)
        assert _cpu.get_num_threads() == threads.MAX_THREADS
    finally:
        _cpu.set_num_threads(before)


def test_chunk_threads_counts_are_bounded():
    _named(ValueError, "sizes: at most ", _cpu.chunk_threads, [2**62, 2**62], 10)
    _named(ValueError, "sizes: at most ", _cpu.chunk_threads, [2**37], 10)
    assert len(_cpu.chunk_threads([2**36], 0)) == 2**20  # the bound itself


@pytest.mark.parametrize(
    ("ptr", "kind"),
    [("a", TypeError), (None, TypeError), (8.0, TypeError), (True, TypeError), (2**70, ValueError), (-8, ValueError)],
)
def test_spans_clear_pointers_are_named(ptr, kind):
    z = np.zeros(0, np.int64)
    _named(kind, "ptrs[1]: ", _cpu.spans_clear, [8, ptr], np.array([8, 8]), np.array([8, 8]), z, z)
    _named(ValueError, "ptrs[0]: ", _cpu.spans_clear, [2**63 - 8], np.array([16]), np.array([8]), z, z)
    assert _cpu.spans_clear([8, 2**63 - 16], np.array([8, 8]), np.array([8, 8]), z, z)


@pytest.mark.parametrize("prev", [None, 3, "mem_handler", (1, 2)])
def test_pool_restore_names_its_argument(prev):
    _named(TypeError, "prev: expected the handler capsule pool_install returned", _cpu.pool_restore, prev)
    _cpu.pool_restore(_cpu.pool_install())  # (the handler NumPy had: put back as it was)
