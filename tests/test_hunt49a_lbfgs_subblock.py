"""The L-BFGS passes in 32768-column sub-blocks (cpp/lbfgs_blocks.hpp, kSub): the direction's
accumulator moved from a 4096-column block on the stack to a 32768-column block in per-thread heap
scratch, so that each history row streams a run 8x longer (issue 17: history 100). What the
sub-block decides is observable in g.d, which is summed per sub-block in a fixed association; the
rest must not change with the thread count or with where the sub-blocks and column chunks cut."""

import numpy as np
import pytest

from optkern import _backend, get_num_threads, set_num_threads

SUB, CHUNK = 32768, 1 << 16  # lbfgs_blocks.hpp's kSub; parallel.hpp's kChunk


def _lane_sum(x):
    """lane_sums.hpp's lane_sum<double>: 16 lanes (lane j takes elements j, j + 16, ... in order),
    folded in a fixed tree, then the tail added in order."""
    w = 16
    body = (len(x) // w) * w
    acc = np.cumsum(x[:body].reshape(-1, w), axis=0)[-1] if body else np.zeros(w)  # (cumsum: in order)
    while w > 1:
        w //= 2
        acc = acc[:w] + acc[w : 2 * w]
    s = float(acc[0])
    for v in x[body:]:
        s += float(v)
    return s


def _gd_model(g, d):
    """g.d as the direction pass sums it: lane sums over each sub-block, added in order within each
    column chunk (from 0.0), the chunks' partials added in chunk order."""
    prod = g.astype(np.float64) * d.astype(np.float64)
    total = 0.0
    for c in range(0, len(g), CHUNK):
        part = 0.0
        for lo in range(c, min(c + CHUNK, len(g)), SUB):
            part += _lane_sum(prod[lo : min(lo + SUB, c + CHUNK, len(g))])
        total += part
    return total


def _history(n, k, dtype, seed):
    rng = np.random.default_rng(seed)
    S = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    g = rng.standard_normal(n).astype(dtype)
    return S, Y, g, list(rng.standard_normal(k)), list(rng.standard_normal(k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [SUB - 1, SUB + 5, CHUNK + SUB + 17, 3 * CHUNK + 3])
def test_direction_sums_g_dot_d_per_32768_column_sub_block(n, dtype):
    """Before: 4096-column sub-blocks, another association of the same sum (other low bits)."""
    S, Y, g, cs, cy = _history(n, 5, dtype, n)
    d, out = np.empty(n, dtype), np.empty(2)
    _backend.cpu.lbfgs_direction_(S, Y, cs, cy, g, -0.7, d, out)
    assert out[0] == _gd_model(g, d)
    assert out[1] == np.max(np.abs(d.astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_passes_are_bitwise_the_same_on_1_2_and_3_threads(dtype):
    """Sub-blocks (32768) and chunks (65536) cut inside the same rows, an odd history (the
    direction's last pass takes one row pair, the push's last pass fewer rows than the others), a
    tail shorter than a sub-block: each thread's scratch holds its own sub-block, whichever thread
    takes which chunk."""
    n, k = 3 * CHUNK + SUB + 1001, 7
    S, Y, g, cs, cy = _history(n, k, dtype, 5)
    pg0, d0 = (np.random.default_rng(6).standard_normal(n).astype(dtype) for _ in range(2))
    runs = []
    old = get_num_threads()
    try:
        for threads in (1, 2, 3):
            set_num_threads(threads)
            sn, yn, pg, out = np.empty(n, dtype), np.empty(n, dtype), pg0.copy(), np.empty(5 * k + 4)
            _backend.cpu.lbfgs_push_(S, Y, sn, yn, g, pg, d0, 0.5, out)
            d, o2 = np.empty(n, dtype), np.empty(2)
            _backend.cpu.lbfgs_direction_(S, Y, cs, cy, g, -1.0, d, o2)
            runs.append((sn.tobytes(), yn.tobytes(), pg.tobytes(), out.tobytes(), d.tobytes(), o2.tobytes()))
    finally:
        set_num_threads(old)
    assert runs[0] == runs[1] == runs[2]
    # and d is the rule's order per element, whatever the sub-block: g_scale g, then per row two fmas
    want = -1.0 * g.astype(np.float64)
    for j in range(k):
        want = want + cy[j] * Y[j].astype(np.float64) + cs[j] * S[j].astype(np.float64)
    assert np.max(np.abs(d - want)) <= (2 * k + 2) * np.finfo(dtype).eps * np.max(np.abs(want)) * 4
