"""Hutchinson / Hutch++ probes are generated and multiplied in bounded blocks.

The whole (n, m) probe block used to be allocated at once (with its product and their
element-wise product: three n x m arrays): 1,000 probes on a 10M-parameter model asked for
240 GB. The probes now stream in blocks of at most ``trace.PROBE_BLOCK_ELEMENTS`` elements.
Results: a run that fits in one block is the computation of before, bit for bit (Hutch++: to
rounding, its basis and projections are native Gram-Schmidt passes since hunt 39h); a streamed
one multiplies narrower blocks, which BLAS's gemm and NumPy's column sums round in another
order (the old results already changed that way with ``num_matvecs``): equal to rounding.
"""

from __future__ import annotations

import importlib
import tracemalloc

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian._probes import rademacher

trace_mod = importlib.import_module("optkern.hessian.trace")  # (hessian.trace: the function)


def _old_probe_block(n, seed, first, count, dtype):
    Z = np.empty((n, count), dtype=dtype)
    for i in range(count):
        Z[:, i] = rademacher(n, seed=seed, index=first + i, dtype=dtype, xp=np)
    return Z


def _old_samples(A, Z):
    # (summed in float64 since hunt 32: a float32 operator's samples were running float32 sums)
    return np.asarray((Z * (A @ Z)).sum(axis=0, dtype=np.float64), dtype=np.float64)


def _old_trace(A, method, m, seed):
    """The estimators as written before the streaming (all probes in one block)."""
    n, dtype = A.shape[0], A.dtype
    if method == "hutchinson":
        samples = _old_samples(A, _old_probe_block(n, seed, 0, m, dtype))
        return float(samples.mean()), samples
    s = m // 3
    Q, _ = np.linalg.qr(A @ _old_probe_block(n, seed, 0, s, dtype))
    t_top = float(np.trace(Q.T @ (A @ np.ascontiguousarray(Q))))
    G = _old_probe_block(n, seed, s, m - 2 * s, dtype)
    samples = _old_samples(A, G - Q @ (Q.T @ G))
    return t_top + float(samples.mean()), samples


def _sym(n, dtype, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return (a + a.T).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method, m", [("hutchinson", 1), ("hutchinson", 57), ("hutch++", 3), ("hutch++", 41)])
def test_one_block_is_the_old_computation_bit_for_bit(dtype, method, m):
    A = _sym(97, dtype)
    want, samples = _old_trace(A, method, m, seed=5)
    got = hessian.trace(A, method, m, seed=5)
    if method == "hutch++":  # (its basis is no longer LAPACK's QR since hunt 39h: equal to rounding)
        rtol = 1e-4 if dtype == np.float32 else 1e-10
        assert got.estimate == pytest.approx(want, rel=rtol)
        np.testing.assert_allclose(got.samples, samples, rtol=rtol, atol=rtol * np.abs(samples).max())
        return
    assert got.estimate == want
    np.testing.assert_array_equal(got.samples, samples)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_streamed_blocks_give_the_same_estimate_to_rounding(monkeypatch, method):
    A = _sym(61, np.float64, seed=1)
    want, samples = _old_trace(A, method, 100, seed=2)
    monkeypatch.setattr(trace_mod, "PROBE_BLOCK_ELEMENTS", 61 * 7)  # blocks of 7 probes
    widths = []
    real = trace_mod._probe_block
    monkeypatch.setattr(trace_mod, "_probe_block", lambda *a: widths.append(a[3]) or real(*a))
    got = hessian.trace(A, method, 100, seed=2)
    streamed = widths if method == "hutchinson" else widths[1:]  # (Hutch++'s sketch: whole, s probes)
    assert max(streamed) == 7 and len(streamed) > 2
    assert got.num_matvecs == 100 and len(got.samples) == len(samples)
    np.testing.assert_allclose(got.samples, samples, rtol=1e-12, atol=1e-12 * np.abs(samples).max())
    assert got.estimate == pytest.approx(want, rel=1e-12)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _sketch_peak(A, s: int) -> int:
    """Peak memory of Hutch++'s sketch alone (s probes, the QR of their products, A Q and Q^T A Q):
    the method needs it whole."""

    def sketch():
        S = _old_probe_block(A.shape[0], 0, 0, s, A.dtype)
        Q, _ = np.linalg.qr(A @ S)
        del S
        np.trace(Q.T @ (A @ np.ascontiguousarray(Q)))

    return _peak_bytes(sketch)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_peak_memory_is_bounded_whatever_the_probe_count(monkeypatch, method):
    n = 400
    A = _sym(n, np.float64, seed=3)
    block = 16 * n  # elements: 16 probes at a time
    monkeypatch.setattr(trace_mod, "PROBE_BLOCK_ELEMENTS", block, raising=False)
    for m in (300, 900):  # (m // 3 < n: not Hutch++'s exact path)
        # the stated bound: a block, its product and their element-wise product (3 blocks, one
        # spare for a temporary), the m samples, and for Hutch++ its sketch
        sketch = _sketch_peak(A, m // 3) if method == "hutch++" else 0
        bound = 4 * block * 8 + 2 * m * 8 + sketch + (1 << 16)
        peak = _peak_bytes(lambda m=m: hessian.trace(A, method, m, seed=0))
        assert peak < bound, (m, peak, bound)
