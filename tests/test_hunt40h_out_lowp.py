"""SWALP's quantizers' ``out`` as given (40th hunt, h): ``lowp.quantize_fixed_point`` /
``quantize_block_fp`` read a torch tensor (any foreign array) ``x`` through its view but refused
the same kind of array as ``out`` ("expected a float32 numpy array"): ``quantize(t, out=t)``, the
documented in-place form, failed for a torch tensor. A foreign ``out`` is now written through its
view and returned itself (as NumPy's ``out=`` returns ``out``), a torch one with its version
counter bumped; a NumPy ``out`` is returned as before, and a refused one is left as it was."""

from __future__ import annotations

import numpy as np
import pytest

from dlpack_exporters import HINT, Old, Plain
from optkern import lowp

torch = pytest.importorskip("torch")

X = (np.random.default_rng(0).standard_normal(37) * 3).astype(np.float32)
FNS = {
    "fixed_point": lambda x, **kw: lowp.quantize_fixed_point(x, 8, 4, seed=3, step=1, **kw),
    "block_fp": lambda x, **kw: lowp.quantize_block_fp(x, 6, 8, seed=3, step=1, **kw),
}


@pytest.mark.parametrize("name", sorted(FNS))
def test_torch_out_is_returned_and_its_version_bumped(name):
    want = FNS[name](X)
    out = torch.full(X.shape, float("nan"))
    a = torch.ones(X.shape, requires_grad=True)
    saved = (a * out).sum()  # (its backward reads `out` as it was)
    before = out._version
    assert FNS[name](torch.from_numpy(X.copy()), out=out) is out
    np.testing.assert_array_equal(out.numpy(), want)
    assert out._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.backward()


@pytest.mark.parametrize("name", sorted(FNS))
def test_torch_tensor_quantized_in_place(name):
    t = torch.from_numpy(X.copy())
    assert FNS[name](t, out=t) is t
    np.testing.assert_array_equal(t.numpy(), FNS[name](X))


@pytest.mark.parametrize("name", sorted(FNS))
def test_dlpack_out_is_returned(name):
    buf = np.full(X.shape, np.nan, dtype=np.float32)
    out = Plain(buf)
    assert FNS[name](X, out=out) is out
    np.testing.assert_array_equal(buf, FNS[name](X))


@pytest.mark.parametrize("name", sorted(FNS))
def test_numpy_out_is_returned_itself(name):
    out = np.full(X.shape, np.nan, dtype=np.float32)
    assert FNS[name](X, out=out) is out
    np.testing.assert_array_equal(out, FNS[name](X))


@pytest.mark.parametrize("name", sorted(FNS))
def test_refused_torch_out_is_left_as_it_was(name):
    for out in (torch.zeros(X.shape, dtype=torch.float64), torch.zeros(5)):
        before = out._version
        with pytest.raises(TypeError, match=r"^out: expected a float32 numpy array of shape \(37,\)"):
            FNS[name](X, out=out)
        assert out._version == before and not out.any()


@pytest.mark.parametrize("name", sorted(FNS))
def test_unversioned_dlpack_out_is_refused_as_read_only(name):
    buf = np.zeros(X.shape, dtype=np.float32)
    with pytest.raises(ValueError, match=f"^out: {HINT}"):
        FNS[name](X, out=Old(buf))
    assert not buf.any()
