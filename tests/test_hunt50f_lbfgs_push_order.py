"""The L-BFGS push's inner products in their documented order (cpp/lbfgs_blocks.hpp, row_dots): each
returned sum is rebuilt here in NumPy in the kernel's order, bit for bit -- 64-byte lanes (16 float32 /
8 float64) per row product, lane_sum's 128-byte lanes for the new pair's own products, sums in the
array type within each 32768-column sub-block, float64 across sub-blocks and column chunks. The
other tests pin only that the thread count changes no bit; here any change of lanes, tree, tail,
or of a row's sums by its neighbours in a pass (five rows a pass under AVX-512, three in the ymm
form, the last k mod R rows in a shorter one) fails. (Issue 17: 32-byte lanes until the 51st session's
h295; the old order fails here.)"""

import numpy as np
import pytest

from optkern import _backend

SUB, CHUNK = 32768, 1 << 16  # lbfgs_blocks.hpp's kSub; parallel.hpp's kChunk


def _lanes(x, w):
    """Σ x in w lanes (lane l takes x[l], x[l + w], ... in order, in x's dtype), folded in a tree
    (lane l += lane l + w / 2, ...), the tail then added in order: lane_sums.hpp's and row_dots' order."""
    body = (len(x) // w) * w
    acc = np.cumsum(x[:body].reshape(-1, w), axis=0, dtype=x.dtype)[-1] if body else np.zeros(w, x.dtype)
    while w > 1:
        w //= 2
        acc = acc[:w] + acc[w : 2 * w]
    s = acc[0]
    for v in x[body:]:
        s = x.dtype.type(s + v)
    return s


def _push_model(S, Y, g, pg, d, t):
    """out of lbfgs_push_: per row j the 5 products (s_new.y_j, y_new.s_j, y_new.y_j, g.s_j, g.y_j) in
    64-byte lanes, then (y.s, y.y, g.s, g.y) in lane_sum's 128-byte lanes; each per sub-block in the
    array type, added in float64 within its column chunk (from 0.0), the chunks in order."""
    dt = g.dtype
    sn, yn = (dt.type(t) * d).astype(dt), (g - pg).astype(dt)
    pairs = []
    for j in range(len(S)):
        pairs += [(sn, Y[j], 64), (yn, S[j], 64), (yn, Y[j], 64), (g, S[j], 64), (g, Y[j], 64)]
    pairs += [(yn, sn, 128), (yn, yn, 128), (g, sn, 128), (g, yn, 128)]
    out = np.zeros(len(pairs))
    for c in range(0, len(g), CHUNK):
        part = np.zeros(len(pairs))
        for lo in range(c, min(c + CHUNK, len(g)), SUB):
            hi = min(lo + SUB, c + CHUNK, len(g))
            for q, (a, b, nbytes) in enumerate(pairs):
                part[q] += float(_lanes((a[lo:hi] * b[lo:hi]).astype(dt), nbytes // dt.itemsize))
        out += part
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n,k",
    [(1, 1), (7, 2), (15, 3), (16, 4), (17, 5), (1023, 6), (SUB + 5, 7), (CHUNK + SUB + 17, 9), (3 * CHUNK + 1, 11)],
)
def test_push_sums_are_the_documented_order_bit_for_bit(n, k, dtype):
    """k = 1..11: every remainder of five- and three-row passes; n: lanes partly filled, a tail, sub-blocks and
    chunks cut inside the rows."""
    rng = np.random.default_rng(n * 31 + k)
    S = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    g, pg, d = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    want = _push_model(S, Y, g, pg, d, 0.37)
    sn, yn, out = np.empty(n, dtype), np.empty(n, dtype), np.full(5 * k + 4, np.nan)
    _backend.cpu.lbfgs_push_(S, Y, sn, yn, g, pg.copy(), d, 0.37, out)
    np.testing.assert_array_equal(out, want)
