"""Hunt 55h: ``optkern.data.BatchLoader``'s ``x`` / ``y`` and the norm modules' ``like`` take a torch
tensor (any DLPack exporter) as DESIGN §3 promises; both refused one ("x: expected a numpy or cupy
array, got Tensor", "like: ..."). The loader reads the tensor's memory through its NumPy view
(zero-copy; a transposed tensor too) and yields the NumPy path's batches, bit for bit; a module made
``like`` a host tensor holds NumPy arrays and computes what the NumPy-made one computes.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("n", [1, 7, 1023])
def test_batch_loader_reads_torch_tensors(n):
    x = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
    y = np.arange(n) % 4
    a = optkern.data.BatchLoader(x, y, 4, seed=2)
    b = optkern.data.BatchLoader(torch.from_numpy(x.T.copy()).T, torch.from_numpy(y), 4, seed=2)
    for (xa, ya), (xb, yb) in zip(a.batches(0), b.batches(0), strict=True):
        np.testing.assert_array_equal(xb, xa)
        np.testing.assert_array_equal(yb, ya)
    with pytest.raises(ValueError, match=r"^y: expected 3 examples"):
        optkern.data.BatchLoader(torch.zeros(3, 2), torch.zeros(2))


MODULES = [("BatchNorm", (3,)), ("LayerNorm", (3,)), ("GroupNorm", (1, 3)), ("RMSNorm", (3,))]


@pytest.mark.parametrize("cls,args", MODULES)
def test_norm_modules_take_a_tensor_like(cls, args):
    m = getattr(optkern.norm, cls)(*args, like=torch.zeros(2))
    assert type(m.weight) is np.ndarray
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    ref = getattr(optkern.norm, cls)(*args)
    np.testing.assert_array_equal(m(x), ref(x))
