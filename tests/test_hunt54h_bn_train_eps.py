"""Train-mode batch / instance norm add the caller's eps in double (rules::rstd), as torch's CPU
train-mode batch norm does (InvStd<double>: 1 / sqrt(var + eps), var and eps double): a constant
channel's rstd = 1 / sqrt(eps) rounded once, equal to torch's save_invstd bit for bit. (The CUDA
kernels rounded eps to float32 first: 1 in 8 of these eps gave another float32 rstd;
tests/test_cuda_hunt54h_bn_train_eps.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optkern.norm as N

EPS = [float(e) for e in 10.0 ** np.random.default_rng(325).uniform(-8, 0, 64)]


def _torch_invstd(x, eps):
    return torch.native_batch_norm(torch.from_numpy(x), None, None, None, None, True, 0.1, eps)[2].numpy()


@pytest.mark.parametrize("C", [1, 7])
def test_constant_channels_rstd_equals_torch(C):
    x = np.full((3, C, 5), 0.25, np.float32)
    for eps in EPS:
        _, saved = N.batch_norm(x, training=True, eps=eps)
        np.testing.assert_array_equal(saved.rstd, _torch_invstd(x, eps), err_msg=f"eps={eps!r}")


def test_eps_is_not_rounded_to_float32_first():
    """The eps where float32(eps) gives another rstd: the test above would pass with either rule
    without them."""
    differ = [e for e in EPS if np.float32(1 / np.sqrt(e)) != np.float32(1 / np.sqrt(float(np.float32(e))))]
    assert len(differ) >= 4
    x = np.ones((2, 1, 3), np.float32)
    for eps in differ:
        _, saved = N.batch_norm(x, training=True, eps=eps)
        assert saved.rstd[0] == np.float32(1 / np.sqrt(eps)), eps
