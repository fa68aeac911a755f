"""Running buffers that are interleaved strided views (the two columns of one (C, 2) array) share no
memory, and are taken as torch takes them (hunt 56e).

The aliasing check compared byte bounds only: ``rs[:, 0]`` and ``rs[:, 1]`` overlap in bounds but not
in any byte, and batch norm / instance norm refused them ("running_var shares memory with
running_mean") where ``torch.nn.functional.batch_norm`` updates both in place. Buffers that do share
an element are still refused, before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import optkern.norm as N


def _columns(C, dtype):
    rs = np.empty((C, 2), dtype)
    rs[:, 0] = np.linspace(-1, 1, C)
    rs[:, 1] = np.linspace(0.5, 2, C)
    return rs


def _separate(rs):
    return rs[:, 0].copy(), rs[:, 1].copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 3), (4, 5, 9), (1, 1, 3), (3, 1023, 1)], ids=str)
def test_batch_norm_updates_interleaved_columns(shape, dtype):
    rng = np.random.default_rng(5611)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    C = shape[1]
    rs = _columns(C, dtype)
    rm, rv = _separate(rs)
    y, _ = N.batch_norm(x, None, None, rs[:, 0], rs[:, 1], momentum=0.3)
    want, _ = N.batch_norm(x, None, None, rm, rv, momentum=0.3)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(rs[:, 0], rm)
    np.testing.assert_array_equal(rs[:, 1], rv)
    # the same update as torch's, to rounding
    t = torch.from_numpy(_columns(C, dtype))
    F.batch_norm(torch.from_numpy(x), t[:, 0], t[:, 1], training=True, momentum=0.3)
    tol = 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(rs, t.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm_updates_interleaved_torch_columns(dtype):
    rng = np.random.default_rng(5612)
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    t = torch.from_numpy(_columns(3, dtype))
    v0 = t._version
    rm, rv = _separate(t.numpy())
    N.instance_norm(x, None, None, t[:, 0], t[:, 1], momentum=0.5)
    N.instance_norm(x, None, None, rm, rv, momentum=0.5)
    np.testing.assert_array_equal(t[:, 0].numpy(), rm)
    np.testing.assert_array_equal(t[:, 1].numpy(), rv)
    assert t._version > v0


def test_eval_reads_interleaved_columns():
    rng = np.random.default_rng(5613)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    rs = _columns(3, np.float32)
    want, _ = N.batch_norm(x, None, None, *_separate(rs), training=False)
    got, _ = N.batch_norm(x, None, None, rs[:, 0], rs[:, 1], training=False)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fn", [N.batch_norm, N.instance_norm])
def test_buffers_sharing_an_element_are_still_refused(fn):
    """a[0:6:2] and a[2:8:2] share a[2] and a[4]: refused, nothing written."""
    x = np.random.default_rng(5614).standard_normal((4, 3, 5)).astype(np.float32)
    a = np.arange(8, dtype=np.float32)
    before = a.copy()
    with pytest.raises(ValueError, match="^running_var: shares memory with running_mean"):
        fn(x, None, None, a[0:6:2], a[2:8:2])
    np.testing.assert_array_equal(a, before)


def test_a_buffer_interleaved_with_out_is_refused_as_out_is():
    """A strided running buffer inside a contiguous out's span shares its bytes: refused."""
    x = np.random.default_rng(5615).standard_normal((4, 3, 5)).astype(np.float32)
    out = np.zeros(x.shape, np.float32)
    with pytest.raises(ValueError, match="^running_mean: shares memory with out"):
        N.batch_norm(x, None, None, out.reshape(-1)[1:7:2], np.ones(3, np.float32), out=out)
    assert (out == 0).all()
