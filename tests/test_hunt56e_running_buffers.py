"""Running-statistics buffers that the kernels refuse are refused before anything is written (hunt 56e).

Instance norm with running buffers writes y (the caller's ``out``) before its running update, the
native call that checked a buffer's alignment: a misaligned (but C-contiguous, writable) buffer was
refused only after ``out`` held the normalized values. The buffers are now checked with the others
(shape, dtype, writable), before any kernel runs; eval mode, which only reads copies of them, still
takes them.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.norm as N


def _misaligned(values, dtype):
    """A C-contiguous, writable array of ``values`` whose data is 1 byte off its element size."""
    dt = np.dtype(dtype)
    raw = np.zeros(len(values) * dt.itemsize + 1, np.uint8)
    a = np.ndarray((len(values),), dt, raw.data, 1)
    a[...] = values
    assert a.flags.c_contiguous and a.flags.writeable and not a.flags.aligned
    return a


FORWARDS = {
    "instance_norm": lambda x, rm, rv, out: N.instance_norm(x, None, None, rm, rv, out=out),
    "batch_norm": lambda x, rm, rv, out: N.batch_norm(x, None, None, rm, rv, out=out),
}


@pytest.mark.parametrize("offset", [0.0, 1e4], ids=["near", "far"])  # (far rows: instance norm's row kernel)
@pytest.mark.parametrize("which", ["running_mean", "running_var"])
@pytest.mark.parametrize("fn", sorted(FORWARDS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_running_buffer_is_refused_before_out_is_written(fn, which, offset, dtype):
    rng = np.random.default_rng(5601)
    x = (offset + rng.standard_normal((4, 3, 5))).astype(dtype)
    bufs = {"running_mean": np.zeros(3, dtype), "running_var": np.ones(3, dtype)}
    bufs[which] = _misaligned(bufs[which], dtype)
    before = {k: v.copy() for k, v in bufs.items()}
    out = np.full(x.shape, 7, dtype)
    with pytest.raises(ValueError, match=f"^{which}: array data is misaligned"):
        FORWARDS[fn](x, bufs["running_mean"], bufs["running_var"], out)
    assert (out == 7).all()
    for k in bufs:
        np.testing.assert_array_equal(bufs[k], before[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_mode_still_reads_misaligned_buffers(dtype):
    """Eval only reads the buffers (the kernels get copies): a misaligned one gives the aligned one's y."""
    rng = np.random.default_rng(5602)
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    rm, rv = rng.standard_normal(3).astype(dtype), (rng.random(3) + 0.5).astype(dtype)
    want, _ = N.batch_norm(x, None, None, rm, rv, training=False)
    got, _ = N.batch_norm(x, None, None, _misaligned(rm, dtype), _misaligned(rv, dtype), training=False)
    np.testing.assert_array_equal(got, want)
    want, _ = N.instance_norm(x, None, None, rm, rv, use_input_stats=False)
    got, _ = N.instance_norm(x, None, None, _misaligned(rm, dtype), _misaligned(rv, dtype), use_input_stats=False)
    np.testing.assert_array_equal(got, want)


def test_strided_running_buffers_are_still_updated():
    """A strided buffer goes to the kernels as a contiguous copy (copied back): not refused."""
    rng = np.random.default_rng(5603)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    rm, rv = np.zeros(6, np.float32)[::2], np.ones(6, np.float32)[::2]
    rm0, rv0 = np.zeros(3, np.float32), np.ones(3, np.float32)
    N.instance_norm(x, None, None, rm, rv)
    N.instance_norm(x, None, None, rm0, rv0)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
